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
from deeplab.errors import BadInput, CannotContinue
from deeplab.experiment import results, settings
from deeplab.experiment.job import Job
from deeplab.experiment.results import iou_cells, iou_column, results_rows
from deeplab.viz import plots

# Arm -> (REGIONS, ACQUISITION, SIEVE, PROPAGATE, SELF_TRAIN) of rounds >= 1.
ARMS = {
    "random": ("base", "random", 0, 0, 0),  # random selection of base superpixels
    "class_balanced": ("base", "class_balanced", 0, 0, 0),  # the paper's score on base superpixels
    "uncertainty": ("adaptive", "uncertainty", 0, 0, 0),  # mean uncertainty on adaptive superpixels
    "adaptive": ("adaptive", "class_balanced", 0, 0, 0),  # the paper's score on adaptive, no sieving
    "paper": ("adaptive", "class_balanced", 1, 0, 0),  # adaptive + class-balanced + sieving
    "oracle": ("oracle", "class_balanced", 0, 0, 0),  # ground-truth regions: region-quality bound
    # `paper` with its regions merged by the reference's model (same seed): merge-quality bound
    "merge_bound": ("adaptive", "class_balanced", 1, 0, 0),
    # `paper` plus what its answers imply, at the same clicks (docs/method.md sections 12-13)
    "paper_propagate": ("adaptive", "class_balanced", 1, 1, 0),
    "paper_self_train": ("adaptive", "class_balanced", 1, 0, 1),
    "paper_both": ("adaptive", "class_balanced", 1, 1, 1),
}
REFERENCE = "full"


def check_arms(names: list[str]) -> list[str]:
    """The arm names of ARMS (and `full`), validated; duplicates refused."""
    if not names:
        raise BadInput(f"ARMS is empty; valid: {', '.join([REFERENCE, *ARMS])}")
    bad = [n for n in names if n not in ARMS and n != REFERENCE]
    if bad:
        raise BadInput(f"ARMS: unknown arm(s) {', '.join(bad)}; valid: {', '.join([REFERENCE, *ARMS])}")
    if len(set(names)) != len(names):
        raise BadInput(f"ARMS lists an arm twice: {' '.join(names)}")
    if "merge_bound" in names and (REFERENCE not in names
                                   or names.index(REFERENCE) > names.index("merge_bound")):
        raise BadInput(f"ARMS: merge_bound merges with the reference's model, so '{REFERENCE}' "
                       "must come before it in ARMS")
    return names


def check_seeds(seeds: list[str]) -> list[int]:
    if not seeds:
        raise BadInput("SEEDS is empty; give at least one integer, e.g. SEEDS='0 1'")
    try:
        out = [int(s) for s in seeds]
    except ValueError:
        raise BadInput(f"SEEDS must be integers separated by spaces, got '{' '.join(seeds)}'") from None
    if len(set(out)) != len(out):
        raise BadInput(f"SEEDS lists a seed twice: {' '.join(seeds)}")
    return out


def parse_budget(text: str) -> tuple[int, float]:
    """A per-round budget of BUDGETS, read as CLICKS_PER_ROUND is (settings.parse_budget): (clicks,
    0.0) for '500', (0, P) for 'P%' (a share of the train split's base superpixels)."""
    try:
        return settings.parse_budget(text)
    except BadInput:
        raise BadInput(f"BUDGETS: '{text}' is not a per-round budget; give clicks (500) or a share "
                       "of the base superpixels in (0, 100] % (0.3%), separated by spaces") from None


def check_budgets(budgets: list[str]) -> list[str]:
    """BUDGETS validated: each in the CLICKS_PER_ROUND form, none twice (an empty list: no map)."""
    for b in budgets:
        parse_budget(b)
    folders = [budget_folder(b) for b in budgets]
    if len(set(folders)) != len(folders):
        raise BadInput(f"BUDGETS lists a budget twice: {' '.join(budgets)}")
    return budgets


def budget_folder(budget: str) -> str:
    """The folder of one budget's arms inside the comparison: budget_500, budget_0.3pct."""
    clicks, percent = parse_budget(budget)
    return f"budget_{clicks}" if clicks else f"budget_{percent:g}pct"


def arm_values(name: str, reference_dir: str = "") -> dict[str, str]:
    """An arm's settings, by driver variable. A comparison is a simulation: its arms are answered
    by the oracle whatever ANNOTATOR says. `merge_bound` merges with the model of `reference_dir`
    (the seed's `full` job)."""
    if name == REFERENCE:
        regions, acq, sieve, propagate, self_train = "base", "random", 0, 0, 0
    else:
        regions, acq, sieve, propagate, self_train = ARMS[name] if name in ARMS else ARMS[check_arms([name])[0]]
    merge = ""
    if name == "merge_bound":
        if not reference_dir:
            raise BadInput("merge_bound needs the reference job's folder")
        merge = str(Path(reference_dir) / "round_00" / "train")
    values = {"REGIONS": regions, "ACQUISITION": acq, "SIEVE": sieve, "PROPAGATE": propagate,
              "SELF_TRAIN": self_train, "ANNOTATOR": "oracle", "MERGE_MODEL": merge}
    return {k: str(v) for k, v in values.items()}


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
    src, dst = Job.open(source), Job.open(target)
    if not src.done(0, "eval"):
        return f"{source} has not finished its warm-up round: {target} runs its own"
    if dst.round_dir(0).exists():
        return f"{target} has its own warm-up round"
    a, b = dataclasses.asdict(src.config), dataclasses.asdict(dst.config)
    differ = [k for k in a if k not in settings.NOT_IN_ROUND_0 and a[k] != b.get(k)]
    if differ:
        return f"{target} differs from {source} in {', '.join(differ)}: it runs its own warm-up round"
    rows = [r for r in src.ledger.read() if r["round"] == 0]
    own = dst.ledger.read()
    if own and own != rows:
        raise CannotContinue(f"{dst.ledger.path} holds answers but {target} has no round_00: restore "
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
                 "label_noise_after_sieve", "sieved_px", "sieved_wrong_share", "predicted_seconds",
                 "propagated_px", "propagated_wrong_share", "self_trained_px", "self_trained_wrong_share")
IMPLIED = (("propagated", "propagated"), ("self_trained", "confident"))  # column prefix, words


def collect(compare_dir: Path | str, arms: list[str], seeds: list[int],
            reference_dir: Path | str | None = None) -> tuple[list[dict], list[str]]:
    """(rows, class names): every evaluated round of every arm and seed, and the reference
    (whose jobs lie in `reference_dir`, by default `compare_dir`)."""
    compare_dir = Path(compare_dir)
    reference_dir = Path(reference_dir) if reference_dir else compare_dir
    rows, names = [], None
    for arm in arms:
        for seed in seeds:
            job = (reference_dir if arm == REFERENCE else compare_dir) / job_name(arm, seed)
            if not (job / "config.json").is_file():
                continue
            exp = Job.open(job)
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


def standard_error(std: float, n: int) -> float:
    """std / sqrt(n): the standard error of a mean over n seeds (0 for one seed)."""
    return std / math.sqrt(n) if n > 1 else 0.0


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


# Pairs whose paired difference comparison.md reports, when both arms ran: the paper's ordering
# and its parts, then the ablations' bounds against the paper and against random.
PAIRS = (("paper", "random"), ("paper", "class_balanced"), ("class_balanced", "random"),
         ("paper", "adaptive"), ("adaptive", "random"), ("oracle", "paper"), ("merge_bound", "paper"),
         ("oracle", "random"), ("merge_bound", "random"),
         ("paper_propagate", "paper"), ("paper_self_train", "paper"), ("paper_both", "paper"),
         ("paper_propagate", "random"), ("paper_self_train", "random"), ("paper_both", "random"))


def paired_differences(rows: list[dict], pairs=PAIRS) -> list[dict]:
    """Per pair (a, b) and round: the per-seed differences mIoU(a) - mIoU(b) over the seeds both
    arms finished (arms of one seed share their warm-up round, so they are compared paired):
    {pair, round, clicks, mean, se, seeds, positive, negative}."""
    miou = {(r["arm"], r["seed"], r["round"]): (r["miou"], r["clicks"]) for r in rows if r["round"] != ""}
    out = []
    for a, b in pairs:
        rounds = sorted({t for (arm, _, t) in miou if arm == a})
        for t in rounds:
            seeds = sorted(s for (arm, s, tt) in miou if arm == a and tt == t and (b, s, t) in miou)
            if not seeds:
                continue
            d = np.array([miou[(a, s, t)][0] - miou[(b, s, t)][0] for s in seeds], np.float64)
            m, sd = _mean_std(d)
            out.append({"pair": f"{a} - {b}", "round": t,
                        "clicks": float(np.mean([miou[(a, s, t)][1] for s in seeds])),
                        "mean": m, "se": standard_error(sd, len(d)), "seeds": len(d),
                        "positive": int((d > 0).sum()), "negative": int((d < 0).sum())})
    return out


def format_markdown(summary: dict, rows: list[dict], class_names: list[str],
                    properties: list[dict] | None = None, evaluation: str = "") -> str:
    """comparison.md: mIoU mean +/- standard error per arm and round (and % of the reference),
    the paired differences, the benchmark's properties P1-P9, labelled pixels per click, the
    reference's per-class IoU."""
    ref = summary.get(REFERENCE, {}).get("")
    arms = [a for a in summary if a != REFERENCE]
    rounds = sorted({t for a in arms for t in summary[a]})
    lines = ["# Comparison", ""]
    if evaluation:
        lines += [evaluation, ""]
    if ref:
        lines.append(f"Fully supervised reference (`{REFERENCE}`: same model, schedule, init and seed, "
                     f"every ground-truth pixel): mIoU {ref[1]:.2f} +/- "
                     f"{standard_error(ref[2], ref[3]):.2f} (s.e.) over {ref[3]} seed(s).")
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
            cell = f"{v[1]:.2f} +/- {standard_error(v[2], v[3]):.2f}"
            if ref and ref[1] > 0:
                cell += f" ({100 * v[1] / ref[1]:.0f} %)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    n_seeds = sorted({v[3] for a in arms for v in summary[a].values()})
    lines += ["", f"mIoU (%) mean +/- standard error (sample std / sqrt(seeds)) over "
              f"{'/'.join(map(str, n_seeds))} seed(s)"
              + ("; in brackets, % of the reference's mean." if ref else ".")]
    diffs = paired_differences(rows)
    if diffs:
        lines += ["", "## Paired differences", "",
                  "mIoU(a) - mIoU(b) per seed (arms of a seed share the warm-up round), mean +/- "
                  "standard error; in brackets, seeds with a > b / a < b.", "",
                  "| pair | " + " | ".join(f"round {t}" for t in rounds) + " |",
                  "|---|" + "---|" * len(rounds)]
        for pair in dict.fromkeys(d["pair"] for d in diffs):
            by_t = {d["round"]: d for d in diffs if d["pair"] == pair}
            cells = [f"{by_t[t]['mean']:+.2f} +/- {by_t[t]['se']:.2f} ({by_t[t]['positive']}/"
                     f"{by_t[t]['negative']} of {by_t[t]['seeds']})" if t in by_t else "" for t in rounds]
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    if properties:
        lines += ["", "## Properties of the setting", "",
                  "| | property | measured | |", "|---|---|---|---|"]
        for p in properties:
            verdict = "n/a" if p["pass"] is None else ("PASS" if p["pass"] else "FAIL")
            lines.append(f"| {p['id']} | {p['what']} | {p['figure']} | {verdict} |")
    lines += _pixels_per_click(rows, arms)
    lines += _equal_seconds(rows, arms)
    ref_rows = [r for r in rows if r["arm"] == REFERENCE]
    if ref_rows and class_names:
        lines += ["", "Per-class IoU (%) of the reference, mean over seeds:", "",
                  "| class | IoU |", "|---|---|"]
        for n in class_names:
            vals = [r[iou_column(n)] for r in ref_rows]
            vals = [v for v in vals if v != ""]
            lines.append(f"| {n} | {np.mean(vals):.2f} |" if vals else f"| {n} | n/a |")
    return "\n".join(lines) + "\n"


def _pixels_per_click(rows: list[dict], arms: list[str]) -> list[str]:
    """Labelled pixels per click and label noise of each arm's last round, mean over seeds; with
    PROPAGATE / SELF_TRAIN arms, the labels each mechanism gave per click and their wrong share."""
    def number(v):
        return None if v in ("", None, "n/a") else float(v)

    implied = [(k, w) for k, w in IMPLIED if any(number(r.get(f"{k}_px")) for r in rows)]
    out = []
    for a in arms:
        mine = [r for r in rows if r["arm"] == a and r["round"] != ""]
        if not mine:
            continue
        last = max(r["round"] for r in mine)
        rs = [r for r in mine if r["round"] == last and r["labelled_px"] not in ("", None)]
        if not rs:
            continue
        px = np.mean([float(r["labelled_px"]) / float(r["clicks"]) for r in rs])
        cells = [a, str(last), f"{px:.1f}"]
        for key in ["label_noise_after_sieve"] + [f"{k}_{what}" for k, _ in implied for what in ("px", "wrong_share")]:
            known = [r for r in rs if number(r.get(key)) is not None]
            if not known:
                cells.append("n/a")
            elif key.endswith("_px"):  # per click
                cells.append(f"{np.mean([number(r[key]) / float(r['clicks']) for r in known]):.1f}")
            else:
                cells.append(f"{np.mean([number(r[key]) for r in known]):.4f}")
        out.append("| " + " | ".join(cells) + " |")
    if not out:
        return []
    heads = ["arm", "round", "labelled px / click", "label noise"]
    for _, words in implied:
        heads += [f"{words} px / click", f"{words} wrong"]
    return ["", "Labelled pixels per click and label noise (share of labelled pixels whose label is "
            "wrong, after sieving) in each arm's last round, mean over seeds" +
            ("; of them, the labels that propagation and confident pixels gave and the share of "
             "those that is wrong" if implied else "") + ":", "",
            "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)] + out


def _equal_seconds(rows: list[dict], arms: list[str]) -> list[str]:
    """With COST_MODEL=measured: each arm's rounds on the axis of annotation time (the fit's
    predicted seconds of everything asked so far), mean over seeds, to compare at equal effort."""
    timed = [r for r in rows if r["arm"] in arms and r["round"] != ""
             and isinstance(r.get("predicted_seconds"), (int, float))]
    if not timed:
        return []
    out = ["", "At equal effort (COST_MODEL=measured): mIoU against the measured cost model's "
           "predicted annotation seconds of everything asked so far, mean over seeds:", "",
           "| arm | round | predicted seconds | mIoU |", "|---|---|---|---|"]
    for a in arms:
        for t in sorted({r["round"] for r in timed if r["arm"] == a}):
            rs = [r for r in timed if r["arm"] == a and r["round"] == t]
            out.append(f"| {a} | {t} | {np.mean([r['predicted_seconds'] for r in rs]):.0f} | "
                       f"{np.mean([float(r['miou']) for r in rs]):.2f} |")
    return out


def _clicks_text(summary, arms, t) -> str:
    clicks = [summary[a][t][0] for a in arms if t in summary[a]]
    lo, hi = min(clicks), max(clicks)
    return f"{lo:.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}"


def plot(summary: dict, path: Path | str, title: str = "") -> None:
    """comparison.png (`deeplab.viz.plots.comparison_plot`): mIoU against clicks, mean +/-
    standard-error band per arm, the reference as a line."""
    curves = []
    for arm, by_round in summary.items():
        if arm == REFERENCE:
            continue
        pts = [v for t, v in sorted(by_round.items())]
        curves.append({"arm": arm, "clicks": [p[0] for p in pts], "mean": [p[1] for p in pts],
                       "se": [standard_error(p[2], p[3]) for p in pts],
                       "seeds": max(p[3] for p in pts)})
    ref = summary.get(REFERENCE, {}).get("")
    reference = {"mean": ref[1], "se": standard_error(ref[2], ref[3]), "seeds": ref[3]} if ref else None
    plots.comparison_plot(path, curves, reference, title)


def iou_matrix(rows: list[dict], arm: str, t, names: list[str]) -> np.ndarray | None:
    """[seeds, classes] IoU (%; nan where not available) of an arm's round t (the reference:
    round ''), seeds in order; None when the arm has no such round."""
    rs = sorted((r for r in rows if r["arm"] == arm and r["round"] == t), key=lambda r: r["seed"])
    if not rs:
        return None
    return np.array([[np.nan if r.get(iou_column(n), "") in ("", None, "n/a")
                      else float(r[iou_column(n)]) for n in names] for r in rs], np.float64)


def frequent_share(warm: np.ndarray, ref: np.ndarray, frequent: list[int]) -> float:
    """The warm-up's IoU over the reference's, summed over the `frequent` classes (each a mean
    over seeds): how far the warm-up got where most pixels are."""
    w = np.nanmean(warm[:, frequent], axis=0)
    r = np.nanmean(ref[:, frequent], axis=0)
    return float(np.nansum(w) / np.nansum(r)) if np.nansum(r) > 0 else float("nan")


# ---------------------------------------------------------------------------- properties
# What makes a ranking mean something (docs/benchmark.md, "The benchmark setting"): thresholds of P1-P9.
P1_SHARE = 0.60  # warm-up round >= this share of the reference
P2_GAP = 8.0  # reference - warm-up >= this many mIoU points
P3_ROUND_SHARE = 0.01  # one round asks <= this share of the pool's base superpixels
P9_SHARE = 0.80  # warm-up's IoU in the frequent classes >= this share of the reference's
P9_CLASSES = 5  # the frequent classes: those with the most ground-truth pixels in val
P6_SHARE = 0.25  # s.e. of a last-round mean <= this share of (reference - warm-up)
# classes the reference learns above 1 % IoU: this share of the data set's classes, rounded up
# (12 of 19, as chosen on the generated scenes; 7 of CamVid's 11)
P7_SHARE = 0.60
P8_MINUTES = 150.0  # wall time of the default comparison on 2 cores
# {compare}/numerics_onednn{0|1}/{arm}_s{seed}: the P5 jobs (the first seed's arms and reference
# again under the other oneDNN setting)
NUMERICS_PREFIX = "numerics_onednn"
WALL_CLOCK = "wall_clock.txt"  # one "start end" line (epoch seconds) per compare.sh run


def _warm_up_by_seed(rows: list[dict]) -> dict[int, float]:
    out = {}
    for r in rows:
        if r["arm"] != REFERENCE and r["round"] == 0:
            out.setdefault(r["seed"], r["miou"])
    return out


def numerics_rows(compare_dir: Path | str) -> list[dict]:
    """Rows of the P5 jobs (the warm-up round and the reference with the other oneDNN
    setting), each with its `onednn` value."""
    out = []
    for folder in sorted(Path(compare_dir).glob(f"{NUMERICS_PREFIX}*")):
        value = folder.name[len(NUMERICS_PREFIX):]
        jobs = sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())
        arms = sorted({j.rsplit("_s", 1)[0] for j in jobs})
        seeds = sorted({int(j.rsplit("_s", 1)[1]) for j in jobs})
        rows, _ = collect(folder, arms, seeds)
        out += [dict(r, onednn=value) for r in rows]
    return out


def wall_minutes(compare_dir: Path | str, running_since: int | None = None) -> tuple[float, int] | None:
    """(minutes, runs) summed over the compare.sh runs recorded in wall_clock.txt, plus the
    run in progress (started at epoch second `running_since`; it records itself on exit)."""
    import time

    path = Path(compare_dir) / WALL_CLOCK
    total, runs = 0.0, 0
    if running_since:
        total, runs = time.time() - running_since, 1
    if not path.is_file():
        return (total / 60.0, runs) if runs else None
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            total += int(parts[1]) - int(parts[0])
            runs += 1
    return total / 60.0, runs


def numerics_property(rows: list[dict], numerics: list[dict], onednn_main: str = "1"):
    """P5: each paired difference of PAIRS at the last round the P5 jobs reached keeps its sign
    under the other oneDNN setting (the flipped seeds' mean against the main run's mean over
    every seed). (id, what, figure, pass), or None when no pair ran in both."""
    texts, kept = [], []
    main = {(d["pair"], d["round"]): d for d in paired_differences(rows)}
    flipped = paired_differences(numerics)
    last = {}
    for d in flipped:
        if d["round"] >= 1 and (d["pair"] not in last or d["round"] > last[d["pair"]]["round"]):
            last[d["pair"]] = d
    for pair, d in last.items():
        m = main.get((pair, d["round"]))
        if m is None:
            continue
        same = np.sign(m["mean"]) == np.sign(d["mean"])
        kept.append(bool(same))
        texts.append(f"{pair} r{d['round']}: {m['mean']:+.2f} (oneDNN {onednn_main}, {m['seeds']} "
                     f"seeds) vs {d['mean']:+.2f} (oneDNN {numerics[0]['onednn']}, {d['seeds']}) "
                     + ("kept" if same else "FLIPPED"))
    if not kept:
        return None
    return ("P5", "robust to numerics: every paired difference keeps its sign with oneDNN flipped",
            "; ".join(texts), all(kept))


def frequent_property(rows: list[dict], class_names: list[str], frequent: list[int]):
    """P9: the warm-up's IoU in the frequent classes (the most ground-truth pixels) over the
    reference's. (id, what, figure, pass)."""
    what = (f"the warm-up learnt the frequent classes: their IoU >= {100 * P9_SHARE:.0f} % of the "
            "reference's")
    ref = iou_matrix(rows, REFERENCE, "", class_names)
    warm = next((w for w in (iou_matrix(rows, a, 0, class_names) for a in dict.fromkeys(
        r["arm"] for r in rows if r["arm"] != REFERENCE)) if w is not None), None)
    if (ref is None or warm is None or not frequent or np.isnan(ref[:, frequent]).all()
            or np.isnan(warm[:, frequent]).all()):
        return ("P9", what, "needs the reference, a warm-up round and the val confusion matrix", None)
    share = frequent_share(warm, ref, frequent)
    per = ", ".join(f"{class_names[i]} {np.nanmean(warm[:, i]):.1f}/{np.nanmean(ref[:, i]):.1f}"
                    for i in frequent)
    return ("P9", what, f"{100 * share:.1f} % ({per})", bool(share >= P9_SHARE))


def _cold_start_and_label_value(ref, w) -> list[tuple]:
    """P1 (past the cold start) and P2 (labels still matter) from the reference and warm-up."""
    if not ref or w is None:
        return [("P1", "past the cold start", "needs the reference and a warm-up round", None),
                ("P2", "labels still matter", "needs the reference and a warm-up round", None)]
    gap = ref[1] - w
    return [("P1", f"past the cold start: warm-up >= {100 * P1_SHARE:.0f} % of the reference",
             f"{w:.2f} / {ref[1]:.2f} = {100 * w / ref[1]:.1f} %", w >= P1_SHARE * ref[1]),
            ("P2", f"labels still matter: reference - warm-up >= {P2_GAP:g} points", f"{gap:.2f}",
             gap >= P2_GAP)]


def _budget_share(rows: list[dict], pool_base: int | None) -> tuple:
    """P3: the largest clicks of one round against the pool's base superpixels."""
    per_round, by_job = [], {}
    for r in rows:
        if r["arm"] != REFERENCE and r["clicks"] != "":
            by_job.setdefault((r["arm"], r["seed"]), []).append((r["round"], r["clicks"]))
    for pts in by_job.values():
        pts.sort()
        per_round += [b - a for (_, a), (_, b) in zip([(0, 0)] + pts[:-1], pts)]
    if not pool_base or not per_round:
        return ("P3", "acquisition matters", "no round ran", None)
    share = max(per_round) / pool_base
    return ("P3", f"acquisition matters: one round asks <= {100 * P3_ROUND_SHARE:g} % of the pool's "
            "base superpixels", f"{max(per_round)} of {pool_base} = {100 * share:.2f} %",
            share <= P3_ROUND_SHARE + 1e-12)


def _rounds_improve(summary: dict) -> tuple:
    """P4: every arm's round mean against the previous round's mean minus its s.e."""
    worst = None
    for arm, by_round in summary.items():
        if arm == REFERENCE:
            continue
        ts = sorted(by_round)
        for prev, t in zip(ts, ts[1:]):
            _, m0, s0, n0 = by_round[prev]
            margin = by_round[t][1] - (m0 - standard_error(s0, n0))
            if worst is None or margin < worst[0]:
                worst = (margin, arm, t, by_round[t][1], m0, standard_error(s0, n0))
    if not worst:
        return ("P4", "more labels never hurt on average", "needs two rounds", None)
    margin, arm, t, m1, m0, se0 = worst
    return ("P4", "more labels never hurt on average: every round's mean >= the previous mean - 1 s.e.",
            f"tightest: {arm} round {t}: {m1:.2f} vs {m0:.2f} - {se0:.2f}", margin >= 0)


def _seed_noise_below_gap(summary: dict, gap: float | None) -> tuple:
    """P6: the largest last-round standard error against (reference - warm-up)."""
    last = [(standard_error(v[2], v[3]), arm) for arm, by_round in summary.items() if arm != REFERENCE
            for t, v in by_round.items() if t == max(by_round)]
    if not last or gap is None:
        return ("P6", "last-round standard errors", "needs the reference and the rounds", None)
    se, arm = max(last)
    return ("P6", f"last-round s.e. <= {P6_SHARE:g} x (reference - warm-up)",
            f"largest: {arm} {se:.2f} vs {P6_SHARE * gap:.2f}", se <= P6_SHARE * gap)


def _classes_learnt(rows: list[dict], class_names: list[str]) -> tuple:
    """P7: the classes the reference learns above 1 % IoU."""
    ref_rows = [r for r in rows if r["arm"] == REFERENCE]
    if not ref_rows or not class_names:
        return ("P7", "classes the reference learns", "needs the reference", None)
    learned = []
    for n in class_names:
        vals = [r[iou_column(n)] for r in ref_rows if r[iou_column(n)] != ""]
        if vals and np.mean(vals) > 1.0:
            learned.append(n)
    need = math.ceil(P7_SHARE * len(class_names) - 1e-9)
    return ("P7", f"the reference learns >= {need} classes above 1 % IoU ({P7_SHARE:.0%} of {len(class_names)})",
            f"{len(learned)} of {len(class_names)}", len(learned) >= need)


def _wall_time(wall: tuple[float, int] | None) -> tuple:
    """P8: the comparison's wall time over its runs."""
    if not wall:
        return ("P8", "wall time", "not recorded", None)
    minutes, runs = wall
    return ("P8", f"the comparison runs in <= {P8_MINUTES:g} min", f"{minutes:.1f} min "
            f"({runs} run{'s' if runs != 1 else ''} of compare.sh)", minutes <= P8_MINUTES)


def properties(rows: list[dict], summary: dict, class_names: list[str], pool_base: int | None,
               numerics: list[dict] | None = None, wall: tuple[float, int] | None = None,
               onednn_main: str = "1", frequent: list[int] | None = None) -> list[dict]:
    """P1-P9 with their figures and verdicts (None: not measurable from what ran)."""
    ref = summary.get(REFERENCE, {}).get("")
    warm = _warm_up_by_seed(rows)
    w = float(np.mean(list(warm.values()))) if warm else None
    gap = ref[1] - w if ref and w is not None else None
    p5 = numerics_property(rows, numerics, onednn_main) if numerics else None
    found = [*_cold_start_and_label_value(ref, w), _budget_share(rows, pool_base), _rounds_improve(summary),
             p5 or ("P5", "robust to numerics",
                    "not run (NUMERICS_CHECK=0, or the check jobs did not finish)", None),
             _seed_noise_below_gap(summary, gap), _classes_learnt(rows, class_names), _wall_time(wall),
             frequent_property(rows, class_names, frequent or [])]
    return [{"id": pid, "what": what, "figure": figure, "pass": ok} for pid, what, figure, ok in found]


def write_report(compare_dir: Path | str, arms: list[str], seeds: list[int], title: str = "",
                 onednn_main: str = "1", running_since: int | None = None,
                 reference_dir: Path | str | None = None) -> str:
    """Writes comparison.csv, .png and .md under compare_dir (the reference's jobs in
    `reference_dir`, by default compare_dir); returns the markdown."""
    compare_dir = Path(compare_dir)
    rows, names = collect(compare_dir, arms, seeds, reference_dir)
    if not rows:
        raise BadInput(f"no evaluated round under {compare_dir} for arms {' '.join(arms)}")
    fields = ["arm", "seed", "round", "clicks", "miou"]
    fields += [iou_column(n) for n in names] + list(NOISE_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    io_utils.write_text(compare_dir / "comparison.csv", buf.getvalue())
    summary = summarize(rows)
    plot(summary, compare_dir / "comparison.png", title)
    ref_dir = Path(reference_dir) if reference_dir else compare_dir
    evals = [ref_dir / job_name(REFERENCE, s) / "round_00" / "eval.json" for s in seeds]
    frequent = results.frequent_classes([p for p in evals if p.is_file()], len(names), P9_CLASSES)
    props = properties(rows, summary, names, pool_base(compare_dir, arms, seeds),
                       numerics_rows(compare_dir), wall_minutes(compare_dir, running_since),
                       onednn_main, frequent)
    md = format_markdown(summary, rows, names, props,
                         evaluation_text([ref_dir / job_name(REFERENCE, s) for s in seeds] +
                                         [compare_dir / job_name(a, s) for a in arms for s in seeds]))
    io_utils.write_text(compare_dir / "comparison.md", md)
    return md


def evaluation_text(jobs: list[Path]) -> str:
    """What every mIoU of the report is measured on, from the first evaluated job: the split
    (EVAL_SPLIT), its image count and the scale (IMAGE_SCALE); '' if no job was evaluated."""
    for job in jobs:
        ev = job / "round_00" / "eval.json"
        if (job / "config.json").is_file() and ev.is_file():
            c = Job.open(job).config
            images = json.loads(ev.read_text()).get("images")
            scale = f", at IMAGE_SCALE={c.image_scale:g} (images and labels resized)" if c.image_scale != 1 else ""
            return f"Every mIoU is on the {c.eval_split} split ({images} images){scale}."
    return ""


def pool_base(compare_dir: Path | str, arms: list[str], seeds: list[int]) -> int | None:
    """Base superpixels of the train split (the pool), from the first job that has round 0."""
    for arm in arms:
        if arm == REFERENCE:
            continue
        for seed in seeds:
            job = Path(compare_dir) / job_name(arm, seed)
            if (job / "config.json").is_file():
                exp = Job.open(job)
                if exp.done(0, "select"):
                    return exp.base_regions_total()
    return None
