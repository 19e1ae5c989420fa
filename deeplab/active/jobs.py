"""Per-image jobs over a split: process pool, `--shard i/n`, resume by skipping finished files.

Each job writes one file per image atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from deeplab.active import metrics, superpixels
from deeplab.datasets.descriptors import DatasetDescriptor, Sample


def shard_items(items: Sequence, shard: tuple[int, int] | None) -> list:
    if shard is None:
        return list(items)
    i, n = shard
    return list(items)[i::n]


def run_pool(fn: Callable, tasks: list, num_workers: int, desc: str, progress: bool = True) -> list:
    """Runs `fn(task)` for every task (in a pool when num_workers > 1); results in task order."""
    from tqdm import tqdm

    if num_workers <= 1 or len(tasks) <= 1:
        return [fn(t) for t in tqdm(tasks, desc=desc, unit="img", disable=not progress)]
    ctx = mp.get_context("spawn")  # no fork after TensorFlow or OpenMP threads exist
    with ctx.Pool(num_workers) as pool:
        return list(tqdm(pool.imap(fn, tasks, chunksize=1), total=len(tasks), desc=desc,
                         unit="img", disable=not progress))


def _base_task(task):
    descriptor, sample, out, method, size_px, n_segments, overlay_dir = task
    image = descriptor.read_image(sample)
    h, w = image.shape[:2]
    n = n_segments or superpixels.n_segments_for(h, w, size_px)
    regions = superpixels.base_superpixels(image, method, n)
    superpixels.save_regions(out, regions)
    if overlay_dir:
        from deeplab import io_utils

        io_utils.write_png(Path(overlay_dir) / f"{sample.name}.png", superpixels.overlay(image, regions))
    return sample.name, int(regions.max()) + 1


def extract_base(descriptor: DatasetDescriptor, samples: list[Sample], out_dir: Path | str,
                 method: str = "seeds", superpixel_size_px: float = 256.0,
                 n_segments: int | None = None, num_workers: int = 1,
                 shard: tuple[int, int] | None = None, overlay_dir: Path | str | None = None,
                 progress: bool = True) -> dict:
    """Base superpixels for every sample (skipping maps already written). Returns a summary."""
    if method not in superpixels.METHODS:
        raise ValueError(f"unknown superpixel method '{method}'; valid: {', '.join(superpixels.METHODS)}")
    todo = []
    for s in shard_items(samples, shard):
        out = superpixels.region_path(out_dir, s.name)
        if not out.is_file():
            todo.append((descriptor, s, out, method, superpixel_size_px, n_segments, overlay_dir))
    counts = [c for _, c in run_pool(_base_task, todo, num_workers, f"{method} superpixels", progress)]
    return {"written": len(todo), "skipped": len(shard_items(samples, shard)) - len(todo),
            "mean_regions": float(np.mean(counts)) if counts else None}


def _oracle_task(task):
    descriptor, sample, out = task
    regions = superpixels.oracle_superpixels(descriptor.read_label(sample))
    superpixels.save_regions(out, regions)
    return int(regions.max()) + 1


def extract_oracle(descriptor: DatasetDescriptor, samples: list[Sample], out_dir: Path | str,
                   num_workers: int = 1, shard: tuple[int, int] | None = None,
                   progress: bool = True) -> dict:
    todo = [(descriptor, s, superpixels.region_path(out_dir, s.name))
            for s in shard_items(samples, shard)
            if not superpixels.region_path(out_dir, s.name).is_file()]
    counts = run_pool(_oracle_task, todo, num_workers, "oracle superpixels", progress)
    return {"written": len(todo), "mean_regions": float(np.mean(counts)) if counts else None}


def region_quality(descriptor: DatasetDescriptor, samples: list[Sample], region_dir: Path | str) -> dict:
    """Mean regions per image, ASA and boundary recall of stored maps against the ground truth."""
    n, a, br = [], [], []
    for s in samples:
        regions = superpixels.load_regions(superpixels.region_path(region_dir, s.name))
        label = descriptor.read_label(s)
        n.append(int(regions.max()) + 1)
        a.append(metrics.asa(regions, label, descriptor.ignore_label))
        br.append(metrics.boundary_recall(regions, label))
    return {"regions_per_image": float(np.mean(n)), "asa": float(np.mean(a)),
            "boundary_recall": float(np.mean(br))}
