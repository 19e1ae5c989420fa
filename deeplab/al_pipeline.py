"""The active-learning stages that need a model: round region maps with statistics
(adaptive / base / oracle, from the previous round's model) and round training data
(painting every answer, sieving with the previous round's model, label PNGs, TFRecords)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import adaptive, annotation, metrics, overlays, sieving, superpixels
from deeplab.active import regions as R
from deeplab.active.experiment import Experiment
from deeplab.datasets.descriptors import DatasetDescriptor, Sample


def _save_round_map(path: Path, regions: np.ndarray, stats: R.RegionStats) -> None:
    with io_utils.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, regions=regions.astype(np.int32), size=stats.size,
                                uncertainty=stats.uncertainty, dominant_class=stats.dominant_class)


def generate_round_regions(descriptor: DatasetDescriptor, samples: list[Sample], predictor,
                           base_dir: Path | str, out_dir: Path | str, mode: str = "adaptive",
                           eps: float = 0.1, oracle_dir: Path | str | None = None,
                           overlay_dir: Path | str | None = None, max_overlays: int = 4,
                           progress: bool = True) -> dict:
    """Streams the model over `samples` and writes, per image, the round's region map and its
    statistics (`{out_dir}/{name}.npz`: regions, size, uncertainty, dominant_class).

    mode `adaptive` merges the base map (section 3); `base` keeps it; `oracle` uses the
    ground-truth components. Images already written are skipped (resume). Returns a summary
    with regions per image and ASA before and after.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    todo = [s for s in samples if not superpixels.region_path(out_dir, s.name).is_file()]
    before, after, asa_before, asa_after = [], [], [], []

    def images():
        for s in todo:
            yield s.name, descriptor.read_image(s)

    by_name = {s.name: s for s in todo}
    for k, (name, probs) in enumerate(tqdm(predictor.stream(images()), total=len(todo),
                                           desc=f"{mode} regions", unit="img", disable=not progress)):
        s = by_name[name]
        base = superpixels.load_regions(superpixels.region_path(base_dir, name))
        if base.shape != probs.shape[:2]:
            raise ValueError(f"base map of '{name}' is {base.shape} but the image is {probs.shape[:2]}")
        label = descriptor.read_label(s)
        if mode == "adaptive":
            res = adaptive.adaptive_superpixels(probs, base, eps)
            regions, stats = res.regions, res.stats
        elif mode == "base":
            regions, stats = base, R.region_statistics(probs, base)
        elif mode == "oracle":
            stored = superpixels.region_path(oracle_dir, name) if oracle_dir else None
            regions = superpixels.load_regions(stored) if stored is not None and stored.is_file() \
                else superpixels.oracle_superpixels(label)
            stats = R.region_statistics(probs, regions)
        else:
            raise ValueError(f"unknown region mode '{mode}'; valid: adaptive, base, oracle")
        _save_round_map(superpixels.region_path(out_dir, name), regions, stats)
        before.append(int(base.max()) + 1)
        after.append(int((stats.size > 0).sum()))
        asa_before.append(metrics.asa(base, label, descriptor.ignore_label))
        asa_after.append(metrics.asa(regions, label, descriptor.ignore_label))
        if overlay_dir and k < max_overlays:
            extra = f", eps={eps:g}" if mode == "adaptive" else ""
            overlays.regions_figure(Path(overlay_dir) / f"{name}_{mode}.png", descriptor.read_image(s),
                                    base, regions, mode, title=f"{name}{extra}")
    summary = {"images": len(todo), "skipped": len(samples) - len(todo)}
    if todo:
        summary.update({"regions_per_image_before": float(np.mean(before)),
                        "regions_per_image_after": float(np.mean(after)),
                        "asa_before": float(np.mean(asa_before)), "asa_after": float(np.mean(asa_after))})
    return summary


def predictor_for_round(exp: Experiment, t: int):
    from deeplab.inference import Predictor

    return Predictor.from_train_dir(exp.round_dir(t) / "train", exp.config.inference_scale)


def round_regions(exp: Experiment, t: int, write_overlays: bool = True) -> dict:
    """Regions stage of round t >= 1, with round t-1's model."""
    if t < 1:
        raise ValueError("round 0 asks the base superpixels; the regions stage starts at round 1")
    exp.require(t - 1, "train")
    summary = generate_round_regions(
        exp.descriptor, exp.samples, predictor_for_round(exp, t - 1), exp.base_dir,
        exp.round_dir(t) / "regions", exp.config.regions, exp.config.eps, exp.oracle_dir,
        exp.round_dir(t) / "overlays" if write_overlays else None)
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


def round_data(exp: Experiment, t: int, max_overlays: int = 4, progress: bool = True) -> dict:
    """Data stage of round t: labels from every answer so far (sieved from round 1 on with
    round t-1's model), label PNGs, TFRecords, and the label-noise report."""
    from tqdm import tqdm

    from deeplab.datasets import build_data

    c = exp.config
    ignore = exp.descriptor.ignore_label
    rows_by_image = exp.ledger.by_image(upto_round=t)
    samples = [s for s in exp.samples if s.name in rows_by_image]
    if not samples:
        raise ValueError(f"round {t}: the ledger holds no answers yet")
    label_dir = exp.round_dir(t) / "labels"
    overlay_dir = exp.round_dir(t) / "overlays"
    sieve = c.sieve and t >= 1
    min_size = exp.min_size_px()
    predictor = predictor_for_round(exp, t - 1) if sieve else None

    def items():
        for s in samples:
            yield s.name, (exp.descriptor.read_image(s) if sieve else None)

    stream = predictor.stream(items()) if sieve else ((n, None) for n, _ in items())
    by_name = {s.name: s for s in samples}
    totals = {f"{kind}_{key}": 0 for kind in ("wrong", "labelled") for key in ("before", "after", "sieved")}
    written = []
    for k, (name, probs) in enumerate(tqdm(stream, total=len(samples), desc=f"round {t} labels",
                                           unit="img", disable=not progress)):
        s = by_name[name]
        maps, answers = exp.answers_of(name, rows_by_image=rows_by_image)
        painted, owner = annotation.paint(maps, answers, ignore)
        labels = painted
        if sieve:
            keep = np.zeros(painted.shape, bool)
            for r, (ids, ans) in answers.items():
                sieved_r = sieving.sieve_labels(maps[r], ids, ans, probs, knee=c.knee,
                                                min_size_px=min_size, ignore_label=ignore)
                keep |= (owner == r) & (sieved_r != ignore)
            labels = np.where(keep, painted, np.uint8(ignore)).astype(np.uint8)
        gt = exp.descriptor.read_label(s)
        lab_a = labels != ignore
        sieved = (painted != ignore) & ~lab_a
        for key, counts in (("before", metrics.label_errors(painted, gt, ignore)),
                            ("after", metrics.label_errors(labels, gt, ignore)),
                            ("sieved", metrics.label_errors(painted, gt, ignore, where=sieved))):
            totals[f"wrong_{key}"] += counts[0]
            totals[f"labelled_{key}"] += counts[1]
        if lab_a.any():
            io_utils.write_png(build_data.label_png_path(label_dir, name), labels)
            written.append(s)
        this_round = answers.get(t)
        if this_round is not None and k < max_overlays:
            asked = np.zeros(R.num_slots(maps[t]), bool)
            asked[this_round[0]] = True
            overlays.answers_figure(
                overlay_dir / f"{name}_answers.png", exp.descriptor.read_image(s),
                np.where(asked[maps[t]], maps[t] + 1, 0), painted, labels, gt,
                exp.descriptor.class_names, ignore,
                title=f"round {t}, {name}: {c.regions} regions, {c.acquisition}, sieve={int(sieve)}")
    if not written:
        raise ValueError(f"round {t}: no image has a labelled pixel (every answer was 255)")
    build_data.build_split(exp.descriptor, written, exp.round_dir(t) / "tfrecord", "train",
                           num_shards=min(8, len(written)), label_dir=label_dir, progress=progress)

    def share(a, b):
        return round(a / b, 5) if b else 0.0

    return {"images": len(written), "labelled_px": totals["labelled_after"],
            "labelled_px_before_sieve": totals["labelled_before"],
            "noise_before": share(totals["wrong_before"], totals["labelled_before"]),
            "noise_after": share(totals["wrong_after"], totals["labelled_after"]),
            "sieved_px": totals["labelled_sieved"],
            "sieved_wrong_share": share(totals["wrong_sieved"], totals["labelled_sieved"]),
            "sieve": bool(sieve), "min_size_px": min_size}


def full_data(exp: Experiment, t: int, progress: bool = True) -> dict:
    """Data stage of the fully supervised reference (round 0 of its own job): TFRecords of every
    train image with its whole ground truth. `clicks` is the number of base superpixels of the
    train split, what asking every one of them would cost."""
    from deeplab.datasets import build_data

    if t != 0:
        raise ValueError("the fully supervised reference has one round (0)")
    d = exp.descriptor
    labelled = 0
    for s in exp.samples:
        labelled += int((d.read_label(s) != d.ignore_label).sum())
    if not labelled:
        raise ValueError(f"the train split of {exp.data_root} has no labelled pixel")
    build_data.build_split(d, exp.samples, exp.round_dir(t) / "tfrecord", "train",
                           num_shards=min(8, len(exp.samples)), progress=progress)
    return {"images": len(exp.samples), "labelled_px": labelled, "full": True,
            "clicks": exp.base_regions_total()}


def train_round(exp: Experiment, t: int, progress: bool = True) -> dict:
    from deeplab.model import ModelOptions
    from deeplab.train import TrainConfig, train

    c = exp.config
    d = exp.descriptor
    init, init_last = (c.init_checkpoint or None), c.initialize_last_layer
    if c.warm_start and t > 0:
        from deeplab.train import FINAL_WEIGHTS

        exp.require(t - 1, "train")
        init, init_last = str(exp.round_dir(t - 1) / "train" / FINAL_WEIGHTS), True
    config = TrainConfig(
        train_logdir=str(exp.round_dir(t) / "train"), dataset_dir=str(exp.round_dir(t) / "tfrecord"),
        num_classes=d.num_classes, ignore_label=d.ignore_label,
        model=ModelOptions(num_classes=d.num_classes, model_variant=c.model_variant,
                           bn_momentum=c.batch_norm_decay,
                           fine_tune_batch_norm=c.fine_tune_batch_norm),
        training_number_of_steps=c.train_steps, base_learning_rate=c.base_learning_rate,
        train_crop_size=(c.train_crop_size, c.train_crop_size), train_batch_size=c.train_batch_size,
        tf_initial_checkpoint=init, initialize_last_layer=init_last,
        # The same seed every round and arm: initialisation and augmentation are fixed, so what
        # differs between two trainings of a comparison is their labels.
        save_interval_steps=max(50, c.train_steps // 5), seed=c.seed,
        deterministic=c.deterministic, progress=progress)
    info = train(config)
    return {k: info[k] for k in ("steps", "final_loss", "images_per_second") if k in info}


def eval_round(exp: Experiment, t: int, progress: bool = True) -> dict:
    from deeplab.eval import evaluate, format_table
    from deeplab.train import load_trained

    model, _ = load_trained(exp.round_dir(t) / "train")
    res = evaluate(model, exp.val_tfrecord_dir, "val", exp.descriptor.num_classes,
                   exp.descriptor.ignore_label, progress=progress)
    io_utils.write_json(exp.round_dir(t) / "eval.json", res)
    iou = np.array([np.nan if v is None else v for v in res["per_class_iou"]])
    print(format_table(iou, exp.descriptor.class_names, res["miou"]))
    return {"miou": res["miou"]}
