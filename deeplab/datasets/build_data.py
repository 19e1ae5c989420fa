"""Builds TFRecords of a split: full ground truth, or the partial label maps of an AL round."""

from __future__ import annotations

from pathlib import Path

from deeplab.datasets import tfrecord
from deeplab.datasets.descriptors import DatasetDescriptor, Sample, read_label_png, check_label_values


def label_png_path(label_dir: Path | str, name: str) -> Path:
    """Where a round's label PNG for image `name` lives (names may contain `city/`)."""
    return Path(label_dir) / f"{name}.png"


def build_split(descriptor: DatasetDescriptor, samples: list[Sample], output_dir: Path | str,
                split: str, num_shards: int = 4, label_dir: Path | str | None = None,
                progress: bool = True) -> list[Path]:
    """Writes TFRecords for `samples`.

    Args:
      descriptor: the data set (class count, ignore label, reading rules).
      samples: the images to write, in order.
      output_dir: where the shards go.
      split: shard name prefix (`train`, `val`, ...).
      num_shards: number of shards (at most one per image).
      label_dir: None to store the ground truth; otherwise a folder of partial label PNGs
        (`{label_dir}/{name}.png`, uint8, 255 = unlabelled), as the AL rounds write them.
    """
    if not samples:
        raise ValueError(f"split '{split}' is empty: nothing to write to {output_dir}")

    def examples():
        it = samples
        if progress:
            from tqdm import tqdm

            it = tqdm(samples, desc=f"tfrecords {split}", unit="img")
        for s in it:
            image = s.image_path.read_bytes() if s.image_path.suffix.lower() in (".jpg", ".jpeg") \
                else descriptor.read_image(s)
            if label_dir is None:
                label = descriptor.read_label(s)
            else:
                path = label_png_path(label_dir, s.name)
                label = read_label_png(path)
                check_label_values(label, descriptor.num_classes, descriptor.ignore_label, path)
            yield tfrecord.make_example(s.name, image, label)

    return tfrecord.write_sharded(examples(), len(samples), output_dir, split, num_shards)
