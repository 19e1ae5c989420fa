"""One round's stages, in the order the drivers run them (docs/method.md sections 4-9):

  regions   round t's region map and statistics (adaptive / base / oracle) from the previous
            round's model
  select    the size-aware, class-balanced (or random / uncertainty) choice of the regions to ask
  annotate  the answers into the ledger: the simulated annotator (ANNOTATOR=oracle,
            deeplab.experiment.simulated), the page (ANNOTATOR=human,
            deeplab.annotate.server) or Label Studio (ANNOTATOR=label_studio,
            deeplab.annotate.ls_loop); scripts/annotate_regions.py chooses
  data      every answer painted, sieved with the previous round's model, label PNGs, TFRecords
  train     DeepLabv3+ on the round's TFRecords (deeplab.training, imported when it runs)
  eval      mIoU on the val split

Each stage takes (exp, t) and returns the figures its manifest records; the per-image work
runs on the job's executor (deeplab.experiment.tasks). The driver runs them alone: it is the
only writer of the ledger, the selection and the manifests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import acquisition
from deeplab.active import labels as L
from deeplab.active import regions as R
from deeplab.datasets import build_data
from deeplab.datasets.descriptors import DatasetDescriptor, Sample, read_label_png
from deeplab.errors import BadInput, CannotContinue
from deeplab.experiment import region_maps, tasks
# the answers and the simulated annotator live apart; their names stay importable from here
from deeplab.experiment.answers import (answers_summary, read_selection, review_summary,  # noqa: F401
                                        round_answers, timed_answer_features)
from deeplab.experiment.job import Job
from deeplab.parallel import Executor, LocalExecutor, prefetch


def generate_round_regions(descriptor: DatasetDescriptor, samples: list[Sample], predictor,
                           base_dir: Path | str, out_dir: Path | str, mode: str = "adaptive",
                           eps: float = 0.1, oracle_dir: Path | str | None = None,
                           overlay_dir: Path | str | None = None, max_overlays: int = 4,
                           progress: bool = True, executor: Executor | None = None,
                           merge_predictor=None) -> dict:
    """Streams the model over `samples` and writes, per image, the round's region map and its
    statistics (`{out_dir}/{name}.npz`: regions, size, uncertainty, dominant_class).

    mode `adaptive` merges the base map (section 3); `base` keeps it; `oracle` uses the
    ground-truth components; with `merge_predictor` (adaptive only), the merge uses its
    probabilities and the statistics `predictor`'s. The model runs here (images decoded ahead by a thread); each
    image's probabilities go to the executor's workers as soon as they exist, with a bounded
    number in flight. Images already written are skipped (resume). Returns a summary with
    regions per image and ASA before and after.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    todo = [s for s in samples if not region_maps.path(out_dir, s.name).is_file()]
    extra = f", eps={eps:g}" if mode == "adaptive" else ""

    def work():
        import itertools

        images = prefetch(lambda s: (s.name, descriptor.read_image(s)), todo)
        if merge_predictor is None:
            merging = itertools.repeat((None, None))
        else:  # the same decoded images through both models, in step
            images, again = itertools.tee(images)
            merging = merge_predictor.stream(again)
        for k, (s, (name, probs), (_, merge_probs)) in enumerate(
                zip(todo, predictor.stream(images), merging)):
            assert name == s.name
            yield tasks.RoundMapTask(
                descriptor, s, probs, mode, base=region_maps.path(base_dir, name),
                out=region_maps.path(out_dir, name), eps=eps, merge_probs=merge_probs,
                oracle=region_maps.path(oracle_dir, name) if oracle_dir else None,
                overlay=Path(overlay_dir) / f"{name}_{mode}.png" if overlay_dir and k < max_overlays else None,
                title=f"{name}{extra}")

    done = [s for s in samples if s not in todo]
    with (executor or LocalExecutor()) as ex:
        results = list(tqdm(ex.imap(tasks.round_map_task, work()), total=len(todo),
                            desc=f"{mode} regions", unit="img", disable=not progress))
        if done:  # written by an interrupted run: their figures from the maps on disk
            results += ex.map(tasks.map_figures_task, [
                tasks.MapFiguresTask(descriptor, s, region_maps.path(base_dir, s.name),
                                     region_maps.path(out_dir, s.name)) for s in done],
                f"{mode} regions (written before)", progress)
    # Every image's figures, resumed or not: a resumed stage records what an uninterrupted one does.
    summary = {"images": len(samples), "resumed": len(done)}
    if results:
        summary.update({f"regions_per_image_{k}": float(np.mean([getattr(r, k) for r in results]))
                        for k in ("before", "after")})
        # ASA needs the ground truth of every image; without it, not available (never 0).
        summary.update({k: None if any(getattr(r, k) is None for r in results) else
                        float(np.mean([getattr(r, k) for r in results])) for k in ("asa_before", "asa_after")})
    return summary


def checkpoint_every(train_steps: int) -> int:
    """A round's training saves a checkpoint every this many steps (docs/cityscapes.md: "max(50,
    TRAIN_STEPS // 5)"), besides every SAVE_INTERVAL_SECS."""
    return max(50, train_steps // 5)


def predictor_for_round(exp: Job, t: int):
    from deeplab.training.inference import Predictor

    return Predictor.from_train_dir(exp.round_dir(t) / "train", exp.config.inference_scale)


def _round_maps(exp: Job, t: int, samples, write_overlays: bool) -> dict:
    """Round t's maps of `samples` (those not written yet), with round t-1's model."""
    if t < 1:
        raise BadInput("round 0 asks the base superpixels; the regions stage starts at round 1")
    exp.require(t - 1, "train")
    merge_predictor = None
    if exp.config.merge_model:
        from deeplab.training.inference import Predictor

        merge_predictor = Predictor.from_train_dir(exp.config.merge_model, exp.config.inference_scale)
    return generate_round_regions(
        exp.descriptor, samples, predictor_for_round(exp, t - 1), exp.base_dir,
        exp.round_dir(t) / "regions", exp.config.regions, exp.config.eps, exp.oracle_dir,
        exp.round_dir(t) / "overlays" if write_overlays else None, executor=exp.executor(),
        merge_predictor=merge_predictor)


def repair_round_regions(exp: Job, t: int) -> dict:
    """Reads every map of round t through and computes the damaged or missing ones again with
    round t-1's model (the stage's figures stay those it recorded)."""
    out_dir = exp.round_dir(t) / "regions"
    damaged = [s for s in exp.samples
               if not region_maps.readable(region_maps.path(out_dir, s.name), stats=True)]
    for s in damaged:
        region_maps.path(out_dir, s.name).unlink(missing_ok=True)
    if damaged:
        _round_maps(exp, t, damaged, write_overlays=False)
    for s in damaged:
        print(f"rebuilt round {t}'s map {region_maps.path(out_dir, s.name)}")
    return {"checked": len(exp.samples), "rebuilt": len(damaged)}


def regions_stage(exp: Job, t: int, write_overlays: bool = True) -> dict:
    """Regions stage of round t >= 1, with round t-1's model."""
    summary = _round_maps(exp, t, exp.samples, write_overlays)
    warning = collapse_warning(summary, t, exp.config.eps) if exp.config.regions == "adaptive" else None
    if warning:
        import sys

        print(f"WARNING: {warning}", file=sys.stderr)
        summary["warning"] = warning
    return summary


# A merge that leaves fewer than this share of the base regions has collapsed the maps.
COLLAPSE_SHARE = 0.25


def collapse_warning(summary: dict, t: int, eps: float) -> str | None:
    """The warning for a round whose adaptive merge collapsed the maps, or None."""
    before, after = summary.get("regions_per_image_before"), summary.get("regions_per_image_after")
    if not before or after is None or after >= COLLAPSE_SHARE * before:
        return None
    return (f"round {t}: the adaptive merge left {after:.1f} regions per image of {before:.1f} base "
            f"superpixels ({100 * after / before:.0f} %, under {100 * COLLAPSE_SHARE:.0f} %): round "
            f"{t - 1}'s model is too weak for eps={eps:g} (its class distributions are alike "
            f"almost everywhere), so large merged regions will be answered with one class. "
            f"Train longer (TRAIN_STEPS), lower EPS, or use REGIONS=base")


def _round_pool(exp: Job, t: int, progress: bool = True, features: bool = False):
    """Per image, on the job's executor: pool_task's arrays for round t."""
    rows_by_image = exp.ledger.by_image()
    work = []
    for s in exp.samples:
        rows = [r for r in rows_by_image.get(s.name, []) if r["round"] < t]
        answers = L.answer_luts(rows)
        work.append(tasks.PoolTask(t, exp.map_path(t, s.name), answers,
                                   {r: exp.map_path(r, s.name) for r in answers},
                                   features, exp.map_path(0, s.name)))
    with exp.executor() as ex:
        return ex.map(tasks.pool_task, work, f"round {t} pool", progress)


def select_stage(exp: Job, t: int, progress: bool = True) -> dict:
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
    eligible = acquisition.eligible_regions(size, cov)
    scores = acquisition.pool_scores(method, eligible, unc, dom, size, exp.descriptor.num_classes,
                                     np.random.default_rng([c.seed, t]))
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
            "mean_region_px": float(size[size > 0].mean()),
            # the eligible pool's region sizes (px): 25th, 50th, 75th percentile
            "pool_px_quartiles": [float(q) for q in np.percentile(size[eligible], [25, 50, 75])]
            if eligible.any() else []}
    if measured:
        info["predicted_seconds"] = round(float(model.seconds(feats[sel.index]).sum()), 1)
        info["cost_model"] = {"file": c.click_cost_model, "unit_seconds": model.unit_seconds}
    io_utils.write_json(exp.round_dir(t) / "selection.json", {"info": info, "regions": chosen})
    if sel.exhausted:
        print(f"round {t}: the budget of {sel.budget} clicks exceeds the eligible pool "
              f"({sel.pool_size} regions): taking the whole pool ({sel.spent} clicks)")
    return info


def self_train_thresholds(exp: Job, t: int, predictor, progress: bool = True):
    """SELF_TRAIN: per-class confidence bins of round t-1's model over every pixel of the pool
    (section 13's first pass)."""
    from tqdm import tqdm

    from deeplab.active import self_training

    images = prefetch(lambda s: (s.name, exp.descriptor.read_image(s)), exp.samples)
    hist = 0
    for _, probs in tqdm(predictor.stream(images), total=len(exp.samples), desc=f"round {t} confidence",
                         unit="img", disable=not progress):
        hist = hist + self_training.confidence_histogram(probs)
    thresholds = self_training.class_thresholds(hist, exp.config.self_train_share)
    return thresholds, self_training.taken_shares(hist, thresholds)


def propagation_path(exp: Job, t: int) -> Path:
    """Round t's propagated regions: {image: {"regions": [...], "classes": [...]}} in round t's map."""
    return exp.round_dir(t) / "propagated.json"


def earlier_propagation(exp: Job, t: int) -> dict[str, dict[int, tuple]]:
    """image -> round -> (region ids, classes) of the propagation of rounds 1..t-1."""
    out: dict[str, dict[int, tuple]] = {}
    for r in range(1, t):
        path = propagation_path(exp, r)
        fix = (f"run round {r}'s data stage again (delete 'data' and later stages from "
               f"{exp.round_dir(r).name}/manifest.json)")
        if not path.is_file():
            raise CannotContinue(f"round {r}'s propagated regions {path} are missing: {fix}")
        for name, row in io_utils.read_json_object(path, fix).items():
            out.setdefault(name, {})[r] = (np.asarray(row["regions"], np.int64),
                                           np.asarray(row["classes"], np.uint8))
    return out


def data_stage(exp: Job, t: int, max_overlays: int = 4, progress: bool = True) -> dict:
    """Data stage of round t: labels from every answer so far (sieved from round 1 on with
    round t-1's model), with PROPAGATE and SELF_TRAIN what the answers imply beyond their regions
    (from round 1 on), label PNGs, their source maps, TFRecords, and the label report. The
    per-image work runs on the job's executor, fed by the model here."""
    from tqdm import tqdm

    c = exp.config
    rows_by_image = exp.answers_by_image(upto_round=t)
    propagate, self_train = c.propagate and t >= 1, c.self_train and t >= 1
    # self-training labels images that no answer reached too
    samples = [s for s in exp.samples if s.name in rows_by_image or self_train]
    if not any(s.name in rows_by_image for s in samples):
        raise BadInput(f"round {t}: the ledger holds no answers yet")
    label_dir = exp.round_dir(t) / "labels"
    sieve = c.sieve and t >= 1
    min_size = exp.min_size_px()
    title = f"{c.regions} regions, {c.acquisition}, sieve={int(sieve)}" + \
        (", propagate" if propagate else "") + (", self-train" if self_train else "")
    predictor = predictor_for_round(exp, t - 1) if sieve or propagate or self_train else None
    thresholds, taken = self_train_thresholds(exp, t, predictor, progress) if self_train else (None, None)
    earlier = earlier_propagation(exp, t) if propagate else {}

    def work():
        if predictor is not None:
            images = prefetch(lambda s: (s.name, exp.descriptor.read_image(s)), samples)
            probs = (p for _, p in predictor.stream(images))
        else:
            probs = (None for _ in samples)
        shown = 0
        for s, p in zip(samples, probs):
            answers = L.answer_luts(rows_by_image.get(s.name, []))
            overlay = None
            if t in answers and shown < max_overlays:
                shown += 1
                overlay = tasks.AnswersOverlay(t, exp.round_dir(t) / "overlays" / f"{s.name}_answers.png",
                                               f"round {t}, {s.name}: {title}")
            before = earlier.get(s.name, {})
            yield tasks.LabelsTask(
                exp.descriptor, s, p, {r: exp.map_path(r, s.name) for r in {*answers, *before}},
                answers, c.curve_points, min_size, build_data.label_png_path(label_dir, s.name), overlay,
                sieve=sieve, propagate=(t, c.propagate_eps, c.propagate_hops) if propagate else None,
                propagated=before, thresholds=thresholds,
                source_png=exp.label_source_path(t, s.name) if propagate or self_train else None)

    with exp.executor() as ex:
        results = list(tqdm(ex.imap(tasks.labels_task, work()), total=len(samples),
                            desc=f"round {t} labels", unit="img", disable=not progress))
        written = [s for s, r in zip(samples, results) if r.written]
        if not written:
            raise BadInput(f"round {t}: no image has a labelled pixel (every answer was 255)")
        build_data.build_split(exp.descriptor, written, exp.round_dir(t) / "tfrecord", "train",
                               num_shards=round_shards(len(written)), label_dir=label_dir,
                               progress=progress, executor=ex)
    if propagate:  # before the stage is recorded: the next rounds read it
        io_utils.write_json(propagation_path(exp, t), {
            s.name: {"regions": r.propagation[0], "classes": r.propagation[1]}
            for s, r in zip(samples, results) if r.propagation and r.propagation[0]})
    # Error counts need the ground truth; where an image has none they are not available (None),
    # never 0.
    totals = {k: None if any(getattr(r, k) is None for r in results) else sum(getattr(r, k) for r in results)
              for k in tasks.LabelFigures.COUNTS}

    def share(a, b):
        if a is None:
            return None
        return round(a / b, 5) if b else 0.0

    out = {"images": len(written), "labelled_px": totals["labelled_after"],
           "labelled_px_before_sieve": totals["labelled_before"],
           "noise_before": share(totals["wrong_before"], totals["labelled_before"]),
           "noise_after": share(totals["wrong_after"], totals["labelled_after"]),
           "sieved_px": totals["labelled_sieved"],
           "sieved_wrong_share": share(totals["wrong_sieved"], totals["labelled_sieved"]),
           "sieve": bool(sieve), "min_size_px": min_size}
    # what the answers imply (0 where the mechanism is off), after sieving
    for key in ("propagated", "self_trained"):
        out[f"{key}_px"] = totals[f"{key}_px"]
        out[f"{key}_share"] = share(totals[f"{key}_px"], totals["labelled_after"])
        out[f"{key}_wrong_share"] = share(totals[f"{key}_wrong"], totals[f"{key}_px"])
    if propagate:
        out["propagated_regions"] = sum(len(r.propagation[0]) for r in results if r.propagation)
    if self_train:
        from deeplab.active import self_training

        # per class: the lowest confidence taken, and the share of its predicted pixels taken
        out["self_train_thresholds"] = self_training.thresholds_as_confidence(thresholds)
        out["self_train_taken_shares"] = taken
    return out


def round_shards(num_images: int) -> int:
    """Shards of a round's TFRecords: about 100 images each (DeepLab writes Cityscapes train in
    10 shards), at least one per image up to 8, so shards can be written in parallel."""
    return max(min(8, num_images), -(-num_images // 100))


def ensure_round_tfrecords(exp: Job, t: int, progress: bool = True) -> None:
    """Rebuilds round t's TFRecords from its label PNGs when they were deleted after the
    round's evaluation (or a stage needs them again); a no-op while they are complete."""
    from deeplab.datasets import tfrecord

    exp.require(t, "data")
    out = exp.round_dir(t) / "tfrecord"
    info = exp.manifest(t)["data"]
    meta = tfrecord.read_meta(out, "train")
    if meta is not None and meta["count"] == info["images"]:
        return
    if info.get("full"):
        samples = exp.samples
        label_dir = None
    else:
        label_dir = exp.round_dir(t) / "labels"
        samples = [s for s in exp.samples if build_data.label_png_path(label_dir, s.name).is_file()]
    if len(samples) != info["images"]:
        raise CannotContinue(f"round {t}: {len(samples)} label PNGs in {label_dir} but the data stage "
                             f"wrote {info['images']}: rerun it (delete 'data' and later stages from "
                             f"{exp.round_dir(t).name}/manifest.json)")
    print(f"round {t}: rebuilding its TFRecords in {out}")
    with exp.executor() as ex:
        build_data.build_split(exp.descriptor, samples, out, "train", round_shards(len(samples)),
                               label_dir=label_dir, progress=progress, executor=ex)


def full_data(exp: Job, t: int, progress: bool = True) -> dict:
    """Data stage of the fully supervised reference (round 0 of its own job): TFRecords of every
    train image with its whole ground truth. `clicks` is the number of base superpixels of the
    train split, what asking every one of them would cost."""
    if t != 0:
        raise BadInput("the fully supervised reference has one round (0)")
    d = exp.descriptor
    labelled = 0
    for s in exp.samples:
        labelled += int((d.read_label(s) != d.ignore_label).sum())
    if not labelled:
        raise BadInput(f"the train split of {exp.data_root} has no labelled pixel")
    with exp.executor() as ex:
        build_data.build_split(d, exp.samples, exp.round_dir(t) / "tfrecord", "train",
                               num_shards=round_shards(len(exp.samples)), progress=progress, executor=ex)
    return {"images": len(exp.samples), "labelled_px": labelled, "full": True,
            "clicks": exp.base_regions_total()}


def round_class_weights(exp: Job, t: int) -> tuple[float, ...] | None:
    """CLASS_WEIGHTS of round t, from the labels it trains on: the round's label PNGs (answers
    after sieving), or every ground-truth pixel for the fully supervised reference."""
    from deeplab.training import class_weights

    mode = exp.config.class_weights
    if mode == "none":
        return None
    d = exp.descriptor
    class_px = np.zeros(d.num_classes, np.int64)
    image_px = np.zeros(d.num_classes, np.int64)
    label_dir = exp.round_dir(t) / "labels"
    full = exp.manifest(t)["data"].get("full")
    for s in exp.samples:
        if full:
            label = d.read_label(s)
        else:
            path = build_data.label_png_path(label_dir, s.name)
            if not path.is_file():
                continue
            label = read_label_png(path)
        a, b = class_weights.label_counts(label, d.num_classes)
        class_px += a
        image_px += b
    return class_weights.weights(class_px, image_px, mode)


def train_stage(exp: Job, t: int, progress: bool = True) -> dict:
    from deeplab.model import ModelOptions
    from deeplab.training.trainer import TrainConfig, train

    c = exp.config
    d = exp.descriptor
    ensure_round_tfrecords(exp, t, progress)
    weights = round_class_weights(exp, t)
    init, init_last = (c.init_checkpoint or None), c.initialize_last_layer
    if c.warm_start and t > 0:
        from deeplab.training.trainer import FINAL_WEIGHTS

        exp.require(t - 1, "train")
        init, init_last = str(exp.round_dir(t - 1) / "train" / FINAL_WEIGHTS), True
    config = TrainConfig(
        train_logdir=str(exp.round_dir(t) / "train"), tfrecord_dir=str(exp.round_dir(t) / "tfrecord"),
        num_classes=d.num_classes, ignore_label=d.ignore_label, class_weights=weights,
        model=ModelOptions(num_classes=d.num_classes, model_variant=c.model_variant,
                           batch_norm_decay=c.batch_norm_decay,
                           fine_tune_batch_norm=c.fine_tune_batch_norm),
        training_number_of_steps=c.train_steps, base_learning_rate=c.base_learning_rate,
        train_crop_size=(c.train_crop_size, c.train_crop_size), train_batch_size=c.train_batch_size,
        min_scale_factor=c.min_scale_factor, max_scale_factor=c.max_scale_factor,
        tf_initial_checkpoint=init, initialize_last_layer=init_last,
        # The same seed every round and arm: initialisation and augmentation are fixed, so what
        # differs between two trainings of a comparison is their labels.
        save_interval_steps=checkpoint_every(c.train_steps), save_interval_secs=c.save_interval_secs,
        seed=c.seed,
        deterministic=c.deterministic, progress=progress)
    info = train(config)
    out = {k: info[k] for k in ("steps", "final_loss", "images_per_second") if k in info}
    if weights is not None:
        out["class_weights"] = [round(w, 4) for w in weights]
    return out


def eval_stage(exp: Job, t: int, progress: bool = True) -> dict:
    from deeplab.datasets import tfrecord
    from deeplab.training.evaluate import evaluate, format_table
    from deeplab.training.trainer import load_trained

    split = exp.config.eval_split
    if not exp.evaluable:
        shutil.rmtree(exp.round_dir(t) / "tfrecord", ignore_errors=True)
        why = f"{exp.descriptor.split_source(exp.data_root, split)} does not exist"
        print(f"round {t}: not evaluated ({why}: the data set has no {split} split)")
        return {"miou": None, "evaluated": False, "reason": why}
    names = [s.name for s in exp.eval_samples()]
    tfrecord.check_meta(exp.val_tfrecord_dir, split, names,
                        fix="run the driver again (it rebuilds them), or python "
                            f"scripts/build_tfrecords.py --job_dir {exp.job_dir} --splits {split} --skip_existing")
    model, _ = load_trained(exp.round_dir(t) / "train")
    res = evaluate(model, exp.val_tfrecord_dir, split, exp.descriptor.num_classes,
                   exp.descriptor.ignore_label, progress=progress)
    if res["images"] != len(names):
        raise CannotContinue(f"evaluated {res['images']} {split} images but the list has {len(names)}: "
                             f"rebuild {exp.val_tfrecord_dir}")
    io_utils.write_json(exp.round_dir(t) / "eval.json", res)
    # The round's TFRecords are rebuilt from its label PNGs if a stage needs them again.
    shutil.rmtree(exp.round_dir(t) / "tfrecord", ignore_errors=True)
    iou = np.array([np.nan if v is None else v for v in res["per_class_iou"]])
    print(format_table(iou, exp.descriptor.class_names, res["miou"]))
    return {"miou": res["miou"]}
