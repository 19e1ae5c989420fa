"""bash_files/compare.sh with BUDGETS end to end on tiny data: the reference once, shared by
every budget; random and paper at two budgets under budget_*/; budget_map.csv, .md and .png;
resuming redoes nothing. (The map's tables and crossover on made-up rows: test_compare.py.)"""

import csv
import json

import numpy as np
import pytest

from deeplab.experiment import budget_map, compare
from deeplab.experiment.job import Experiment

pytestmark = pytest.mark.e2e
SETTINGS = {"JOB_NAME": "cmp", "SEEDS": "3", "ARMS": "full random paper", "BUDGETS": "10% 5%",
            "WARM_START": "1"}


@pytest.fixture(scope="module")
def budget_mapped(tmp_path_factory, data_root, compare_driver):
    tmp = tmp_path_factory.mktemp("budget_map")
    out = compare_driver(tmp, data_root, STANDIN_DIR=str(tmp / "models"), **SETTINGS)
    return tmp / "cmp", out


def test_budget_map_runs_each_budget_and_shares_the_reference(budget_mapped):
    cmp_dir, out = budget_mapped
    # the reference ran once, in the map's own folder, not once per budget
    assert out.stdout.count("=== cmp: reference, seed 3") == 1
    assert (cmp_dir / "full_s3" / "round_00" / "eval.json").is_file()
    assert not any(cmp_dir.glob("budget_*/full_s*"))
    with open(cmp_dir / "budget_map.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:7] == list(budget_map.FIELDS)
    assert list(rows[0])[-1] == "labelled_px" and "iou_road" in rows[0]
    for budget, share in (("10%", 0.10), ("5%", 0.05)):
        folder = cmp_dir / compare.budget_folder(budget)
        assert (folder / "comparison.md").is_file()
        for arm in ("random", "paper"):
            exp = Experiment.open(folder / f"{arm}_s3")
            assert exp.config.clicks_percent == pytest.approx(100 * share)
            mine = [r for r in rows if r["budget"] == budget and r["arm"] == arm]
            assert [r["round"] for r in mine] == ["0", "1"]
            assert int(mine[0]["clicks"]) == round(share * exp.base_regions_total())
            for r in mine:
                assert float(r["clicks_per_image"]) == pytest.approx(int(r["clicks"]) / len(exp.samples), abs=1e-4)
                ev = json.loads((exp.round_dir(int(r["round"])) / "eval.json").read_text())
                assert float(r["miou"]) == pytest.approx(100 * ev["miou"], abs=0.006)
        # the arms of one budget share its warm-up round
        rows0 = [[r for r in Experiment.open(folder / f"{a}_s3").ledger.read() if r["round"] == 0]
                 for a in ("random", "paper")]
        assert rows0[0] == rows0[1]
    ref = [r for r in rows if r["arm"] == "full"]
    assert len(ref) == 1 and ref[0]["budget"] == "all"
    md = (cmp_dir / "budget_map.md").read_text()
    assert "## Crossover" in md and "### 5% per round" in md and "### 10% per round" in md
    assert md.index("### 5% per round") < md.index("### 10% per round")  # by clicks per image
    assert "Frequent classes: the 5 with the most ground-truth pixels" in md


def test_budget_map_plot_draws_both_panels(budget_mapped):
    """The two panels' contents, read back from the figure: one line per arm on the left, one
    per pair on the right."""
    from PIL import Image

    cmp_dir, _ = budget_mapped
    image = np.asarray(Image.open(cmp_dir / "budget_map.png").convert("RGB"))
    h, w, _ = image.shape
    assert w > 1.8 * h  # two panels side by side
    left, right = image[:, : w // 2], image[:, w // 2:]

    def pixels(panel, rgb):
        return (np.abs(panel.astype(int) - rgb).sum(-1) < 40).sum()

    # matplotlib's first two colours, blue and orange: the arms random and paper on the left;
    # on the right the one pair both arms form (paper - random), so blue only
    blue, orange = (31, 119, 180), (255, 127, 14)
    assert pixels(left, blue) > 50 and pixels(left, orange) > 50
    assert pixels(right, blue) > 50 and pixels(right, orange) == 0


def test_budget_map_resumes_without_redoing_work(budget_mapped, data_root, compare_driver):
    cmp_dir, _ = budget_mapped
    before = (cmp_dir / "budget_map.csv").read_text()
    out = compare_driver(cmp_dir.parent, data_root, STANDIN_DIR=str(cmp_dir.parent / "models"), **SETTINGS)
    assert "train done" not in out.stdout and "already complete" in out.stdout
    assert (cmp_dir / "budget_map.csv").read_text() == before


def test_a_budgets_report_covers_every_seed_its_folder_holds(tmp_path):
    """A seed run later for one budget (SEEDS=2) joins the seeds already there in that
    budget's report: `compare.py budget_seeds` is what compare.sh passes to the report."""
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "budget_3pct"
    for job in ("random_s0", "paper_s0", "random_s1", "paper_s1", "random_s7"):
        (folder / job).mkdir(parents=True)
        (folder / job / "config.json").write_text("{}")
    (folder / "paper_s9").mkdir()  # no config: not a job
    (folder / "numerics_onednn0" / "random_s0").mkdir(parents=True)
    script = Path(__file__).parents[1] / "scripts" / "compare.py"

    def seeds(*extra):
        out = subprocess.run([sys.executable, str(script), "budget_seeds", "--compare_dir", str(folder),
                              "--arms", "full random paper", *extra], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert seeds() == ["0", "1", "7"]
    assert seeds("--seeds", "2") == ["0", "1", "2", "7"]
    assert budget_map.budget_seeds(folder, ["paper"]) == [0, 1]
