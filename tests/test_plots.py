"""The pictures read back by content: where the lines are, not how many bytes the file has."""

import numpy as np
from PIL import Image

from helpers import MPL_BLUE as BLUE
from helpers import MPL_ORANGE as ORANGE
from helpers import colour_mask as _mask


def _span(mask):
    """The columns of the longest run of columns holding the colour: the line itself, not its
    marker in the legend."""
    cols = np.nonzero(mask.any(0))[0]
    runs = np.split(cols, np.nonzero(np.diff(cols) > 30)[0] + 1)  # another line may cross it
    run = max(runs, key=len)
    return np.arange(run[0], run[-1] + 1)


def _mean_row(mask, cols):
    ys, xs = np.nonzero(mask[:, cols])
    return ys.mean()


def test_al_curve_draws_the_points_where_they_are(tmp_path):
    from deeplab.viz.plots import al_curve

    al_curve(tmp_path / "c.png", [100, 200, 300], [10.0, 40.0, 20.0], [0, 1, 2], title="t")
    line = _mask(tmp_path / "c.png", BLUE)
    xs = _span(line)
    assert line.sum() > 100 and len(xs) > 0
    thirds = np.array_split(np.arange(xs.min(), xs.max() + 1), 3)
    left, middle, right = (_mean_row(line, c) for c in thirds)
    # rows grow downwards: the middle point (40) is highest, the first (10) lowest
    assert middle < right < left


def test_comparison_plot_draws_each_arm_and_the_reference(tmp_path):
    from deeplab.viz.plots import comparison_plot

    curves = [{"arm": "up", "clicks": [1, 2, 3], "mean": [10, 20, 30], "se": [0, 0, 0], "seeds": 2},
              {"arm": "down", "clicks": [1, 2, 3], "mean": [30, 20, 10], "se": [1, 1, 1], "seeds": 2}]
    comparison_plot(tmp_path / "p.png", curves, {"mean": 25.0, "se": 0.0, "seeds": 2})
    up, down = _mask(tmp_path / "p.png", BLUE), _mask(tmp_path / "p.png", ORANGE)
    assert up.sum() > 100 and down.sum() > 100
    xs = _span(up)
    left, right = np.arange(xs.min(), xs.min() + 20), np.arange(xs.max() - 20, xs.max() + 1)
    assert _mean_row(up, right) < _mean_row(up, left)  # rising
    assert _mean_row(down, right) > _mean_row(down, left)  # falling
    # the dashed reference (25): a black row only partly covered (the frame's rows are whole),
    # between the rising arm's start (10) and end (30)
    black = (np.asarray(Image.open(tmp_path / "p.png").convert("RGB")).astype(int).sum(-1) < 60)
    cover = black[:, xs.min():xs.max()].mean(1)
    dashed = np.nonzero((cover > 0.3) & (cover < 0.9))[0]
    top, bottom = _mean_row(up, right), _mean_row(up, left)
    assert any(top < r < bottom for r in dashed), (dashed, top, bottom)
    r = next(r for r in dashed if top < r < bottom)
    assert abs((r - bottom) / (top - bottom) - 0.75) < 0.1  # 25 is 3/4 of the way from 10 to 30
