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


def _round_pool(exp: Experiment, t: int):
    """Per image: (sizes, uncertainty, dominant class, covered pixels) of round t's regions."""
    rows_by_image = exp.ledger.by_image()
    pool = []
    for s in exp.samples:
        if t == 0:
            regions = exp.load_map(0, s.name)
            n = R.num_slots(regions)
            size = R.sizes(regions, n)
            unc = np.zeros(n)
            dom = np.zeros(n, np.int64)
        else:
            regions, stats = region_maps.load_with_stats(exp.map_path(t, s.name))
            size, unc, dom = stats["size"], stats["uncertainty"], stats["dominant_class"]
            n = len(size)
        maps, answers = exp.answers_of(s.name, before_round=t, rows_by_image=rows_by_image)
        if answers:
            cov = annotation.covered(maps, answers)
            cov_px = np.bincount(regions.ravel(), weights=cov.ravel(), minlength=n)
        else:
            cov_px = np.zeros(n)
        pool.append((size, unc, dom, cov_px))
    return pool


def select_round(exp: Experiment, t: int) -> dict:
    """Selection stage: writes round_XX/selection.json; returns its summary."""
    c = exp.config
    method = "random" if t == 0 else c.acquisition
    pool = _round_pool(exp, t)
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
    sel = acquisition.select(scores, eligible, image_index, region_id,
                             acquisition.COST_MODELS[c.cost_model](size), exp.budget_clicks(base_total))
    chosen = [{"image": exp.samples[image_index[i]].name, "region": int(region_id[i]),
               "score": float(scores[i]), "cost": int(cost), "size": int(size[i])}
              for i, cost in zip(sel.index, sel.cost)]
    info = {"method": method, "budget": sel.budget, "spent": sel.spent, "pool": sel.pool_size,
            "regions_total": int((size > 0).sum()), "exhausted": sel.exhausted,
            "base_regions_total": base_total,
            "regions_per_image": float((size > 0).sum() / len(pool)),
            "mean_region_px": float(size[size > 0].mean())}
    io_utils.write_json(exp.round_dir(t) / "selection.json", {"info": info, "regions": chosen})
    if sel.exhausted:
        print(f"round {t}: the budget of {sel.budget} clicks exceeds the eligible pool "
              f"({sel.pool_size} regions): taking the whole pool ({sel.spent} clicks)")
    return info


def annotate_round(exp: Experiment, t: int) -> dict:
    """Answers stage: the simulated annotator answers the selection; appended to the ledger
    once (a resumed run finds the round's rows and does not append them again)."""
    sel = json.loads((exp.round_dir(t) / "selection.json").read_text())["regions"]
    existing = [r for r in exp.ledger.read() if r["round"] == t]
    if existing:
        if len(existing) != len(sel):
            raise RuntimeError(
                f"ledger {exp.ledger.path} holds {len(existing)} answers of round {t} but the "
                f"selection has {len(sel)}: the ledger was edited; restore it")
        rows = existing
    else:
        by_image: dict[str, list] = {}
        for r in sel:
            by_image.setdefault(r["image"], []).append(r)
        samples = {s.name: s for s in exp.samples}
        order = {s.name: i for i, s in enumerate(exp.samples)}
        rows = []
        for name in sorted(by_image, key=order.__getitem__):
            asked = by_image[name]
            regions = exp.load_map(t, name)
            label = exp.descriptor.read_label(samples[name])
            ids = np.array([r["region"] for r in asked])
            answers, sizes = annotation.oracle_answers(regions, label, ids)
            for r, a, n in zip(asked, answers, sizes):
                rows.append({"round": t, "image": name, "region": r["region"], "answer": int(a),
                             "size": int(n), "score": r["score"], "cost": r["cost"]})
        exp.ledger.append(rows)
    answered = [r for r in rows if r["answer"] != exp.descriptor.ignore_label]
    return {"answers": len(rows), "clicks": int(sum(r["cost"] for r in rows)),
            "labelled_answers": len(answered)}
