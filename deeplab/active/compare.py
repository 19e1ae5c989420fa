"""Comparisons of acquisition methods (`bash bash_files/compare.sh`): named arms over seeds plus
the fully supervised reference, and their report (`comparison.csv`, `.png`, `.md`).

Layout of `$WORK_DIR/$JOB_NAME` of a comparison:
  {arm}_s{seed}/        one ordinary experiment job per arm and seed (rounds, ledger, results)
  full_s{seed}/         the reference: the same model and schedule on every ground-truth pixel
  comparison.csv        one row per arm, seed and round (the reference: one row per seed)
  comparison.png        mIoU against clicks, mean +/- std over seeds per arm, the reference line
  comparison.md         mean +/- std per arm and round, and each as % of the reference

Every arm of a seed asks the same warm-up round (random on the base superpixels, no sieving),
so the warm-up round is run once per seed and shared with the other arms (training is
deterministic: the same labels give bit-identical weights).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active.experiment import Experiment
from deeplab.active.results import iou_cells, iou_column, results_rows

# Arm -> (REGIONS, ACQUISITION, SIEVE) of rounds >= 1.
ARMS = {
    "random": ("base", "random", 0),  # random selection of base superpixels
    "class_balanced": ("base", "class_balanced", 0),  # the paper's score on base superpixels
    "uncertainty": ("adaptive", "uncertainty", 0),  # mean uncertainty on adaptive superpixels
    "adaptive": ("adaptive", "class_balanced", 0),  # the paper's score on adaptive, no sieving
    "paper": ("adaptive", "class_balanced", 1),  # adaptive + class-balanced + sieving
    "oracle": ("oracle", "class_balanced", 0),  # ground-truth regions: region-quality bound
}
REFERENCE = "full"
# Settings that round 0 does not read: jobs that differ only in these share their warm-up round.
NOT_IN_ROUND_0 = ("job_dir", "rounds", "num_workers", "executor", "cache_dir", "save_interval_secs",
                  "regions", "acquisition", "sieve", "eps", "knee", "min_size_px", "warm_start")


def check_arms(names: list[str]) -> list[str]:
    """The arm names of ARMS (and `full`), validated; duplicates refused."""
    if not names:
        raise ValueError(f"ARMS is empty; valid: {', '.join([REFERENCE, *ARMS])}")
    bad = [n for n in names if n not in ARMS and n != REFERENCE]
    if bad:
        raise ValueError(f"ARMS: unknown arm(s) {', '.join(bad)}; valid: {', '.join([REFERENCE, *ARMS])}")
    if len(set(names)) != len(names):
        raise ValueError(f"ARMS lists an arm twice: {' '.join(names)}")
    return names


def check_seeds(seeds: list[str]) -> list[int]:
    if not seeds:
        raise ValueError("SEEDS is empty; give at least one integer, e.g. SEEDS='0 1'")
    try:
        out = [int(s) for s in seeds]
    except ValueError:
        raise ValueError(f"SEEDS must be integers separated by spaces, got '{' '.join(seeds)}'") from None
    if len(set(out)) != len(out):
        raise ValueError(f"SEEDS lists a seed twice: {' '.join(seeds)}")
    return out


def arm_settings(name: str) -> str:
    """Shell assignments of an arm's settings, for the driver to `eval`. A comparison is a
    simulation: its arms are answered by the oracle whatever ANNOTATOR says."""
    if name == REFERENCE:
        return "REGIONS=base ACQUISITION=random SIEVE=0 ANNOTATOR=oracle"
    regions, acq, sieve = ARMS[check_arms([name])[0]]
    return f"REGIONS={regions} ACQUISITION={acq} SIEVE={sieve} ANNOTATOR=oracle"


def job_name(arm: str, seed: int) -> str:
    return f"{arm}_s{seed}"


# ---------------------------------------------------------------------------- shared warm-up
def share_warm_up(source: Path | str, target: Path | str) -> str:
    """Gives job `target` the finished warm-up round of job `source` (same seed and every setting
    round 0 reads), unless `target` has started its own. Returns what was done, in words.

    The round-0 answers go into the target's ledger first, then the round folder (its TFRecords
    left out) is copied under a temporary name and renamed: a run killed in between asks the
    same (seeded) selection again and finds its answers in the ledger.
    """
    source, target = Path(source), Path(target)
    src, dst = Experiment.open(source), Experiment.open(target)
    if not src.done(0, "eval"):
        return f"{source} has not finished its warm-up round: {target} runs its own"
    if dst.round_dir(0).exists():
        return f"{target} has its own warm-up round"
    a, b = dataclasses.asdict(src.config), dataclasses.asdict(dst.config)
    differ = [k for k in a if k not in NOT_IN_ROUND_0 and a[k] != b.get(k)]
    if differ:
        return f"{target} differs from {source} in {', '.join(differ)}: it runs its own warm-up round"
    rows = [r for r in src.ledger.read() if r["round"] == 0]
    own = dst.ledger.read()
    if own and own != rows:
        raise RuntimeError(f"{dst.ledger.path} holds answers but {target} has no round_00: restore "
                           "the job folder or delete it to start the arm again")
    if not own:
        dst.ledger.append(rows)
    tmp = target / "round_00.sharing"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src.round_dir(0), tmp, ignore=shutil.ignore_patterns("tfrecord", "*.sharing"))
    tmp.rename(dst.round_dir(0))
    return f"{target}: warm-up round shared from {source} ({len(rows)} answers)"


# ---------------------------------------------------------------------------- report
NOISE_COLUMNS = ("regions_per_image", "labelled_px", "label_noise_before_sieve",
                 "label_noise_after_sieve", "sieved_px", "sieved_wrong_share")


def collect(compare_dir: Path | str, arms: list[str], seeds: list[int]) -> tuple[list[dict], list[str]]:
    """(rows, class names): every evaluated round of every arm and seed, and the reference."""
    compare_dir = Path(compare_dir)
    rows, names = [], None
    for arm in arms:
        for seed in seeds:
            job = compare_dir / job_name(arm, seed)
            if not (job / "config.json").is_file():
                continue
            exp = Experiment.open(job)
            names = exp.descriptor.class_names
            iou_cols = [iou_column(n) for n in names]
            if arm == REFERENCE:
                if not exp.done(0, "eval"):
                    continue
                ev = json.loads((exp.round_dir(0) / "eval.json").read_text())
                data = exp.manifest(0).get("data", {})
                row = {"arm": arm, "seed": seed, "round": "", "clicks": data.get("clicks", ""),
                       "miou": round(100 * ev["miou"], 2)}
                row.update(iou_cells(ev, names))
                row.update({c: "" for c in NOISE_COLUMNS})
                row["labelled_px"] = data.get("labelled_px", "")
                rows.append(row)
                continue
            for r in results_rows(exp):
                row = {"arm": arm, "seed": seed, "round": r["round"], "clicks": r["clicks"],
                       "miou": r["miou"]}
                row.update({c: r.get(c, "") for c in iou_cols})
                row.update({c: r.get(c, "") for c in NOISE_COLUMNS})
                rows.append(row)
    return rows, list(names or [])


def _mean_std(values):
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(rows: list[dict]) -> dict:
    """{arm: {round ('' for the reference): (clicks mean, mIoU mean, mIoU std, seeds)}}."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["arm"], {}).setdefault(r["round"], []).append(r)
    out = {}
    for arm, by_round in groups.items():
        out[arm] = {}
        for t, rs in sorted(by_round.items(), key=lambda kv: (kv[0] == "", kv[0])):
            clicks = [r["clicks"] for r in rs if r["clicks"] != ""]
            m, s = _mean_std([r["miou"] for r in rs])
            out[arm][t] = (float(np.mean(clicks)) if clicks else math.nan, m, s, len(rs))
    return out


def format_markdown(summary: dict, rows: list[dict], class_names: list[str]) -> str:
    """comparison.md: mIoU mean +/- std per arm and round, % of the reference, reference IoUs."""
    ref = summary.get(REFERENCE, {}).get("")
    arms = [a for a in summary if a != REFERENCE]
    rounds = sorted({t for a in arms for t in summary[a]})
    lines = ["# Comparison", ""]
    if ref:
        lines.append(f"Fully supervised reference (`{REFERENCE}`: same model and schedule, every "
                     f"ground-truth pixel): mIoU {ref[1]:.2f} +/- {ref[2]:.2f} over {ref[3]} seed(s).")
        lines.append("")
    head = ["arm"] + [f"round {t} ({_clicks_text(summary, arms, t)} clicks)" for t in rounds]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in arms:
        cells = [a]
        for t in rounds:
            v = summary[a].get(t)
            if v is None:
                cells.append("")
                continue
            cell = f"{v[1]:.2f} +/- {v[2]:.2f}"
            if ref and ref[1] > 0:
                cell += f" ({100 * v[1] / ref[1]:.0f} %)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += _label_limited(summary, ref, arms, rounds)
    n_seeds = sorted({v[3] for a in arms for v in summary[a].values()})
    lines += ["", f"mIoU (%) mean +/- sample std over {'/'.join(map(str, n_seeds))} seed(s)"
              + ("; in brackets, % of the reference's mean." if ref else ".")]
    ref_rows = [r for r in rows if r["arm"] == REFERENCE]
    if ref_rows and class_names:
        lines += ["", "Per-class IoU (%) of the reference, mean over seeds:", "",
                  "| class | IoU |", "|---|---|"]
        for n in class_names:
            vals = [r[iou_column(n)] for r in ref_rows]
            vals = [v for v in vals if v != ""]
            lines.append(f"| {n} | {np.mean(vals):.2f} |" if vals else f"| {n} | n/a |")
    return "\n".join(lines) + "\n"


def _label_limited(summary, ref, arms, rounds) -> list[str]:
    """Whether labels decide the result: the reference far above the warm-up round (>= 15
    points) and the seed spread of every arm's last round small against that gap (<= 1/5)."""
    warm = [summary[a][0][1] for a in arms if 0 in summary[a]]
    if not ref or not warm or not rounds:
        return []
    gap = ref[1] - float(np.mean(warm))
    last = max(rounds)
    spread = max((summary[a][last][2] for a in arms if last in summary[a]), default=0.0)
    ok = gap >= 15 and spread <= gap / 5
    return ["", f"Label-limited check: reference - warm-up round = {gap:.2f} points (target >= 15); "
            f"largest std of a round-{last} arm = {spread:.2f} (target <= {gap / 5:.2f}): "
            f"{'met' if ok else 'NOT met: labels do not decide this setting; see README'}."]


def _clicks_text(summary, arms, t) -> str:
    clicks = [summary[a][t][0] for a in arms if t in summary[a]]
    lo, hi = min(clicks), max(clicks)
    return f"{lo:.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}"


def plot(summary: dict, path: Path | str, title: str = "") -> None:
    """comparison.png: mIoU against clicks, mean +/- std band per arm, the reference as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=130)
    for arm, by_round in summary.items():
        if arm == REFERENCE:
            continue
        pts = [v for t, v in sorted(by_round.items())]
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        s = np.array([p[2] for p in pts])
        (line,) = ax.plot(x, y, "o-", label=f"{arm} (n={max(p[3] for p in pts)})", lw=1.6, ms=4)
        ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.18, lw=0)
    ref = summary.get(REFERENCE, {}).get("")
    if ref:
        ax.axhline(ref[1], color="k", ls="--", lw=1.2,
                   label=f"fully supervised {ref[1]:.1f} (n={ref[3]})")
        if ref[2] > 0:
            ax.axhspan(ref[1] - ref[2], ref[1] + ref[2], color="k", alpha=0.08, lw=0)
    ax.set_xlabel("clicks (one per region, cumulative)")
    ax.set_ylabel("mIoU (%) on val")
    ax.set_title(title or "mIoU against clicks (mean +/- std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(compare_dir: Path | str, arms: list[str], seeds: list[int], title: str = "") -> str:
    """Writes comparison.csv, .png and .md under compare_dir; returns the markdown."""
    compare_dir = Path(compare_dir)
    rows, names = collect(compare_dir, arms, seeds)
    if not rows:
        raise ValueError(f"no evaluated round under {compare_dir} for arms {' '.join(arms)}")
    fields = ["arm", "seed", "round", "clicks", "miou"]
    fields += [iou_column(n) for n in names] + list(NOISE_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    io_utils.write_text(compare_dir / "comparison.csv", buf.getvalue())
    summary = summarize(rows)
    plot(summary, compare_dir / "comparison.png", title)
    md = format_markdown(summary, rows, names)
    io_utils.write_text(compare_dir / "comparison.md", md)
    return md

