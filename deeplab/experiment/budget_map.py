"""The budget map (`BUDGETS="0.3% 1% 3% 10%" bash bash_files/compare.sh`): the comparison's arms
at several per-round budgets, the reference shared, and where on the budget axis one arm starts
to beat another.

Layout of `$WORK_DIR/$JOB_NAME` of a budget map:
  full_s{seed}/                    the reference, once per seed (it reads no budget)
  budget_{b}/{arm}_s{seed}/        the arms at budget b (budget_0.3pct, budget_500)
  budget_{b}/comparison.*          that budget's comparison (compare.write_report)
  budget_map.csv                   one row per budget, arm, seed and round (and the reference)
  budget_map.md                    the map, the crossover, and per budget why each arm got there
  budget_map.png                   last-round mIoU against clicks per image; paired differences

A budget's seeds are the `{arm}_s{seed}` jobs found in its folder, so a third seed run later
for one budget (`BUDGETS=1% SEEDS=2`) joins the map without rerunning the others.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.errors import BadInput
from deeplab.experiment import compare, results
from deeplab.experiment.job import Job
from deeplab.experiment.results import iou_column
from deeplab.viz import plots

# Pairs the map reports (those whose two arms it ran; adaptive - random: the adaptive regions
# without sieving), and the one whose crossover it tests.
MAP_PAIRS = (("paper", "random"), ("class_balanced", "random"), ("paper", "class_balanced"),
             ("adaptive", "random"))
CROSSOVER_PAIR = "paper - random"
CROSSOVER_SE = 2.0  # the difference must exceed this many standard errors, every seed agreeing
FREQUENT = 5  # classes with the most ground-truth pixels (val) count as the frequent ones
FIELDS = ("budget", "clicks_per_image", "arm", "seed", "round", "clicks", "miou")


def map_pairs(arms: list[str]) -> list[tuple[str, str]]:
    """The MAP_PAIRS whose two arms are among `arms` (the ones the map ran)."""
    return [(a, b) for a, b in MAP_PAIRS if a in arms and b in arms]


def budget_seeds(folder: Path, arms: list[str]) -> list[int]:
    """The seeds of the `{arm}_s{seed}` jobs in one budget's folder."""
    seeds = set()
    for arm in arms:
        for job in folder.glob(f"{arm}_s*"):
            m = re.fullmatch(re.escape(arm) + r"_s(\d+)", job.name)
            if m and (job / "config.json").is_file():
                seeds.add(int(m.group(1)))
    return sorted(seeds)


def _pool(folder: Path, arms: list[str], seeds: list[int]) -> Job | None:
    """The first job of the budget that finished its warm-up selection (pool size, images)."""
    for arm in arms:
        for seed in seeds:
            job = folder / compare.job_name(arm, seed)
            if (job / "config.json").is_file():
                exp = Job.open(job)
                if exp.done(0, "select"):
                    return exp
    return None


def collect_map(compare_dir: Path | str, budgets: list[str], arms: list[str]) -> dict:
    """{"rows": csv rows, "names": class names, "budgets": [{budget, folder, seeds, images,
    pool_base, rows}] in the order of clicks per image, "reference": the reference's rows}."""
    compare_dir = Path(compare_dir)
    al_arms = [a for a in arms if a != compare.REFERENCE]
    points, names = [], []
    for b in compare.check_budgets(budgets):
        folder = compare_dir / compare.budget_folder(b)
        seeds = budget_seeds(folder, al_arms)
        exp = _pool(folder, al_arms, seeds) if seeds else None
        if exp is None:
            continue
        rows, names = compare.collect(folder, al_arms, seeds)
        images = len(exp.samples)
        for r in rows:
            r["budget"] = b
            r["clicks_per_image"] = round(float(r["clicks"]) / images, 4)
        points.append({"budget": b, "folder": folder, "seeds": seeds, "images": images,
                       "pool_base": exp.base_regions_total(), "rows": rows})
    points.sort(key=lambda p: _per_round(p))
    ref_seeds = sorted({s for p in points for s in p["seeds"]})
    reference = []
    if compare.REFERENCE in arms and ref_seeds:
        reference, ref_names = compare.collect(compare_dir, [compare.REFERENCE], ref_seeds)
        names = names or ref_names
        images = points[0]["images"]
        for r in reference:
            r["budget"] = "all"
            r["clicks_per_image"] = round(float(r["clicks"]) / images, 4) if r["clicks"] != "" else ""
    rows = [r for p in points for r in p["rows"]] + reference
    return {"rows": rows, "names": names, "budgets": points, "reference": reference}


def _per_round(point: dict) -> float:
    """Clicks per image of one round at this budget."""
    clicks, percent = compare.parse_budget(point["budget"])
    per_round = clicks if clicks else percent / 100.0 * point["pool_base"]
    return per_round / point["images"]


def write_csv(path: Path, rows: list[dict], names: list[str]) -> None:
    fields = list(FIELDS) + [iou_column(n) for n in names] + ["labelled_px"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    io_utils.write_text(path, buf.getvalue())


# ---------------------------------------------------------------------------- the map
def _last_round(rows: list[dict], arm: str) -> int | None:
    ts = [r["round"] for r in rows if r["arm"] == arm and r["round"] != ""]
    return max(ts) if ts else None


def arm_points(point: dict, arms: list[str]) -> dict:
    """{arm: (round, clicks per image, mean, s.e., seeds)} of each arm's last round at a budget,
    over the seeds that reached it."""
    out = {}
    for arm in arms:
        t = _last_round(point["rows"], arm)
        if t is None:
            continue
        rs = [r for r in point["rows"] if r["arm"] == arm and r["round"] == t]
        m, sd = compare._mean_std([r["miou"] for r in rs])
        out[arm] = (t, float(np.mean([r["clicks_per_image"] for r in rs])), m,
                    compare.standard_error(sd, len(rs)), len(rs))
    return out


def last_round_differences(point: dict) -> dict:
    """{pair: paired difference of the last round both arms reached} at one budget."""
    diffs = compare.paired_differences(point["rows"], MAP_PAIRS)
    out = {}
    for d in diffs:
        if d["pair"] not in out or d["round"] > out[d["pair"]]["round"]:
            out[d["pair"]] = d
    return out


def pays(d: dict | None) -> bool:
    """A difference above CROSSOVER_SE standard errors with every seed (at least two) agreeing."""
    return bool(d and d["seeds"] >= 2 and d["positive"] == d["seeds"]
                and d["mean"] > CROSSOVER_SE * d["se"])


def crossover(points: list[dict]) -> dict | None:
    """The smallest budget at which paper - random pays (`pays`), or None."""
    for p in points:
        if pays(last_round_differences(p).get(CROSSOVER_PAIR)):
            return p
    return None


def _fmt_diff(d: dict | None) -> str:
    if not d:
        return ""
    mark = " **pays**" if pays(d) else ""
    return (f"{d['mean']:+.2f} +/- {d['se']:.2f} ({d['positive']}/{d['negative']} of "
            f"{d['seeds']}){mark}")


def map_table(points: list[dict], arms: list[str], ref_miou: float | None) -> list[str]:
    al = [a for a in arms if a != compare.REFERENCE]
    pairs = map_pairs(al)
    head = ["budget / round", "clicks per image (round)", "seeds", "warm-up"] + al + \
        [p.replace(" - ", " − ") for p in (f"{a} - {b}" for a, b in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        pts = arm_points(p, al)
        warm = [r["miou"] for r in p["rows"] if r["round"] == 0]
        seeds = {}
        for r in p["rows"]:
            if r["round"] == 0:
                seeds.setdefault(r["seed"], r["miou"])
        w = float(np.mean(list(seeds.values()))) if seeds else None
        cells = [p["budget"], f"{_per_round(p):.2f}", " ".join(map(str, p["seeds"])),
                 f"{w:.2f}" if warm else ""]
        for a in al:
            v = pts.get(a)
            cells.append(f"{v[2]:.2f} +/- {v[3]:.2f} (r{v[0]}, n={v[4]})" if v else "")
        diffs = last_round_differences(p)
        cells += [_fmt_diff(diffs.get(f"{a} - {b}")) for a, b in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"Last round's val mIoU (%), mean +/- standard error over seeds; the reference: "
            f"{ref_miou:.2f}." if ref_miou is not None else "Last round's val mIoU (%).")
    return lines + ["", note + " Paired differences of the last round, in brackets the seeds "
                    f"with a > b / a < b; **pays**: above {CROSSOVER_SE:g} s.e. with every seed "
                    "agreeing."]


# ---------------------------------------------------------------------------- explanations
def frequent_classes(reference_dir: Path, points: list[dict], names: list[str]) -> list[int]:
    """The FREQUENT classes with the most ground-truth pixels in the val split."""
    paths = sorted(reference_dir.glob("full_s*/round_00/eval.json"))
    for p in points:
        paths += sorted(p["folder"].glob("*_s*/round_00/eval.json"))
    return results.frequent_classes(paths, len(names), FREQUENT)


def class_change_table(point: dict, arms: list[str], names: list[str], frequent: list[int],
                       reference: list[dict]) -> list[str]:
    """Per arm: mean IoU change from the warm-up to the last round in the frequent classes and
    in the others (mean over seeds), and the warm-up's frequent classes as % of the reference."""
    others = [i for i in range(len(names)) if i not in frequent]
    ref = compare.iou_matrix(reference, compare.REFERENCE, "", names)
    lines = ["| arm | last round | frequent classes: warm-up -> last (change) | "
             "other classes: warm-up -> last (change) |", "|---|---|---|---|"]
    for arm in arms:
        t = _last_round(point["rows"], arm)
        warm = compare.iou_matrix(point["rows"], arm, 0, names)
        last = compare.iou_matrix(point["rows"], arm, t, names)
        if t is None or warm is None or last is None or warm.shape != last.shape:
            continue
        cells = []
        for idx in (frequent, others):
            a, b = np.nanmean(warm[:, idx]), np.nanmean(last[:, idx])
            cells.append(f"{a:.2f} -> {b:.2f} ({b - a:+.2f})")
        lines.append(f"| {arm} | {t} | " + " | ".join(cells) + " |")
    warm = next((w for w in (compare.iou_matrix(point["rows"], a, 0, names) for a in arms)
                 if w is not None), None)
    if ref is not None and warm is not None:
        per = [f"{names[i]} {np.nanmean(warm[:, i]):.1f} of {np.nanmean(ref[:, i]):.1f}"
               for i in frequent]
        share = compare.frequent_share(warm, ref, frequent)
        lines += ["", f"Warm-up in the frequent classes: {', '.join(per)}; "
                  f"{100 * share:.1f} % of the reference's IoU (summed over them)."]
    return lines


def selection_table(point: dict, arms: list[str]) -> list[str]:
    """Per arm, over its rounds >= 1 and seeds: the selected regions' sizes against the pool's
    (median and quartiles, px), labelled pixels per click, sieving's removed pixels and the
    share of them that was wrong."""
    lines = ["| arm | rounds | selected regions px: median [q1, q3] | pool px: median [q1, q3] | "
             "labelled px / click | sieved px | sieved wrong |", "|---|---|---|---|---|---|---|"]
    for arm in arms:
        sizes, pool_q, sieved, wrong, ppc = [], [], [], [], []
        rounds = sorted({r["round"] for r in point["rows"] if r["arm"] == arm and r["round"] != ""})
        for seed in point["seeds"]:
            exp_dir = point["folder"] / compare.job_name(arm, seed)
            if not (exp_dir / "config.json").is_file():
                continue
            exp = Job.open(exp_dir)
            for t in rounds[1:] or rounds:
                sel_path = exp.round_dir(t) / "selection.json"
                if not sel_path.is_file():
                    continue
                sel = json.loads(sel_path.read_text())
                sizes += [r["size"] for r in sel["regions"]]
                if sel["info"].get("pool_px_quartiles"):
                    pool_q.append(sel["info"]["pool_px_quartiles"])
                data = exp.manifest(t).get("data", {})
                if isinstance(data.get("sieved_px"), (int, float)) and t >= 1:
                    sieved.append(data["sieved_px"])
                    if isinstance(data.get("sieved_wrong_share"), (int, float)):
                        wrong.append((data["sieved_wrong_share"], data["sieved_px"]))
            mine = [r for r in point["rows"] if r["arm"] == arm and r["seed"] == seed and r["round"] != ""]
            if mine and mine[-1]["labelled_px"] not in ("", None):
                ppc.append(float(mine[-1]["labelled_px"]) / float(mine[-1]["clicks"]))
        if not sizes:
            continue
        q = np.percentile(sizes, [25, 50, 75])
        pq = np.mean(pool_q, axis=0) if pool_q else None
        pool = f"{pq[1]:.0f} [{pq[0]:.0f}, {pq[2]:.0f}]" if pq is not None else "n/a"
        removed = f"{np.mean(sieved):.0f}" if sieved else "n/a"
        w_px = sum(px for _, px in wrong)
        share = f"{sum(s * px for s, px in wrong) / w_px:.3f}" if w_px else ("n/a" if not sieved else "0")
        lines.append(f"| {arm} | {', '.join(map(str, rounds[1:] or rounds))} | {q[1]:.0f} "
                     f"[{q[0]:.0f}, {q[2]:.0f}] | {pool} | {np.mean(ppc):.1f} | {removed} | {share} |"
                     if ppc else f"| {arm} | | {q[1]:.0f} [{q[0]:.0f}, {q[2]:.0f}] | {pool} | n/a | "
                     f"{removed} | {share} |")
    return lines + ["", "Sizes over every region the arm selected in rounds >= 1 (all seeds); the "
                    "pool's quartiles are those of the regions it could select, averaged over rounds "
                    "and seeds; labelled px / click of the last round (cumulative), mean over seeds; "
                    "sieved px per round, mean; sieved wrong: the share of sieved pixels whose "
                    "answer was not their ground truth."]


# ---------------------------------------------------------------------------- report
def format_markdown(data: dict, arms: list[str], frequent: list[int],
                    wall: tuple[float, int] | None = None, evaluation: str = "") -> str:
    points, names = data["budgets"], data["names"]
    al = [a for a in arms if a != compare.REFERENCE]
    ref = data["reference"]
    ref_miou = float(np.mean([r["miou"] for r in ref])) if ref else None
    lines = ["# Budget map", ""]
    if points:
        p0 = points[0]
        lines += [f"Pool: {p0['images']} images, {p0['pool_base']} base superpixels. "
                  f"Reference (`full`, every ground-truth pixel): "
                  + (f"{ref_miou:.2f} mIoU over {len(ref)} seed(s)." if ref else "not run.")
                  + (f" {evaluation}" if evaluation else ""), ""]
    lines += map_table(points, arms, ref_miou)
    found = crossover(points)
    mapped = ", ".join(p["budget"] for p in points) or "none"
    lines += ["", "## Crossover", "", f"Budgets in the map: {mapped}.", ""]
    if found:
        d = last_round_differences(found)[CROSSOVER_PAIR]
        below = [p["budget"] for p in points if _per_round(p) < _per_round(found)]
        lines.append(f"paper − random first pays at **{found['budget']}** per round "
                     f"({_per_round(found):.2f} clicks per image per round): {_fmt_diff(d)}"
                     + ("." if below else "; no smaller budget is in the map, so the crossover "
                        "lies at or below it."))
    else:
        lines.append(f"No budget of the map shows paper − random above {CROSSOVER_SE:g} standard "
                     "errors with every seed agreeing.")
    fnames = ", ".join(names[i] for i in frequent)
    lines += ["", "## Why, budget by budget", "",
              f"Frequent classes: the {len(frequent)} with the most ground-truth pixels in the val "
              f"split ({fnames}); the others are the remaining {len(names) - len(frequent)}. "
              "IoU in %, mean over seeds."]
    for p in points:
        lines += ["", f"### {p['budget']} per round ({_per_round(p):.2f} clicks per image per "
                  f"round, seeds {' '.join(map(str, p['seeds']))})", ""]
        lines += class_change_table(p, al, names, frequent, ref)
        lines += [""] + selection_table(p, al)
    if wall:
        lines += ["", f"Wall time: {wall[0]:.1f} min over {wall[1]} run(s) of compare.sh."]
    return "\n".join(lines) + "\n"


def plot(data: dict, arms: list[str], path: Path, title: str = "") -> None:
    """budget_map.png (`deeplab.viz.plots.budget_map_plot`)."""
    al = [a for a in arms if a != compare.REFERENCE]
    curves = {a: {"x": [], "mean": [], "se": [], "seeds": 0} for a in al}
    diffs = {f"{a} - {b}": {"x": [], "mean": [], "se": []} for a, b in map_pairs(al) if b == "random"}
    for p in data["budgets"]:
        for a, v in arm_points(p, al).items():
            c = curves[a]
            c["x"].append(v[1]), c["mean"].append(v[2]), c["se"].append(v[3])
            c["seeds"] = max(c["seeds"], v[4])
        x = _per_round(p)
        for pair, d in last_round_differences(p).items():
            if pair in diffs:
                diffs[pair]["x"].append(x), diffs[pair]["mean"].append(d["mean"])
                diffs[pair]["se"].append(d["se"])
    ref = data["reference"]
    reference = float(np.mean([r["miou"] for r in ref])) if ref else None
    plots.budget_map_plot(path, [dict(c, arm=a) for a, c in curves.items() if c["x"]],
                          [dict(d, pair=k) for k, d in diffs.items() if d["x"]], reference, title)


def write_budget_map(compare_dir: Path | str, budgets: list[str], arms: list[str],
                     running_since: int | None = None) -> str:
    """Writes budget_map.csv, .md and .png under compare_dir; returns the markdown."""
    compare_dir = Path(compare_dir)
    data = collect_map(compare_dir, budgets, arms)
    if not data["budgets"]:
        raise BadInput(f"no budget of '{' '.join(budgets)}' has an evaluated round under {compare_dir}")
    write_csv(compare_dir / "budget_map.csv", data["rows"], data["names"])
    plot(data, arms, compare_dir / "budget_map.png", compare_dir.name)
    frequent = frequent_classes(compare_dir, data["budgets"], data["names"])
    jobs = [p["folder"] / compare.job_name(a, s) for p in data["budgets"] for a in arms for s in p["seeds"]]
    md = format_markdown(data, arms, frequent, compare.wall_minutes(compare_dir, running_since),
                         compare.evaluation_text(jobs))
    io_utils.write_text(compare_dir / "budget_map.md", md)
    return md
