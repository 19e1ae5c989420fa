"""The per-image stages, each a pure function of one image (plus its inputs) that an executor
maps (`deeplab.parallel`): base superpixels, oracle maps, a round's region map with its
statistics, and a round's training labels with sieving. Each writes its one file atomically and
returns its figures; the driver aggregates them. Resume: images whose file exists are skipped
by the callers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from deeplab import io_utils
from deeplab.active import adaptive, metrics, oracle, superpixels
from deeplab.active import labels as L
from deeplab.active import regions as R
from deeplab.datasets.descriptors import DatasetDescriptor, Sample
from deeplab.errors import BadInput
from deeplab.experiment import region_maps
from deeplab.parallel import Executor, LocalExecutor
from deeplab.viz import overlays


# ---------------------------------------------------------------------------- task records
# What each per-image function gets (a frozen record, pickled to a worker; its large arrays go
# through shared memory, deeplab.parallel) and what the region and label functions give back.
@dataclasses.dataclass(frozen=True)
class BaseTask:
    descriptor: DatasetDescriptor
    sample: Sample
    out: Path  # the map file
    method: str  # slic | seeds
    size_px: float  # one superpixel per this many pixels, unless n_segments
    n_segments: int | None = None
    overlay_dir: Path | None = None
    verify: bool = False  # a map already there: kept if it reads whole, else computed again


@dataclasses.dataclass(frozen=True)
class OracleTask:
    descriptor: DatasetDescriptor
    sample: Sample
    out: Path


@dataclasses.dataclass(frozen=True)
class RoundMapTask:
    descriptor: DatasetDescriptor
    sample: Sample
    probs: np.ndarray  # [H, W, C] the previous round's class probabilities
    mode: str  # adaptive | base | oracle
    base: Path  # the base map
    out: Path  # the round's map (with statistics)
    eps: float = 0.1
    merge_probs: np.ndarray | None = None  # another model's probabilities that merge instead
    oracle: Path | None = None  # a stored oracle map (mode oracle)
    overlay: Path | None = None
    title: str = ""


@dataclasses.dataclass(frozen=True)
class MapFiguresTask:
    descriptor: DatasetDescriptor
    sample: Sample
    base: Path
    out: Path


@dataclasses.dataclass(frozen=True)
class MapFigures:
    """Regions before (base) and after (the round's map), and their ASA (None without labels)."""
    before: int
    after: int
    asa_before: float | None
    asa_after: float | None


@dataclasses.dataclass(frozen=True)
class AnswersOverlay:
    round: int
    path: Path
    title: str


@dataclasses.dataclass(frozen=True)
class LabelsTask:
    descriptor: DatasetDescriptor
    sample: Sample
    probs: np.ndarray | None  # the previous round's probabilities: sieving (None: no sieving)
    maps: dict  # round -> its map file, for every round with answers on this image
    answers: dict  # round -> (region ids, answers): labels.answer_luts
    curve_points: int
    min_size_px: int
    label_png: Path
    overlay: AnswersOverlay | None = None
    sieve: bool = True  # sieve with `probs` (False: probs are there for the mechanisms below only)
    # PROPAGATE: (round, eps, hops): that round's answers propagate in its map (section 12)
    propagate: tuple | None = None
    propagated: dict = dataclasses.field(default_factory=dict)  # earlier rounds' propagation
    thresholds: np.ndarray | None = None  # SELF_TRAIN: per-class confidence bins (section 13)
    source_png: Path | None = None  # where each label comes from (labels.SOURCE_*), if given


@dataclasses.dataclass(frozen=True)
class LabelFigures:
    """Labelled pixels before and after sieving and those sieved, and how many of each are
    wrong (None where the image has no ground truth); the training labels that propagation
    and self-training gave (after sieving) and how many are wrong; the round's propagation
    (region ids, classes) when it propagated."""
    written: bool
    labelled_before: int
    wrong_before: int | None
    labelled_after: int
    wrong_after: int | None
    labelled_sieved: int
    wrong_sieved: int | None
    propagated_px: int = 0
    propagated_wrong: int | None = 0
    self_trained_px: int = 0
    self_trained_wrong: int | None = 0
    propagation: tuple | None = None

    COUNTS = ("labelled_before", "wrong_before", "labelled_after", "wrong_after",
              "labelled_sieved", "wrong_sieved", "propagated_px", "propagated_wrong",
              "self_trained_px", "self_trained_wrong")


@dataclasses.dataclass(frozen=True)
class PoolTask:
    round: int
    map: Path  # the round's map
    answers: dict  # earlier rounds' answers on the image (labels.answer_luts)
    maps: dict  # round -> map file of those answers
    features: bool = False  # also what a measured cost model needs
    base: Path | None = None  # the base map (features after the warm-up)


@dataclasses.dataclass(frozen=True)
class AnswersTask:
    descriptor: DatasetDescriptor
    sample: Sample
    map: Path  # the round's map
    ids: list  # the asked region ids
    earlier: list = dataclasses.field(default_factory=list)  # earlier rounds' ledger rows
    maps: dict = dataclasses.field(default_factory=dict)  # round -> map file of those rows


def shard_items(items: Sequence, shard: tuple[int, int] | None) -> list:
    if shard is None:
        return list(items)
    i, n = shard
    return list(items)[i::n]


# ---------------------------------------------------------------------------- base and oracle maps
def base_task(task: BaseTask) -> tuple[int, int] | None:
    """Base superpixels of one image -> its map file; returns (regions made, regions asked).
    With `verify`, a map already there is kept if it reads whole (None) and computed again if it
    is damaged."""
    if task.verify and region_maps.readable(task.out):
        return None
    image = task.descriptor.read_image(task.sample)
    h, w = image.shape[:2]
    n = task.n_segments or superpixels.n_segments_for(h, w, task.size_px)
    regions = superpixels.base_superpixels(image, task.method, n, f"image '{task.sample.name}'")
    region_maps.save(task.out, regions)
    if task.overlay_dir:
        io_utils.write_png(Path(task.overlay_dir) / f"{task.sample.name}.png", superpixels.overlay(image, regions))
    return int(regions.max()) + 1, int(n)


def extract_base(descriptor: DatasetDescriptor, samples: list[Sample], out_dir: Path | str,
                 method: str = "seeds", superpixel_size_px: float = 256.0,
                 n_segments: int | None = None, executor: Executor | None = None,
                 shard: tuple[int, int] | None = None, overlay_dir: Path | str | None = None,
                 progress: bool = True) -> dict:
    """Base superpixels for every sample (skipping maps already written). Returns a summary:
    maps `written` and `skipped`, and over the written ones `mean_regions` (made per image) and
    `mean_asked`; `count_warning` where they made fewer than asked by more than
    superpixels.COUNT_TOLERANCE (the method cannot make that many on these images)."""
    if method not in superpixels.METHODS:
        raise BadInput(f"unknown superpixel method '{method}'; valid: {', '.join(superpixels.METHODS)}")
    mine = shard_items(samples, shard)
    # Maps already written are read through (on the workers) and rebuilt if damaged.
    tasks = [BaseTask(descriptor, s, region_maps.path(out_dir, s.name), method, superpixel_size_px,
                      n_segments, overlay_dir, region_maps.path(out_dir, s.name).is_file())
             for s in mine]
    counts = (executor or LocalExecutor()).map(base_task, tasks, f"{method} superpixels", progress)
    written = [c for c in counts if c is not None]
    rebuilt = [t.out for t, c in zip(tasks, counts) if t.verify and c is not None]
    for path in rebuilt:
        print(f"rebuilt the damaged base map {path}")
    out = {"written": len(written), "skipped": len(mine) - len(written),
           "mean_regions": float(np.mean([c[0] for c in written])) if written else None,
           "mean_asked": float(np.mean([c[1] for c in written])) if written else None}
    if rebuilt:
        out["rebuilt_damaged"] = len(rebuilt)
    if written and out["mean_regions"] < (1 - superpixels.COUNT_TOLERANCE) * out["mean_asked"]:
        setting = "NUM_SUPERPIXELS" if n_segments else "superpixel_size_px (or NUM_SUPERPIXELS)"
        out["count_warning"] = (
            f"{method.upper()} made {out['mean_regions']:.1f} superpixels per image of the "
            f"{out['mean_asked']:.1f} asked ({100 * out['mean_regions'] / out['mean_asked']:.0f} %): "
            f"the images are too small for that many; lower {setting} or raise IMAGE_SCALE")
    return out


def describe_extraction(summary: dict, split: str = "train") -> str:
    """One line in words for the summary of extract_base (or extract_oracle)."""
    text = f"{split}: {summary['written']} maps written, {summary.get('skipped', 0)} already there"
    if summary.get("mean_regions") is not None:
        text += f"; {summary['mean_regions']:.1f} regions per image"
        if summary.get("mean_asked"):
            share = 100 * summary["mean_regions"] / summary["mean_asked"]
            text += f" ({summary['mean_asked']:.1f} asked, {share:.0f} %)"
    if summary.get("rebuilt_damaged"):
        text += f"; {summary['rebuilt_damaged']} damaged maps rebuilt"
    return text


def oracle_task(task: OracleTask) -> int:
    regions = superpixels.oracle_superpixels(task.descriptor.read_label(task.sample))
    region_maps.save(task.out, regions)
    return int(regions.max()) + 1


def extract_oracle(descriptor: DatasetDescriptor, samples: list[Sample], out_dir: Path | str,
                   executor: Executor | None = None, shard: tuple[int, int] | None = None,
                   progress: bool = True) -> dict:
    todo = [OracleTask(descriptor, s, region_maps.path(out_dir, s.name))
            for s in shard_items(samples, shard) if not region_maps.path(out_dir, s.name).is_file()]
    counts = (executor or LocalExecutor()).map(oracle_task, todo, "oracle superpixels", progress)
    return {"written": len(todo), "skipped": len(shard_items(samples, shard)) - len(todo),
            "mean_regions": float(np.mean(counts)) if counts else None}


def region_quality(descriptor: DatasetDescriptor, samples: list[Sample], region_dir: Path | str) -> dict:
    """Mean regions per image, ASA and boundary recall of stored maps against the ground truth."""
    n, a, br = [], [], []
    for s in samples:
        regions = region_maps.load(region_maps.path(region_dir, s.name))
        label = descriptor.read_label(s)
        n.append(int(regions.max()) + 1)
        a.append(metrics.asa(regions, label, descriptor.ignore_label))
        br.append(metrics.boundary_recall(regions, label))
    return {"regions_per_image": float(np.mean(n)), "asa": float(np.mean(a)),
            "boundary_recall": float(np.mean(br))}


# ---------------------------------------------------------------------------- round maps
def round_map_task(task: RoundMapTask) -> MapFigures:
    """A round's region map of one image from the previous round's probabilities (adaptive:
    the merge of the base map, section 3; base: the base map; oracle: ground-truth components)
    with its statistics (section 4) -> `task.out`. Returns region counts and ASA."""
    descriptor, sample, probs, mode = task.descriptor, task.sample, task.probs, task.mode
    name = sample.name
    base = region_maps.load(task.base)
    if base.shape != probs.shape[:2]:
        raise BadInput(f"base map of '{name}' is {base.shape} but the image is {probs.shape[:2]}: "
                       f"delete {task.base} and rerun scripts/extract_superpixels.py")
    label = descriptor.ground_truth(sample)
    if mode == "adaptive" and task.merge_probs is not None:  # merged by another model (a bound)
        regions = adaptive.adaptive_superpixels(task.merge_probs, base, task.eps).regions
        stats = R.region_statistics(probs, regions)
    elif mode == "adaptive":
        res = adaptive.adaptive_superpixels(probs, base, task.eps)
        regions, stats = res.regions, res.stats
    elif mode == "base":
        regions, stats = base, R.region_statistics(probs, base)
    elif mode == "oracle":
        stored = task.oracle
        regions = region_maps.load(stored) if stored is not None and Path(stored).is_file() \
            else superpixels.oracle_superpixels(label)
        stats = R.region_statistics(probs, regions)
    else:
        raise BadInput(f"unknown region mode '{mode}'; valid: adaptive, base, oracle")
    region_maps.save(task.out, regions, stats)
    if task.overlay:
        overlays.regions_figure(task.overlay, descriptor.read_image(sample), base, regions, mode,
                                title=task.title or name)
    return _map_figures(descriptor, label, base, regions, stats.size)


def _map_figures(descriptor, label, base, regions, sizes) -> MapFigures:
    # Without ground truth (a folder of unlabelled images) the ASA is not available.
    asa = [None, None] if label is None else \
        [metrics.asa(m, label, descriptor.ignore_label) for m in (base, regions)]
    return MapFigures(int(base.max()) + 1, int((np.asarray(sizes) > 0).sum()), asa[0], asa[1])


def map_figures_task(task: MapFiguresTask) -> MapFigures:
    """round_map_task's figures of a map already written (a resumed regions stage), so the
    stage's summary covers every image whether or not it was interrupted."""
    regions, stats = region_maps.load_with_stats(task.out)
    return _map_figures(task.descriptor, task.descriptor.ground_truth(task.sample),
                        region_maps.load(task.base), regions, stats["size"])


# ---------------------------------------------------------------------------- round labels
def labels_task(task: LabelsTask) -> LabelFigures:
    """Training labels of one image for a round: every answer so far painted, with what the
    answers imply when asked (propagated regions, confident pixels), sieved with the previous
    round's probabilities when asked (`deeplab.active.labels`) -> the label PNG (only when a
    pixel is labelled) and the source map. Returns label-error counts against the ground truth
    (None where the image has none)."""
    from deeplab.active import propagation, self_training

    descriptor, sample, ignore = task.descriptor, task.sample, task.descriptor.ignore_label
    maps = {t: region_maps.load(p) for t, p in task.maps.items()}
    answers = task.answers
    propagated = dict(task.propagated)
    new = None
    if task.propagate is not None:
        t, eps, hops = task.propagate
        if t in answers:
            ids, cls = propagation.propagate(maps[t], task.probs, *answers[t], eps=eps, hops=hops,
                                             ignore_label=ignore)
            new = (ids.tolist(), cls.tolist())
            if len(ids):
                propagated[t] = (ids, cls)
    confident = None
    if task.thresholds is not None:
        confident = self_training.confident_labels(task.probs, task.thresholds, ignore)
    res = L.training_labels(maps, answers, task.probs if task.sieve else None, curve_points=task.curve_points,
                            min_size_px=task.min_size_px, ignore_label=ignore,
                            propagated=propagated, confident=confident)
    painted, labels = res.painted, res.labels
    gt = descriptor.ground_truth(sample)
    if gt is not None and gt.shape != painted.shape:
        raise BadInput(f"label of '{sample.name}' is {gt.shape} but its region maps are {painted.shape}")
    sieved = (painted != ignore) & (labels == ignore)
    counts = {}

    def count(key, px):
        counts[key] = int((px != ignore).sum())
        return None if gt is None else int(metrics.label_errors(px, gt, ignore)[0])

    for key, px in (("before", painted), ("after", labels), ("sieved", np.where(sieved, painted, ignore))):
        counts[f"wrong_{key}"] = count(f"labelled_{key}", px)
    for key, code in (("propagated", L.SOURCE_PROPAGATED), ("self_trained", L.SOURCE_SELF_TRAINED)):
        counts[f"{key}_wrong"] = count(f"{key}_px", np.where(res.source == code, labels, ignore))
    out = LabelFigures(written=bool((labels != ignore).any()), propagation=new, **counts)
    if out.written:
        io_utils.write_png(task.label_png, labels)
        if task.source_png is not None:
            io_utils.write_png(task.source_png, np.where(labels != ignore, res.source, L.SOURCE_NONE)
                               .astype(np.uint8))
    ov = task.overlay
    if ov is not None:
        queried = np.zeros(painted.shape, np.int32)
        if ov.round in answers:
            asked = np.zeros(R.num_slots(maps[ov.round]), bool)
            asked[answers[ov.round][0]] = True
            queried = np.where(asked[maps[ov.round]], maps[ov.round] + 1, 0)
        overlays.answers_figure(ov.path, descriptor.read_image(sample), queried, painted, labels, gt,
                                descriptor.class_names, ignore, title=ov.title, palette=descriptor.palette(),
                                propagated=res.source == L.SOURCE_PROPAGATED,
                                self_trained=res.source == L.SOURCE_SELF_TRAINED)
    return out


def pool_task(task: PoolTask):
    """One image's part of round t's pool: (sizes, uncertainty, dominant class, pixels already
    covered by earlier answers) of its regions in round t's map; with `features`, also each
    region's boundary length and count of merged base superpixels."""
    if task.round == 0:
        regions = region_maps.load(task.map)
        n = R.num_slots(regions)
        size, unc, dom = R.sizes(regions, n), np.zeros(n), np.zeros(n, np.int64)
    else:
        regions, stats = region_maps.load_with_stats(task.map)
        size, unc, dom = stats["size"], stats["uncertainty"], stats["dominant_class"]
        n = len(size)
    if task.answers:
        maps = {r: region_maps.load(p) for r, p in task.maps.items()}
        cov = L.covered(maps, task.answers)
        cov_px = np.bincount(regions.ravel(), weights=cov.ravel(), minlength=n)
    else:
        cov_px = np.zeros(n)
    if not task.features:
        return size, unc, dom, cov_px
    # what a measured cost model needs: boundary length and merged base superpixels
    boundary = R.boundary_lengths(regions, n)
    base = np.ones(n, np.int64) if task.round == 0 else \
        R.base_counts(regions, region_maps.load(task.base), n)
    return size, unc, dom, cov_px, boundary, base


def answers_task(task: AnswersTask) -> tuple[list[int], list[int]]:
    """The simulated annotator on one image: (answers, sizes) of the asked regions."""
    regions = region_maps.load(task.map)
    d = task.descriptor
    label = d.read_label(task.sample)
    # the pixels earlier rounds' answers label are not this click's
    labelled = L.labelled_by(task.earlier, lambda r: region_maps.load(task.maps[r]), d.ignore_label)
    unlabelled = None if labelled is None else ~labelled
    answers, sizes = oracle.oracle_answers(regions, label, np.asarray(task.ids), unlabelled)
    return answers.tolist(), sizes.tolist()
