"""The per-image stages, each a pure function of one image (plus its inputs) that an executor
maps (`deeplab.parallel`): base superpixels, oracle maps, a round's region map with its
statistics, and a round's training labels with sieving. Each writes its one file atomically and
returns its figures; the driver aggregates them. Resume: images whose file exists are skipped
by the callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from deeplab import io_utils
from deeplab.active import adaptive, metrics, oracle, superpixels
from deeplab.active import labels as L
from deeplab.active import regions as R
from deeplab.datasets.descriptors import DatasetDescriptor, Sample
from deeplab.experiment import region_maps
from deeplab.parallel import Executor, LocalExecutor
from deeplab.viz import overlays


def shard_items(items: Sequence, shard: tuple[int, int] | None) -> list:
    if shard is None:
        return list(items)
    i, n = shard
    return list(items)[i::n]


# ---------------------------------------------------------------------------- base and oracle maps
def base_task(task: dict) -> int | None:
    """Base superpixels of one image -> its map file; returns the region count. With `verify`,
    a map already there is kept if it reads whole (None) and computed again if it is damaged."""
    if task.get("verify") and region_maps.readable(task["out"]):
        return None
    descriptor, sample = task["descriptor"], task["sample"]
    image = descriptor.read_image(sample)
    h, w = image.shape[:2]
    n = task["n_segments"] or superpixels.n_segments_for(h, w, task["size_px"])
    regions = superpixels.base_superpixels(image, task["method"], n, f"image '{sample.name}'")
    region_maps.save(task["out"], regions)
    if task.get("overlay_dir"):
        io_utils.write_png(Path(task["overlay_dir"]) / f"{sample.name}.png", superpixels.overlay(image, regions))
    return int(regions.max()) + 1


def extract_base(descriptor: DatasetDescriptor, samples: list[Sample], out_dir: Path | str,
                 method: str = "seeds", superpixel_size_px: float = 256.0,
                 n_segments: int | None = None, executor: Executor | None = None,
                 shard: tuple[int, int] | None = None, overlay_dir: Path | str | None = None,
                 progress: bool = True) -> dict:
    """Base superpixels for every sample (skipping maps already written). Returns a summary."""
    if method not in superpixels.METHODS:
        raise ValueError(f"unknown superpixel method '{method}'; valid: {', '.join(superpixels.METHODS)}")
    mine = shard_items(samples, shard)
    # Maps already written are read through (on the workers) and rebuilt if damaged.
    tasks = [{"descriptor": descriptor, "sample": s, "out": region_maps.path(out_dir, s.name),
              "method": method, "size_px": superpixel_size_px, "n_segments": n_segments,
              "overlay_dir": overlay_dir, "verify": region_maps.path(out_dir, s.name).is_file()}
             for s in mine]
    counts = (executor or LocalExecutor()).map(base_task, tasks, f"{method} superpixels", progress)
    written = [c for c in counts if c is not None]
    rebuilt = [t["out"] for t, c in zip(tasks, counts) if t["verify"] and c is not None]
    for path in rebuilt:
        print(f"rebuilt the damaged base map {path}")
    out = {"written": len(written), "skipped": len(mine) - len(written),
           "mean_regions": float(np.mean(written)) if written else None}
    if rebuilt:
        out["rebuilt_damaged"] = len(rebuilt)
    return out


def oracle_task(task: dict) -> int:
    regions = superpixels.oracle_superpixels(task["descriptor"].read_label(task["sample"]))
    region_maps.save(task["out"], regions)
    return int(regions.max()) + 1


def extract_oracle(descriptor: DatasetDescriptor, samples: list[Sample], out_dir: Path | str,
                   executor: Executor | None = None, shard: tuple[int, int] | None = None,
                   progress: bool = True) -> dict:
    todo = [{"descriptor": descriptor, "sample": s, "out": region_maps.path(out_dir, s.name)}
            for s in shard_items(samples, shard) if not region_maps.path(out_dir, s.name).is_file()]
    counts = (executor or LocalExecutor()).map(oracle_task, todo, "oracle superpixels", progress)
    return {"written": len(todo), "mean_regions": float(np.mean(counts)) if counts else None}


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
def round_map_task(task: dict) -> dict:
    """A round's region map of one image from the previous round's probabilities (adaptive:
    the merge of the base map, section 3; base: the base map; oracle: ground-truth components)
    with its statistics (section 4) -> `task["out"]`. Returns region counts and ASA."""
    descriptor, sample, probs, mode = task["descriptor"], task["sample"], task["probs"], task["mode"]
    name = sample.name
    base = region_maps.load(task["base"])
    if base.shape != probs.shape[:2]:
        raise ValueError(f"base map of '{name}' is {base.shape} but the image is {probs.shape[:2]}: "
                         f"delete {task['base']} and rerun scripts/extract_superpixels.py")
    label = descriptor.ground_truth(sample)
    merge_probs = task.get("merge_probs")
    if mode == "adaptive" and merge_probs is not None:  # merged by another model (a bound)
        regions = adaptive.adaptive_superpixels(merge_probs, base, task["eps"]).regions
        stats = R.region_statistics(probs, regions)
    elif mode == "adaptive":
        res = adaptive.adaptive_superpixels(probs, base, task["eps"])
        regions, stats = res.regions, res.stats
    elif mode == "base":
        regions, stats = base, R.region_statistics(probs, base)
    elif mode == "oracle":
        stored = task.get("oracle")
        regions = region_maps.load(stored) if stored is not None and Path(stored).is_file() \
            else superpixels.oracle_superpixels(label)
        stats = R.region_statistics(probs, regions)
    else:
        raise ValueError(f"unknown region mode '{mode}'; valid: adaptive, base, oracle")
    region_maps.save(task["out"], regions, stats)
    if task.get("overlay"):
        overlays.regions_figure(task["overlay"], descriptor.read_image(sample), base, regions, mode,
                                title=task.get("title", name))
    return _map_figures(descriptor, label, base, regions, stats.size)


def _map_figures(descriptor, label, base, regions, sizes) -> dict:
    # Without ground truth (a folder of unlabelled images) the ASA is not available.
    asa = [None, None] if label is None else \
        [metrics.asa(m, label, descriptor.ignore_label) for m in (base, regions)]
    return {"before": int(base.max()) + 1, "after": int((np.asarray(sizes) > 0).sum()),
            "asa_before": asa[0], "asa_after": asa[1]}


def map_figures_task(task: dict) -> dict:
    """round_map_task's figures of a map already written (a resumed regions stage), so the
    stage's summary covers every image whether or not it was interrupted."""
    regions, stats = region_maps.load_with_stats(task["out"])
    return _map_figures(task["descriptor"], task["descriptor"].ground_truth(task["sample"]),
                        region_maps.load(task["base"]), regions, stats["size"])


# ---------------------------------------------------------------------------- round labels
def labels_task(task: dict) -> dict:
    """Training labels of one image for a round: every answer so far painted, sieved with the
    previous round's probabilities when given (`deeplab.active.labels`) -> the label PNG (only
    when a pixel is labelled). Returns label-error counts against the ground truth (None where
    the image has none)."""
    descriptor, sample, ignore = task["descriptor"], task["sample"], task["descriptor"].ignore_label
    maps = {t: region_maps.load(p) for t, p in task["maps"].items()}
    answers = task["answers"]
    painted, labels = L.round_labels(maps, answers, task["probs"], knee=task["knee"],
                                     min_size_px=task["min_size_px"], ignore_label=ignore)
    gt = descriptor.ground_truth(sample)
    if gt is not None and gt.shape != painted.shape:
        raise ValueError(f"label of '{sample.name}' is {gt.shape} but its region maps are {painted.shape}")
    sieved = (painted != ignore) & (labels == ignore)
    out = {"written": bool((labels != ignore).any())}
    for key, px in (("before", painted), ("after", labels), ("sieved", np.where(sieved, painted, ignore))):
        out[f"labelled_{key}"] = int((px != ignore).sum())
        out[f"wrong_{key}"] = None if gt is None else int(metrics.label_errors(px, gt, ignore)[0])
    if out["written"]:
        io_utils.write_png(task["label_png"], labels)
    ov = task.get("overlay")
    if ov:
        t = ov["round"]
        asked = np.zeros(R.num_slots(maps[t]), bool)
        asked[answers[t][0]] = True
        overlays.answers_figure(ov["path"], descriptor.read_image(sample),
                                np.where(asked[maps[t]], maps[t] + 1, 0), painted, labels, gt,
                                descriptor.class_names, ignore, title=ov["title"])
    return out


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
        cov = L.covered(maps, answers)
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


def answers_task(task: dict) -> tuple[list[int], list[int]]:
    """The simulated annotator on one image: (answers, sizes) of the asked regions."""
    regions = region_maps.load(task["map"])
    d = task["descriptor"]
    label = d.read_label(task["sample"])
    # the pixels earlier rounds' answers label are not this click's
    labelled = L.labelled_by(task.get("earlier"), lambda r: region_maps.load(task["maps"][r]),
                                      d.ignore_label)
    unlabelled = None if labelled is None else ~labelled
    answers, sizes = oracle.oracle_answers(regions, label, np.asarray(task["ids"]), unlabelled)
    return answers.tolist(), sizes.tolist()
