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


def budget_map_plot(path: Path | str, curves: list[dict], diffs: list[dict],
                    reference: float | None = None, title: str = "") -> None:
    """budget_map.png, two panels on a log axis of clicks per image. Left: per arm
    `{"arm", "x", "mean", "se", "seeds"}` (last-round mIoU at each budget) with +/- one standard
    error bars, the reference as a dashed line. Right: per pair `{"pair", "x", "mean", "se"}`
    (paired last-round differences against clicks per image per round) with bars, and zero."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=130)
    for c in curves:
        x, y, se = (np.asarray(c[k], float) for k in ("x", "mean", "se"))
        order = np.argsort(x)
        ax.errorbar(x[order], y[order], yerr=se[order], fmt="o-", capsize=3, lw=1.6, ms=4,
                    label=f"{c['arm']} (n<={c['seeds']})")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1.2, label=f"fully supervised {reference:.1f}")
    ax.set_xscale("log")
    ax.set_xlabel("clicks per image (cumulative, last round)")
    ax.set_ylabel("mIoU (%) on val, last round")
    ax.set_title((title + ": " if title else "") + "mean +/- one standard error", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)
    for d in diffs:
        x, y, se = (np.asarray(d[k], float) for k in ("x", "mean", "se"))
        order = np.argsort(x)
        bx.errorbar(x[order], y[order], yerr=se[order], fmt="s-", capsize=3, lw=1.6, ms=4,
                    label=d["pair"])
    bx.axhline(0.0, color="k", lw=1)
    bx.set_xscale("log")
    bx.set_xlabel("clicks per image per round (budget)")
    bx.set_ylabel("paired mIoU difference (points)")
    bx.set_title("paired by seed, last round; bars: +/- one standard error", fontsize=9)
    bx.grid(alpha=0.3, which="both")
    bx.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
