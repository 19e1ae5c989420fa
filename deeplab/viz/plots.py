"""The plots of the job and of the comparison: curves in, a PNG written atomically out. Like
the rest of deeplab.viz, it draws arrays and imports nothing of the job."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab import io_utils


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path | str) -> None:
    """Writes `fig` as a PNG at `path` atomically and closes it."""
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)


def al_curve(path: Path | str, clicks, miou, rounds, title: str = "") -> None:
    """al_curve.png: mIoU against clicks, each point marked with its round."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(clicks, miou, "o-")
    for x, y, t in zip(clicks, miou, rounds):
        ax.annotate(f"r{t}", (x, y), textcoords="offset points", xytext=(4, -10))
    ax.set_xlabel("clicks (one per region)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def comparison_plot(path: Path | str, curves: list[dict], reference: dict | None = None,
                    title: str = "") -> None:
    """comparison.png: per arm `{"arm", "clicks", "mean", "se", "seeds"}` (arrays over rounds)
    as a line with a +/- one standard error band; `reference` `{"mean", "se", "seeds"}` as a
    dashed line with its band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=130)
    for c in curves:
        x, y, se = (np.asarray(c[k], float) for k in ("clicks", "mean", "se"))
        (line,) = ax.plot(x, y, "o-", label=f"{c['arm']} (n={c['seeds']})", lw=1.6, ms=4)
        ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.18, lw=0)
    if reference:
        ax.axhline(reference["mean"], color="k", ls="--", lw=1.2,
                   label=f"fully supervised {reference['mean']:.1f} (n={reference['seeds']})")
        if reference["se"] > 0:
            ax.axhspan(reference["mean"] - reference["se"], reference["mean"] + reference["se"],
                       color="k", alpha=0.08, lw=0)
    ax.set_xlabel("clicks (one per region, cumulative)")
    ax.set_ylabel("mIoU (%) on val")
    ax.set_title((title + "\n" if title else "") + "mean over seeds; bands: +/- one standard error",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
