"""Builds TFRecords of a split: full ground truth, or the partial label maps of an AL round.

The source image's encoded bytes go into the records unchanged (as DeepLab's build_data does):
no image is decoded and encoded again. Shards are written in parallel on an executor (one task
per shard), then the split's meta file (count, names digest) is written last.
"""

from __future__ import annotations

import io
from pathlib import Path

from deeplab.datasets.descriptors import (
    DatasetDescriptor,
    Sample,
    check_label_values,
    read_label_png,
)
from deeplab.errors import BadInput


def label_png_path(label_dir: Path | str, name: str) -> Path:
    """Where a round's label PNG for image `name` lives (names may contain `city/`)."""
    return Path(label_dir) / f"{name}.png"


def image_payload(descriptor: DatasetDescriptor, sample: Sample):
    """The image as stored in a record: the file's own bytes when it is an 8-bit RGB PNG
    (lossless: every decoder gives the same pixels), else the RGB array of `read_image` (the
    project's one decoder), encoded once as PNG. JPEGs are stored decoded too: TensorFlow's
    JPEG decoder and Pillow's differ by a few levels per pixel, and training must see the pixels
    the superpixels, the page and inference see."""
    from PIL import Image

    data = sample.image_path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            if (im.format == "PNG" and im.mode == "RGB" and data[24] == 8  # IHDR bit depth
                    and im.info.get("transparency") is None):
                return data
    except OSError as e:
        raise BadInput(f"image {sample.image_path} cannot be decoded ({e}); replace the file") from e
    return descriptor.read_image(sample)


def example_of(descriptor: DatasetDescriptor, sample: Sample, label_dir: Path | str | None):
    from deeplab.datasets import tfrecord

    if label_dir is None:
        label = descriptor.read_label(sample)
    else:
        path = label_png_path(label_dir, sample.name)
        check_label_values(read_label_png(path), descriptor.num_classes, descriptor.ignore_label, path)
        label = path.read_bytes()  # checked; stored as written
    try:
        return tfrecord.make_example(sample.name, image_payload(descriptor, sample), label)
    except ValueError as e:  # name the files, not only the image's name
        where = sample.label_path if label_dir is None else label_png_path(label_dir, sample.name)
        raise BadInput(f"{e} (image {sample.image_path}, label {where})") from None


def shard_task(task: dict) -> int:
    """Writes one shard of a split (runs on the executor's workers)."""
    from deeplab.datasets import tfrecord

    examples = (example_of(task["descriptor"], s, task["label_dir"]) for s in task["samples"])
    return tfrecord.write_shard(task["path"], examples, len(task["samples"]))


def build_split(descriptor: DatasetDescriptor, samples: list[Sample], output_dir: Path | str,
                split: str, num_shards: int = 4, label_dir: Path | str | None = None,
                progress: bool = True, executor=None) -> list[Path]:
    """Writes TFRecords for `samples`.

    Args:
      descriptor: the data set (class count, ignore label, reading rules).
      samples: the images to write, in order.
      output_dir: where the shards go.
      split: shard name prefix (`train`, `val`, ...).
      num_shards: number of shards (at most one per image).
      label_dir: None to store the ground truth; otherwise a folder of partial label PNGs
        (`{label_dir}/{name}.png`, uint8, 255 = unlabelled), as the AL rounds write them.
      executor: where the shards are written (`deeplab.parallel`); default: here.
    """
    from deeplab.datasets import tfrecord
    from deeplab.parallel import LocalExecutor

    if not samples:
        raise BadInput(f"split '{split}' is empty: nothing to write to {output_dir}")
    tfrecord.begin_split(output_dir, split)
    layout = tfrecord.shard_layout(output_dir, split, len(samples), num_shards)
    tasks = [{"descriptor": descriptor, "samples": samples[a:b], "path": p, "label_dir": label_dir}
             for p, a, b in layout]
    paths = [p for p, _, _ in layout]
    (executor or LocalExecutor()).map(shard_task, tasks, f"tfrecords {split}", progress, unit="shard")
    tfrecord.finish_split(output_dir, split, paths, [s.name for s in samples])
    return paths
