"""The cache of derived data: base and oracle superpixel maps and val TFRecords, computed from
a data root and settings, shared by every job that uses the same data and settings, and never
written into the data root (often a shared, read-only mount).

Layout: `{cache_root}/{dataset}-{digest of the data root's absolute path}[-x{IMAGE_SCALE}]/`
  source.json                          which data root (and scale) this folder derives from
  scaled/images/, scaled/labels/       at IMAGE_SCALE != 1: the resized images and train-id
                                       labels, mirroring their paths below the data root
  superpixels/{method}_{n|s}{count}/{split}/{name}.npz
  superpixels/oracle/{split}/{name}.npz
  tfrecord/val-*-of-*.tfrecord, val.meta.json

A changed setting (method, count) is a different folder, so a stale map is never reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from deeplab import io_utils


def superpixel_tag(method: str, num_superpixels: int | None = 0, superpixel_size_px: float = 256.0) -> str:
    """The folder name of base maps made with these settings (`seeds_n8192`, `slic_s256`): the one
    place the superpixel cache key is computed."""
    if num_superpixels:
        return f"{method}_n{int(num_superpixels)}"
    return f"{method}_s{superpixel_size_px:g}"


class DataCache:
    """Derived data of one data root under `cache_root`."""

    def __init__(self, cache_root: Path | str, dataset: str, data_root: Path | str,
                 image_scale: float = 1.0):
        data_root = Path(data_root).resolve()
        digest = hashlib.sha1(str(data_root).encode()).hexdigest()[:10]
        scale = "" if image_scale == 1 else f"-x{image_scale:g}"
        self.root = Path(cache_root) / f"{dataset}-{digest}{scale}"
        self.dataset, self.data_root, self.image_scale = dataset, data_root, image_scale
        self._marked = False

    def _mark_source(self) -> None:
        if self._marked:
            return
        source = self.root / "source.json"
        if not source.is_file():
            io_utils.write_json(source, {"dataset": self.dataset, "data_root": str(self.data_root),
                                         "image_scale": self.image_scale})
        self._marked = True

    def base_dir(self, method: str, num_superpixels: int | None = 0,
                 superpixel_size_px: float = 256.0, split: str = "train") -> Path:
        self._mark_source()
        return self.root / "superpixels" / superpixel_tag(method, num_superpixels, superpixel_size_px) / split

    def oracle_dir(self, split: str = "train") -> Path:
        self._mark_source()
        return self.root / "superpixels" / "oracle" / split

    @property
    def scaled_dir(self) -> Path:
        """The resized images and labels of IMAGE_SCALE != 1 (deeplab.datasets.scaled)."""
        self._mark_source()
        return self.root / "scaled"

    @property
    def tfrecord_dir(self) -> Path:
        self._mark_source()
        return self.root / "tfrecord"
