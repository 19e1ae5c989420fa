"""A round's answers as the ledger holds them: the selection they answer, the answers in force,
the answers stage's figures, the review pass's agreement (docs/method.md section 6), and the
features of timed answers that a measured cost model is fitted on. Read by every annotator's
stage (the simulated one, the page, Label Studio) and by the cost model."""

from __future__ import annotations

import json

import numpy as np

from deeplab.active import acquisition
from deeplab.active import labels as L
from deeplab.active import regions as R
from deeplab.errors import BadInput, CannotContinue
from deeplab.experiment import ledger, region_maps
from deeplab.experiment.job import Job


def read_selection(exp: Job, t: int) -> list[dict]:
    """Round t's chosen regions (selection.json), in the order they were chosen."""
    exp.require(t, "select")
    return json.loads((exp.round_dir(t) / "selection.json").read_text())["regions"]


def labelled_before(exp: Job, t: int):
    """What an annotator of round t is shown as labelled already, per image: `of(name, shape)`
    gives (bool [H, W] pixels earlier rounds' answers label, or None; uint8 [H, W] round t-1's
    label sources (labels.SOURCE_*: what it propagated or took from the model), or None), and
    refuses label sources of another size than `shape`, the image's round-t region map."""
    rows = exp.answers_by_image(upto_round=t - 1) if t > 0 else {}
    ignore = exp.descriptor.ignore_label

    def of(name: str, shape: tuple[int, int]):
        labelled = L.labelled_by(rows.get(name), lambda r: exp.load_map(r, name), ignore)
        sources = exp.label_sources(t - 1, name)
        if sources is not None and sources.shape != tuple(shape):
            raise BadInput(f"label sources {exp.label_source_path(t - 1, name)} are {sources.shape} but "
                           f"round {t}'s region map of '{name}' is {tuple(shape)}: run round {t - 1}'s "
                           "data stage again")
        return labelled, sources
    return of


def round_answers(exp: Job, t: int, selection: list[dict]) -> dict[tuple[str, int], dict]:
    """The ledger's answers of round t by (image, region); raises if one was never asked."""
    asked = {(r["image"], r["region"]) for r in selection}
    answered = {(r["image"], r["region"]): r for r in exp.ledger.read() if r["round"] == t}
    stray = [k for k in answered if k not in asked]
    if stray:
        raise ledger.LedgerError(
            f"ledger {exp.ledger.path} holds {len(stray)} answers of round {t} that its selection "
            f"never asked (first: region {stray[0][1]} of '{stray[0][0]}'): the ledger was edited; "
            "restore it")
    return answered


def answers_summary(exp: Job, t: int, selection: list[dict]) -> dict:
    """The annotate stage's figures once every region of the selection is answered."""
    from deeplab.active import review

    first = round_answers(exp, t, selection)
    rows = list(first.values())
    if len(rows) != len(selection):
        raise CannotContinue(f"round {t}: {len(rows)} of {len(selection)} regions are answered")
    ignore = exp.descriptor.ignore_label
    reviews = exp.ledger.reviews(t)

    def label(key, row):  # the label in force: a review's disagreement can make it unclear
        rv = reviews.get(key, {})
        if 1 not in rv:
            return row["answer"]
        third = rv[2]["answer"] if 2 in rv else None
        return review.resolve(row["answer"], rv[1]["answer"], third, ignore)

    return {"answers": len(rows), "clicks": int(sum(r["cost"] for r in rows)),
            "labelled_answers": sum(label(k, r) != ignore for k, r in first.items()),
            # each answer as recorded, in ledger order: a later edit of a line stops the job
            "rows_sha256": ledger.row_digests(rows)}


def review_summary(exp: Job, t: int, sel: list[dict]) -> dict:
    """The review pass's figures of round t: reviewed, raw agreement, Cohen's kappa, agreement
    per class of the first answer, third answers, and regions left unclear by a disagreement."""
    from deeplab.active import review

    first = round_answers(exp, t, sel)
    reviews = exp.ledger.reviews(t)
    keys = [k for k in first if 1 in reviews.get(k, {})]
    a = [first[k]["answer"] for k in keys]
    b = [reviews[k][1]["answer"] for k in keys]
    d = exp.descriptor
    stats = review.agreement(a, b, d.num_classes, d.ignore_label)
    names = dict(enumerate(d.class_names))
    names[d.ignore_label] = "unclear"
    resolved = [review.resolve(first[k]["answer"], reviews[k][1]["answer"],
                               reviews[k][2]["answer"] if 2 in reviews[k] else None, d.ignore_label)
                for k in keys]
    timed = [rv[n]["elapsed_ms"] for rv in reviews.values() for n in rv
             if isinstance(rv[n].get("elapsed_ms"), (int, float))]
    return {"reviewed": stats["reviewed"], "agreement": stats["agreement"], "kappa": stats["kappa"],
            "review_seconds": round(sum(timed) / 1000.0, 1) if timed else None,
            "timed_reviews": len(timed),
            "agreement_per_class": {names.get(c, str(c)): v for c, v in stats["per_class"].items()},
            "third_answers": sum(2 in reviews[k] for k in keys),
            "unclear_after_review": sum(1 for k, r in zip(keys, resolved)
                                        if r == d.ignore_label and first[k]["answer"] != d.ignore_label)}


def timed_answer_features(exp: Job) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, 4], seconds [n]) of the ledger's timed answers: what the selection knew of
    each region before it was asked (`acquisition.region_features`, from its round's map), and
    the measured time of the answer."""
    rows = [r for r in exp.ledger.read() if isinstance(r.get("elapsed_ms"), (int, float))]
    if not rows:
        raise BadInput(f"ledger {exp.ledger.path} holds no timed answer (elapsed_ms): answer a "
                       "round on the page (ANNOTATOR=human) first")
    feats, seconds = [], []
    by_map: dict[tuple[int, str], list[dict]] = {}
    for r in rows:
        by_map.setdefault((r["round"], r["image"]), []).append(r)
    for (t, name), mine in by_map.items():
        if t == 0:
            regions, unc = region_maps.load(exp.map_path(0, name)), None
        else:
            regions, stats = region_maps.load_with_stats(exp.map_path(t, name))
            unc = stats["uncertainty"]
        n = R.num_slots(regions)
        boundary = R.boundary_lengths(regions, n)
        base = np.ones(n, np.int64) if t == 0 else R.base_counts(regions, exp.load_map(0, name), n)
        ids = np.array([r["region"] for r in mine])
        size = R.sizes(regions, n)[ids]  # the region's size, as the selection saw it
        feats.append(acquisition.region_features(size, boundary[ids], base[ids],
                                                 np.zeros(len(ids)) if unc is None else unc[ids]))
        seconds += [r["elapsed_ms"] / 1000.0 for r in mine]
    return np.concatenate(feats), np.array(seconds)


def stage_summary(exp: Job, t: int, selection: list[dict]) -> dict:
    """The answers stage's figures, whoever answered (the oracle, the page, Label Studio): the
    answers in force, and the review pass's agreement when REVIEW_SHARE is set."""
    out = answers_summary(exp, t, selection)
    if exp.config.review_share:
        out["review"] = review_summary(exp, t, selection)
    return out
