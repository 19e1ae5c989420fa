"""A data set seen at another image scale (IMAGE_SCALE): every listed image and its label are
resized once into a folder of the cache, and every stage then reads those files.

Images are resized with Pillow's bilinear filter (which widens its support when it shrinks, so a
downscale is antialiased), labels by nearest neighbour (no class is invented at a boundary), to
`round(H * scale) x round(W * scale)`. Labels are stored as train ids (0..C-1, 255 ignore), so a
data set's own label coding (CamVid's void 11, Cityscapes' label ids) is converted once, here.

Evaluation reads the val split through the same view, so every figure of a job at a scale other
than 1 is measured at that scale, on resized ground truth.

The cached files mirror the source files' paths below the data root, so one source file is one
cached file whatever split lists it (the train/val overlap check still sees it). A cached file
older than its source is made again; each is written to a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.datasets.descriptors import DatasetDescriptor, Sample
from deeplab.errors import BadInput


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of an image of `height x width` at `scale` (at least 1 x 1)."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """uint8 [h, w, 3] of a uint8 [H, W, 3] RGB image, bilinear (antialiased when shrinking)."""
    from PIL import Image

    h, w = scaled_size(*image.shape[:2], scale)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def resize_label(label: np.ndarray, scale: float) -> np.ndarray:
    """uint8 [h, w] of a uint8 [H, W] label map, nearest neighbour (pixel centres)."""
    h, w = scaled_size(*label.shape, scale)
    rows = np.minimum(((np.arange(h) + 0.5) * label.shape[0] / h).astype(np.int64), label.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * label.shape[1] / w).astype(np.int64), label.shape[1] - 1)
    return np.ascontiguousarray(label[rows[:, None], cols[None, :]])


def _fresh(cached: Path, source: Path) -> bool:
    try:
        return cached.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except FileNotFoundError:
        return False


class ScaledDataset:
    """`base` seen at `scale`, its resized files under `cache_dir`. Everything but the split
    lists (whose samples point at the resized files) is the base descriptor's."""

    def __init__(self, base: DatasetDescriptor, scale: float, cache_dir: Path | str):
        if not (0 < scale <= 4) or not np.isfinite(scale):
            raise BadInput(f"IMAGE_SCALE must be in (0, 4], got {scale}")
        self.base, self.scale, self.cache_dir = base, float(scale), Path(cache_dir)

    def __getattr__(self, name):
        if name == "base":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _cached(self, root: Path, source: Path, kind: str) -> Path:
        try:
            rel = source.resolve().relative_to(root.resolve())
        except ValueError:  # outside the data root: a digest of its path
            rel = Path(hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:16]) / source.name
        return self.cache_dir / kind / rel.with_suffix(".png")

    def scaled_sample(self, root: Path | str, sample: Sample) -> Sample:
        """The sample's resized copy (made when missing or older than its source)."""
        root = Path(root)
        image = self._cached(root, sample.image_path, "images")
        if not _fresh(image, sample.image_path):
            io_utils.write_png(image, resize_image(self.base.read_image(sample), self.scale))
        if sample.label_path is None:
            return dataclasses.replace(sample, image_path=image)
        label = self._cached(root, sample.label_path, "labels")
        if not _fresh(label, sample.label_path):
            io_utils.write_png(label, resize_label(self.base.read_label(sample), self.scale))
        return Sample(sample.name, image, label, "train_ids")

    def list_split(self, root: Path | str, split: str) -> list[Sample]:
        """The base's samples of `split`, resized (the first call of a split writes them)."""
        return [self.scaled_sample(root, s) for s in self.base.list_split(root, split)]

    def __repr__(self) -> str:
        return f"ScaledDataset({self.base.name}, scale={self.scale:g}, cache={os.fspath(self.cache_dir)})"
