"""The round stages without a model: selection (section 5) and the simulated annotator's
answers (section 6), run by the driver alone (it is the ledger's and the selection's only
writer)."""

from __future__ import annotations

import json

import numpy as np

from deeplab import io_utils
from deeplab.active import acquisition, annotation, region_maps
from deeplab.active import regions as R
from deeplab.active.experiment import Experiment


def pool_task(task: dict):
    """One image's part of round t's pool: (sizes, uncertainty, dominant class, pixels already
    covered by earlier answers) of its regions in round t's map."""
    if task["round"] == 0:
        regions = region_maps.load(task["map"])
        n = R.num_slots(regions)
        size, unc, dom = R.sizes(regions, n), np.zeros(n), np.zeros(n, np.int64)
    else:
        regions, stats = region_maps.load_with_stats(task["map"])
        size, unc, dom = stats["size"], stats["uncertainty"], stats["dominant_class"]
        n = len(size)
    answers = task["answers"]
    if answers:
        maps = {r: region_maps.load(p) for r, p in task["maps"].items()}
        cov = annotation.covered(maps, answers)
        cov_px = np.bincount(regions.ravel(), weights=cov.ravel(), minlength=n)
    else:
        cov_px = np.zeros(n)
    if not task.get("features"):
        return size, unc, dom, cov_px
    # what a measured cost model needs: boundary length and merged base superpixels
    boundary = R.boundary_lengths(regions, n)
    base = np.ones(n, np.int64) if task["round"] == 0 else \
        R.base_counts(regions, region_maps.load(task["base"]), n)
    return size, unc, dom, cov_px, boundary, base


def _round_pool(exp: Experiment, t: int, progress: bool = True, features: bool = False):
    """Per image, on the job's executor: pool_task's arrays for round t."""
    rows_by_image = exp.ledger.by_image()
    tasks = []
    for s in exp.samples:
        rows = [r for r in rows_by_image.get(s.name, []) if r["round"] < t]
        answers = annotation.answer_luts(rows)
        tasks.append({"round": t, "map": exp.map_path(t, s.name), "answers": answers,
                      "maps": {r: exp.map_path(r, s.name) for r in answers},
                      "features": features, "base": exp.map_path(0, s.name)})
    with exp.executor() as ex:
        return ex.map(pool_task, tasks, f"round {t} pool", progress)


def select_round(exp: Experiment, t: int, progress: bool = True) -> dict:
    """Selection stage: writes round_XX/selection.json; returns its summary. The per-image pool
    runs on the executor; scoring and ranking the whole pool run here."""
    c = exp.config
    method = "random" if t == 0 else c.acquisition
    measured = c.cost_model == acquisition.MEASURED
    pool = _round_pool(exp, t, progress, features=measured)
    counts = np.array([len(p[0]) for p in pool])
    offsets = R.offsets(counts)
    size = np.concatenate([p[0] for p in pool]).astype(np.int64)
    unc = np.concatenate([p[1] for p in pool]).astype(np.float64)
    dom = np.concatenate([p[2] for p in pool]).astype(np.int64)
    cov = np.concatenate([p[3] for p in pool])
    image_index = np.repeat(np.arange(len(pool)), counts)
    region_id = np.arange(len(size)) - offsets[image_index]
    # Eligible: the region exists and fewer than half of its pixels already carry an answer.
    eligible = (size > 0) & (cov < size / 2.0)
    rng = np.random.default_rng([c.seed, t])
    scores = np.zeros(len(size))
    if eligible.any():
        e = np.flatnonzero(eligible)
        scores[e] = acquisition.compute_scores(method, unc[e], dom[e], size[e],
                                               exp.descriptor.num_classes, rng)
    base_total = int((size > 0).sum()) if t == 0 else exp.base_regions_total()
    if measured:  # seconds predicted from what is known before asking, in click-equivalents
        model = exp.cost_model()
        feats = acquisition.region_features(size, np.concatenate([p[4] for p in pool]),
                                            np.concatenate([p[5] for p in pool]), unc)
        cost = model.clicks(feats)
    else:
        cost = acquisition.COST_MODELS[c.cost_model](size)
    sel = acquisition.select(scores, eligible, image_index, region_id, cost,
                             exp.budget_clicks(base_total))
    chosen = [{"image": exp.samples[image_index[i]].name, "region": int(region_id[i]),
               "score": float(scores[i]), "cost": int(k), "size": int(size[i])}
              for i, k in zip(sel.index, sel.cost)]
    info = {"method": method, "budget": sel.budget, "spent": sel.spent, "pool": sel.pool_size,
            "regions_total": int((size > 0).sum()), "exhausted": sel.exhausted,
            "base_regions_total": base_total,
            "regions_per_image": float((size > 0).sum() / len(pool)),
            "mean_region_px": float(size[size > 0].mean())}
    if measured:
        info["predicted_seconds"] = round(float(model.seconds(feats[sel.index]).sum()), 1)
        info["cost_model"] = {"file": c.click_cost_model, "unit_seconds": model.unit_seconds}
    io_utils.write_json(exp.round_dir(t) / "selection.json", {"info": info, "regions": chosen})
    if sel.exhausted:
        print(f"round {t}: the budget of {sel.budget} clicks exceeds the eligible pool "
              f"({sel.pool_size} regions): taking the whole pool ({sel.spent} clicks)")
    return info


def answers_task(task: dict) -> tuple[list[int], list[int]]:
    """The simulated annotator on one image: (answers, sizes) of the asked regions."""
    regions = region_maps.load(task["map"])
    d = task["descriptor"]
    label = d.read_label(task["sample"])
    # the pixels earlier rounds' answers label are not this click's
    labelled = annotation.labelled_by(task.get("earlier"), lambda r: region_maps.load(task["maps"][r]),
                                      d.ignore_label)
    unlabelled = None if labelled is None else ~labelled
    answers, sizes = annotation.oracle_answers(regions, label, np.asarray(task["ids"]), unlabelled)
    return answers.tolist(), sizes.tolist()


def read_selection(exp: Experiment, t: int) -> list[dict]:
    """Round t's chosen regions (selection.json), in the order they were chosen."""
    exp.require(t, "select")
    return json.loads((exp.round_dir(t) / "selection.json").read_text())["regions"]


def round_answers(exp: Experiment, t: int, selection: list[dict]) -> dict[tuple[str, int], dict]:
    """The ledger's answers of round t by (image, region); raises if one was never asked."""
    asked = {(r["image"], r["region"]) for r in selection}
    answered = {(r["image"], r["region"]): r for r in exp.ledger.read() if r["round"] == t}
    stray = [k for k in answered if k not in asked]
    if stray:
        raise annotation.LedgerError(
            f"ledger {exp.ledger.path} holds {len(stray)} answers of round {t} that its selection "
            f"never asked (first: region {stray[0][1]} of '{stray[0][0]}'): the ledger was edited; "
            "restore it")
    return answered


def answers_summary(exp: Experiment, t: int, selection: list[dict]) -> dict:
    """The annotate stage's figures once every region of the selection is answered."""
    rows = list(round_answers(exp, t, selection).values())
    if len(rows) != len(selection):
        raise RuntimeError(f"round {t}: {len(rows)} of {len(selection)} regions are answered")
    answered = [r for r in rows if r["answer"] != exp.descriptor.ignore_label]
    return {"answers": len(rows), "clicks": int(sum(r["cost"] for r in rows)),
            "labelled_answers": len(answered),
            # each answer as recorded, in ledger order: a later edit of a line stops the job
            "rows_sha256": annotation.row_digests(rows)}


def annotate_round(exp: Experiment, t: int, progress: bool = True) -> dict:
    """Answers stage. ANNOTATOR=oracle: the simulated annotator answers the selection (per image,
    on the executor) and the driver appends the answers to the ledger. ANNOTATOR=human: the
    annotation page (`deeplab.active.web`) serves the round until every region is answered.
    Either way a resumed run asks only the regions the ledger does not answer yet."""
    sel = read_selection(exp, t)
    if exp.config.annotator == "human":
        from deeplab.active import web

        return web.annotate_round(exp, t)
    summary = _oracle_first_answers(exp, t, sel, progress)
    if exp.config.review_share > 0:
        _oracle_reviews(exp, t, sel, progress)
        summary["review"] = review_summary(exp, t, sel)
    return summary


def _oracle(exp: Experiment, t: int, queries: list[dict], progress: bool,
            what: str) -> tuple[list[int], list[int]]:
    """The simulated annotator's (noise-free) answers to `queries` and the regions' sizes,
    in their order."""
    exp.require_labels("the simulated annotator (ANNOTATOR=oracle)")
    by_image: dict[str, list] = {}
    for k, r in enumerate(queries):
        by_image.setdefault(r["image"], []).append(k)
    samples = {s.name: s for s in exp.samples}
    order = {s.name: i for i, s in enumerate(exp.samples)}
    names = sorted(by_image, key=order.__getitem__)
    earlier = exp.answers_by_image(upto_round=t - 1) if t > 0 else {}
    tasks = [{"descriptor": exp.descriptor, "sample": samples[n], "map": exp.map_path(t, n),
              "ids": [queries[k]["region"] for k in by_image[n]], "earlier": earlier.get(n, []),
              "maps": {r["round"]: exp.map_path(r["round"], n) for r in earlier.get(n, [])}}
             for n in names]
    with exp.executor() as ex:
        results = ex.map(answers_task, tasks, f"round {t} {what}", progress)
    out, sizes = [0] * len(queries), [0] * len(queries)
    for name, (answers, size) in zip(names, results):
        for k, a, n in zip(by_image[name], answers, size):
            out[k], sizes[k] = int(a), int(n)
    return out, sizes


def _mistakes(exp: Experiment, t: int, answers: list[int], positions: list[int], k: int) -> list[int]:
    """ORACLE_NOISE applied to answers of the selection's `positions` (draw k: 0 the first
    answer, 1 the review, 2 the third): one seeded draw per region, so a resumed stage draws
    what an uninterrupted one would."""
    from deeplab.active import review

    c = exp.config
    if not c.oracle_noise:
        return list(answers)
    d = exp.descriptor
    return [int(review.noisy([a], c.oracle_noise, d.num_classes,
                             np.random.default_rng([c.seed, t, p, k]), d.ignore_label)[0])
            for a, p in zip(answers, positions)]


def _oracle_first_answers(exp: Experiment, t: int, sel: list[dict], progress: bool) -> dict:
    done = round_answers(exp, t, sel)
    todo = [k for k, r in enumerate(sel) if (r["image"], r["region"]) not in done]
    if todo:
        queries = [sel[k] for k in todo]
        answers, sizes = _oracle(exp, t, queries, progress, "answers")
        answers = _mistakes(exp, t, answers, todo, 0)
        # in the ledger by image (the data set's order), as the oracle always wrote them
        order = {s.name: i for i, s in enumerate(exp.samples)}
        rows = [{"round": t, "image": q["image"], "region": q["region"], "answer": a,
                 "size": n, "score": q["score"], "cost": q["cost"]}
                for q, a, n in zip(queries, answers, sizes)]
        rows = [rows[k] for k in sorted(range(len(rows)), key=lambda k: (order[rows[k]["image"]], k))]
        exp.ledger.append(rows)
    return answers_summary(exp, t, sel)


def _oracle_reviews(exp: Experiment, t: int, sel: list[dict], progress: bool) -> None:
    """The review pass by the simulated annotator: REVIEW_SHARE of the round's answers asked
    again (an independent draw of ORACLE_NOISE), a third answer where the two disagree."""
    from deeplab.active import review

    c = exp.config
    first = round_answers(exp, t, sel)
    picked = review.review_subset(len(sel), c.review_share, c.seed, t).tolist()
    for k in (1, 2):
        have = exp.ledger.reviews(t)
        if k == 1:
            todo = [p for p in picked if 1 not in have.get((sel[p]["image"], sel[p]["region"]), {})]
        else:  # a third answer where the review disagreed
            todo = [p for p in picked if (key := (sel[p]["image"], sel[p]["region"])) in have
                    and 1 in have[key] and 2 not in have[key]
                    and have[key][1]["answer"] != first[key]["answer"]]
        if not todo:
            continue
        queries = [sel[p] for p in todo]
        answers, _ = _oracle(exp, t, queries, progress, "review" if k == 1 else "third answers")
        answers = _mistakes(exp, t, answers, todo, k)
        exp.ledger.append([{"round": t, "image": q["image"], "region": q["region"], "answer": a,
                            "size": first[(q["image"], q["region"])]["size"], "score": q["score"],
                            "cost": 0, "review": k, "annotator": f"oracle-{'review' if k == 1 else 'third'}",
                            "source": "oracle"} for q, a in zip(queries, answers)])


def review_summary(exp: Experiment, t: int, sel: list[dict]) -> dict:
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
    return {"reviewed": stats["reviewed"], "agreement": stats["agreement"], "kappa": stats["kappa"],
            "agreement_per_class": {names.get(c, str(c)): v for c, v in stats["per_class"].items()},
            "third_answers": sum(2 in reviews[k] for k in keys),
            "unclear_after_review": sum(1 for k, r in zip(keys, resolved)
                                        if r == d.ignore_label and first[k]["answer"] != d.ignore_label)}


def timed_answer_features(exp: Experiment) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, 4], seconds [n]) of the ledger's timed answers: what the selection knew of
    each region before it was asked (`acquisition.region_features`, from its round's map), and
    the measured time of the answer."""
    rows = [r for r in exp.ledger.read() if isinstance(r.get("elapsed_ms"), (int, float))]
    if not rows:
        raise ValueError(f"ledger {exp.ledger.path} holds no timed answer (elapsed_ms): answer a "
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
