"""What an experiment bought: one row per evaluated round (clicks, mIoU, per-class IoU, region
and label-noise figures), results.csv, al_curve.png and the aligned table."""

from __future__ import annotations

import csv
import io
import json

from deeplab import io_utils
from deeplab.experiment.job import Job
from deeplab.viz import plots


def iou_column(class_name: str) -> str:
    """The results column of a class's IoU (`iou_traffic_light`)."""
    return f"iou_{class_name.replace(' ', '_')}"


def iou_cells(ev: dict, class_names) -> dict:
    """Per-class IoU (%) of an eval.json by column; '' where a class had an empty union."""
    return {iou_column(n): "" if v is None else round(100 * v, 2)
            for n, v in zip(class_names, ev["per_class_iou"])}


def frequent_classes(eval_paths, num_classes: int, k: int = 5) -> list[int]:
    """The k classes with the most ground-truth pixels, by the confusion matrix (its row sums)
    of the first of `eval_paths` (eval.json files of one val split) that has one; [] if none."""
    import numpy as np

    for path in eval_paths:
        cm = np.asarray(json.loads(open(path).read()).get("confusion_matrix", []), np.float64)
        if cm.ndim == 2 and cm.shape[0] == num_classes:
            return [int(i) for i in np.argsort(-cm.sum(axis=1), kind="stable")[:k]]
    return []


# A figure that needs what the data set does not have (ground truth, a val split).
NOT_AVAILABLE = "n/a"


def _available(info: dict, key: str):
    """A manifest figure; None (not measurable without ground truth) becomes 'n/a'."""
    if key in info and info[key] is None:
        return NOT_AVAILABLE
    return info.get(key, "")


# Region size buckets (pixels) of the seconds-per-click columns.
SIZE_BUCKETS = ((0, 256, "px_lt256"), (256, 1024, "px_256_1k"), (1024, 4096, "px_1k_4k"),
                (4096, float("inf"), "px_ge4k"))


def cost_column(what: str) -> str:
    """The results column of the median seconds per click of answers of one class or size."""
    return f"seconds_per_click_{what.replace(' ', '_')}"


def annotation_cost(rows: list[dict], class_names, ignore_label: int = 255) -> dict:
    """A round's measured annotation time from its ledger rows (those with `elapsed_ms`: the
    page's measurement or Label Studio's lead time): the total seconds, the median and 90th
    percentile seconds per click, and the median by answered class and by region size bucket.
    'n/a' where no answer was timed (the simulated annotator), never 0."""
    import numpy as np

    timed = [r for r in rows if isinstance(r.get("elapsed_ms"), (int, float))]
    keys = (["annotation_seconds", "timed_answers", "seconds_per_click_median",
             "seconds_per_click_p90"] + [cost_column(n) for n in class_names] +
            [cost_column("unclear")] + [cost_column(b[2]) for b in SIZE_BUCKETS])
    out = {k: NOT_AVAILABLE for k in keys}
    if not timed:
        return out
    per_click = np.array([r["elapsed_ms"] / 1000.0 / max(1, int(r["cost"])) for r in timed])
    out.update({"annotation_seconds": round(sum(r["elapsed_ms"] for r in timed) / 1000.0, 1),
                "timed_answers": len(timed),
                "seconds_per_click_median": round(float(np.median(per_click)), 2),
                "seconds_per_click_p90": round(float(np.percentile(per_click, 90)), 2)})
    names = {c: n for c, n in enumerate(class_names)}
    names[ignore_label] = "unclear"
    groups: dict[str, list[float]] = {}
    for r, v in zip(timed, per_click):
        groups.setdefault(cost_column(names.get(r["answer"], str(r["answer"]))), []).append(v)
        for lo, hi, label in SIZE_BUCKETS:
            if lo <= r["size"] < hi:
                groups.setdefault(cost_column(label), []).append(v)
    out.update({k: round(float(np.median(v)), 2) for k, v in groups.items() if k in out})
    return out


def review_cells(rv: dict | None, class_names) -> dict:
    """The review pass's figures of a round (REVIEW_SHARE): reviewed answers, raw agreement,
    Cohen's kappa, regions left unclear, the reviews' measured seconds, agreement per class;
    'n/a' without a review pass (and kappa 'n/a' where it is undefined)."""
    keys = ["reviewed", "review_agreement", "review_kappa", "unclear_after_review",
            "review_seconds"] + [f"agreement_{n.replace(' ', '_')}" for n in class_names]
    if not rv or not rv.get("reviewed"):
        return {k: NOT_AVAILABLE for k in keys}

    def cell(v, digits):
        return NOT_AVAILABLE if v is None else round(v, digits)

    out = {"reviewed": rv["reviewed"], "review_agreement": cell(rv["agreement"], 4),
           "review_kappa": cell(rv["kappa"], 4), "unclear_after_review": rv["unclear_after_review"],
           "review_seconds": cell(rv.get("review_seconds"), 1)}
    per = rv.get("agreement_per_class", {})
    out.update({f"agreement_{n.replace(' ', '_')}": round(per[n], 4) if n in per else NOT_AVAILABLE
                for n in class_names})
    return out


def results_rows(exp: Job) -> list[dict]:
    """One row per evaluated round, derived from the manifests (so always consistent)."""
    rows = []
    names = exp.descriptor.class_names
    clicks_in: dict[int, int] = {}
    rows_in: dict[int, list[dict]] = {}
    for r in exp.ledger.read():
        clicks_in[r["round"]] = clicks_in.get(r["round"], 0) + int(r["cost"])
        rows_in.setdefault(r["round"], []).append(r)
    for t in range(exp.config.rounds):
        m = exp.manifest(t)
        if "eval" not in m:
            break
        sel, data = m.get("select", {}), m.get("data", {})
        row = {"round": t, "clicks": sum(v for k, v in clicks_in.items() if k <= t)}
        if m["eval"].get("evaluated", True):
            ev = json.loads((exp.round_dir(t) / "eval.json").read_text())
            row["miou"] = round(100 * ev["miou"], 2)
            row.update(iou_cells(ev, names))
        else:  # no val split: the round bought labels but was not measured
            row["miou"] = NOT_AVAILABLE
            row.update({iou_column(n): NOT_AVAILABLE for n in names})
        row.update({
            "regions_per_image": round(sel.get("regions_per_image", float("nan")), 1),
            "mean_region_px": round(sel.get("mean_region_px", float("nan")), 1),
            "labelled_px": data.get("labelled_px", ""),
            "label_noise_before_sieve": _available(data, "noise_before"),
            "label_noise_after_sieve": _available(data, "noise_after"),
            "sieved_px": data.get("sieved_px", ""),
            "sieved_wrong_share": _available(data, "sieved_wrong_share"),
        })
        # PROPAGATE / SELF_TRAIN: the training labels they gave (after sieving), their share of
        # every training label and the share of them that is wrong
        for key in ("propagated", "self_trained"):
            row.update({f"{key}_px": data.get(f"{key}_px", ""), f"{key}_share": data.get(f"{key}_share", ""),
                        f"{key}_wrong_share": _available(data, f"{key}_wrong_share")})
        row.update(annotation_cost(rows_in.get(t, []), names, exp.descriptor.ignore_label))
        row.update(review_cells(m.get("annotate", {}).get("review"), names))
        # COST_MODEL=measured: the fit's seconds for what was asked so far (equal-effort axis)
        predicted = [exp.manifest(k).get("select", {}).get("predicted_seconds") for k in range(t + 1)]
        row["predicted_seconds"] = NOT_AVAILABLE if any(v is None for v in predicted) else \
            round(float(sum(predicted)), 1)
        rows.append(row)
    return rows


def output_paths(exp: Job):
    """(results.csv, al_curve.png) at the job root."""
    return exp.job_dir / "results.csv", exp.job_dir / "al_curve.png"


def write_results(exp: Job) -> list[dict]:
    """results.csv and al_curve.png at the job root; returns the rows."""
    rows = results_rows(exp)
    if not rows:
        return rows
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    table, curve = output_paths(exp)
    measured = [r for r in rows if r["miou"] != NOT_AVAILABLE]
    text = buf.getvalue().encode("utf-8")
    if table.is_file() and table.read_bytes() == text and (curve.is_file() or not measured):
        return rows  # both written from these rows before (the curve after the table)
    curve.unlink(missing_ok=True)  # a table newer than its curve is never left behind
    io_utils.write_bytes(table, text)
    if not measured:  # no val split: nothing to plot
        return rows
    c = exp.config
    plots.al_curve(curve, [r["clicks"] for r in measured],
                   [r["miou"] for r in measured], [r["round"] for r in measured],
                   f"{c.dataset}: {c.regions} regions, {c.acquisition}, sieve={int(c.sieve)}")
    return rows


def format_results(rows: list[dict]) -> str:
    """The results table, one column per figure, aligned to its widest cell."""
    cols = [("round", "round"), ("clicks", "clicks"), ("miou", "mIoU"),
            ("regions_per_image", "regions/img"), ("labelled_px", "labelled px"),
            ("label_noise_before_sieve", "noise before"), ("label_noise_after_sieve", "noise after"),
            ("sieved_px", "sieved px"), ("sieved_wrong_share", "sieved wrong"),
            ("annotation_seconds", "annot. s"), ("seconds_per_click_median", "s/click"),
            ("seconds_per_click_p90", "s/click p90")]

    def cell(key, v):
        if v == "" or v is None or (isinstance(v, float) and v != v):
            return "-"
        if isinstance(v, float) and key.startswith(("label_noise", "sieved_wrong")):
            return f"{v:.4f}"
        if isinstance(v, float):
            return f"{v:.2f}" if key == "miou" else f"{v:g}"
        return str(v)

    table = [[head for _, head in cols]] + [[cell(k, r.get(k, "")) for k, _ in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in table)


def record(job_dir, show: bool = True, unless_started: int | None = None) -> int:
    """Writes a job's results.csv and al_curve.png (when they changed) and, with `show`, prints the
    table, unless round `unless_started` has begun: scripts/record_results.py (at the end of each
    driver; warm_up.sh's prints nothing once round 1 has begun, as adaptive_superpixel.sh prints
    it at its end), and run_round.py --record_results after a driver's round (without printing)."""
    exp = Job.open(job_dir)
    rows = write_results(exp)
    if not show or (unless_started is not None and exp.manifest(unless_started)):
        return 0
    if not rows:
        print("no evaluated round yet")
        return 0
    print(format_results(rows))
    table, curve = output_paths(exp)
    print(f"\n{table}" + (f"\n{curve}" if curve.is_file() else "\n(no AL curve: no round was evaluated)"))
    return 0
