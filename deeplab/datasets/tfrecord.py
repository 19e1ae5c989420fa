"""DeepLab's TFRecord Example schema, defined once, with a sharded, checked, atomic writer.

Records written here read in the original DeepLab scripts and the other way round:
`image/encoded`, `image/filename`, `image/format`, `image/height`, `image/width`,
`image/channels`, `image/segmentation/class/encoded`, `image/segmentation/class/format`.
Shards are named `{split}-%05d-of-%05d.tfrecord`. Beside them, `{split}.meta.json` (written
last, removed first when a split is rebuilt) holds the example count and the digest of the image
names in order, so that a partial build is never taken for the split (`check_meta`). Records
written by DeepLab's own scripts have no meta file and still read everywhere but in a job's
evaluation, which needs to know the records are the whole val list.
"""

from __future__ import annotations

import glob
import hashlib
import io
import itertools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
from PIL import Image

from deeplab import io_utils
from deeplab.errors import BadInput, MissingFile, Unavailable

if TYPE_CHECKING:  # TensorFlow is imported by the functions that use it: the rest (shard names,
    # the completeness check) runs without it
    import tensorflow as tf

IMAGE_ENCODED = "image/encoded"
IMAGE_FILENAME = "image/filename"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
LABEL_ENCODED = "image/segmentation/class/encoded"
LABEL_FORMAT = "image/segmentation/class/format"

def features() -> dict:
    """The parsing spec of an Example (DeepLab's fields)."""
    import tensorflow as tf

    return {
        IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
        IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
        IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
        IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
        IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
        IMAGE_CHANNELS: tf.io.FixedLenFeature((), tf.int64, default_value=3),
        LABEL_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
        LABEL_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="png"),
    }


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_pattern(tfrecord_dir: Path | str, split: str) -> str:
    return os.path.join(str(tfrecord_dir), f"{split}-*-of-*.tfrecord")


def shard_ranges(num_examples: int, num_shards: int) -> list[tuple[int, int]]:
    """[start, stop) of each shard: example i goes to shard i * num_shards // num_examples."""
    num_shards = max(1, min(int(num_shards), num_examples))
    return [(k * num_examples // num_shards, (k + 1) * num_examples // num_shards)
            for k in range(num_shards)]


def shard_layout(output_dir: Path | str, split: str, num_examples: int,
                 num_shards: int) -> list[tuple[Path, int, int]]:
    """(shard path, start, stop) of every shard of a split about to be written."""
    ranges = shard_ranges(num_examples, num_shards)
    return [(Path(output_dir) / shard_name(split, i, len(ranges)), a, b) for i, (a, b) in enumerate(ranges)]


def names_digest(names: list[str]) -> str:
    return hashlib.sha1("\n".join(names).encode("utf-8")).hexdigest()


def meta_path(tfrecord_dir: Path | str, split: str) -> Path:
    return Path(tfrecord_dir) / f"{split}.meta.json"


def read_meta(tfrecord_dir: Path | str, split: str) -> dict | None:
    p = meta_path(tfrecord_dir, split)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None


def _file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_meta(tfrecord_dir: Path | str, split: str, names: list[str], num_shards: int) -> None:
    """The split's record of completeness, with each shard's SHA-256 (so that a shard damaged
    later, truncated or with a flipped byte, is found before it is read)."""
    files = {os.path.basename(f): _file_sha256(f)
             for f in sorted(glob.glob(shard_pattern(tfrecord_dir, split)))}
    io_utils.write_json(meta_path(tfrecord_dir, split),
                        {"split": split, "count": len(names), "digest": names_digest(names),
                         "shards": num_shards, "sha256": files})


def damaged_shards(tfrecord_dir: Path | str, split: str) -> list[str]:
    """The shards whose bytes differ from what was written (meta files of older builds carry
    no digests: none is reported for them)."""
    meta = read_meta(tfrecord_dir, split) or {}
    digests = meta.get("sha256")
    if not isinstance(digests, dict):
        return []
    out = []
    for name, digest in sorted(digests.items()):
        path = Path(tfrecord_dir) / name
        if not path.is_file() or _file_sha256(path) != digest:
            out.append(str(path))
    return out


def meta_matches(tfrecord_dir: Path | str, split: str, names: list[str], verify: bool = False) -> bool:
    """The split's records are complete and hold exactly `names` (and, with `verify`, every
    shard is byte for byte as written)."""
    meta = read_meta(tfrecord_dir, split)
    return (meta is not None and meta.get("count") == len(names)
            and meta.get("digest") == names_digest(names)
            and len(glob.glob(shard_pattern(tfrecord_dir, split))) == meta.get("shards")
            and not (verify and damaged_shards(tfrecord_dir, split)))


def check_meta(tfrecord_dir: Path | str, split: str, names: list[str], fix: str) -> None:
    """Raises ValueError unless the split's records are complete, hold exactly `names` and are
    as written."""
    if meta_matches(tfrecord_dir, split, names):
        damaged = damaged_shards(tfrecord_dir, split)
        if not damaged:
            return
        raise BadInput(f"the '{split}' TFRecord {damaged[0]} is damaged (its bytes differ from "
                       f"what was written{f', and {len(damaged) - 1} more' if len(damaged) > 1 else ''}): "
                       f"rebuild them: {fix}")
    meta = read_meta(tfrecord_dir, split)
    if meta is None:
        why = "carry no count (a build that stopped part-way, or records from elsewhere)"
    else:
        why = (f"hold {meta.get('count')} images in {meta.get('shards')} shards, digest "
               f"{str(meta.get('digest'))[:10]}, but the list has {len(names)} images, digest "
               f"{names_digest(names)[:10]}")
    raise BadInput(f"the '{split}' TFRecords in {tfrecord_dir} {why}: every figure would cover "
                   f"another set of images. Rebuild them: {fix}")


def list_shards(tfrecord_dir: Path | str, split: str) -> list[str]:
    """The shard files of `split`, sorted; raises FileNotFoundError if there are none."""
    files = sorted(glob.glob(shard_pattern(tfrecord_dir, split)))
    if not files:
        raise MissingFile(
            f"no TFRecords for split '{split}' in {tfrecord_dir} "
            f"(expected {shard_name(split, 0, 1)}, ...): build them with "
            "`python scripts/build_tfrecords.py`"
        )
    return files


def _bytes(v: bytes) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _int(v: int) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def _image_size(encoded: bytes, what: str, name: str) -> tuple[int, int, int, str]:
    try:
        with Image.open(io.BytesIO(encoded)) as im:
            channels = len(im.getbands())
            return im.height, im.width, channels, (im.format or "").lower()
    except OSError as e:
        raise BadInput(f"{what} of '{name}' cannot be decoded: {e}") from e


def make_example(name: str, image: np.ndarray | bytes, label: np.ndarray | bytes | None) -> tf.train.Example:
    """Builds one Example, checking shapes.

    Args:
      name: the image name stored as `image/filename`.
      image: uint8 [H, W, 3] RGB array, or already-encoded PNG/JPEG bytes (stored as they are).
      label: uint8 [H, W] class ids (255 = unlabelled) or encoded PNG bytes; None for images
        without labels.

    Raises:
      ValueError: wrong dtype or rank, or image and label sizes disagree.
    """
    import tensorflow as tf

    if isinstance(image, (bytes, bytearray)):
        image_bytes = bytes(image)
        h, w, c, fmt = _image_size(image_bytes, "image", name)
        fmt = "jpeg" if fmt in ("jpeg", "jpg") else fmt
    else:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BadInput(
                f"image of '{name}' must be uint8 [H, W, 3], got {image.dtype} {image.shape}"
            )
        image_bytes = io_utils.encode_png(image)
        (h, w, c), fmt = image.shape, "png"
    if c != 3:
        raise BadInput(f"image of '{name}' has {c} channels; expected 3 (RGB)")
    feature = {
        IMAGE_ENCODED: _bytes(image_bytes),
        IMAGE_FILENAME: _bytes(name.encode("utf-8")),
        IMAGE_FORMAT: _bytes(fmt.encode()),
        IMAGE_HEIGHT: _int(h),
        IMAGE_WIDTH: _int(w),
        IMAGE_CHANNELS: _int(3),
    }
    if label is not None:
        if isinstance(label, (bytes, bytearray)):
            label_bytes = bytes(label)
            lh, lw, lc, _ = _image_size(label_bytes, "label", name)
        else:
            label = np.asarray(label)
            if label.dtype != np.uint8 or label.ndim != 2:
                raise BadInput(f"label of '{name}' must be uint8 [H, W], got {label.dtype} {label.shape}")
            label_bytes = io_utils.encode_png(label)
            (lh, lw), lc = label.shape, 1
        if lc != 1:
            raise BadInput(f"label of '{name}' has {lc} channels; expected a single-channel PNG")
        if (lh, lw) != (h, w):
            raise BadInput(f"'{name}': image is {h}x{w} but label is {lh}x{lw}; they must match")
        feature[LABEL_ENCODED] = _bytes(label_bytes)
        feature[LABEL_FORMAT] = _bytes(b"png")
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_shard(path: Path | str, examples: Iterable[tf.train.Example], expected: int) -> int:
    """Writes one shard atomically; raises unless it holds exactly `expected` examples."""
    import tensorflow as tf

    written = 0
    with io_utils.atomic_path(path) as tmp:
        try:
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for ex in examples:
                    writer.write(ex.SerializeToString())
                    written += 1
        except tf.errors.OpError as e:  # a full disk: ResourceExhaustedError, without the path
            raise Unavailable(0, f"cannot write TFRecord shard {path} ({e.message}): free space and "
                             "run again (the split is built again)") from None
        if written != expected:
            raise BadInput(f"shard {path}: expected {expected} examples, got {written}")
    return written


def begin_split(output_dir: Path | str, split: str) -> None:
    """Before (re)writing a split: its meta file goes first, so a build that stops part-way is
    never taken for a complete one."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    meta_path(output_dir, split).unlink(missing_ok=True)


def finish_split(output_dir: Path | str, split: str, paths: list[Path], names: list[str] | None) -> None:
    """After every shard is in place: shards of an older shard count go, then the meta file."""
    keep = {str(p) for p in paths}
    for old in glob.glob(shard_pattern(output_dir, split)):
        if old not in keep:
            os.unlink(old)
    if names is not None:
        write_meta(output_dir, split, names, len(paths))


def write_sharded(examples: Iterable[tf.train.Example], num_examples: int, output_dir: Path | str,
                  split: str, num_shards: int, names: list[str] | None = None) -> list[Path]:
    """Writes `num_examples` examples into `num_shards` shards, in order, atomically.

    Example i goes to shard i * num_shards // num_examples (contiguous, balanced). Existing
    shards of the split with a different shard count are removed after the new ones are in
    place, so a reader never sees a mix; with `names` (the examples' image names in order), the
    meta file is written last.
    """

    if num_examples < 1:
        raise BadInput(f"split '{split}' has no examples to write to {output_dir}")
    begin_split(output_dir, split)
    layout = shard_layout(output_dir, split, num_examples, num_shards)
    it = iter(examples)
    for path, a, b in layout:
        write_shard(path, itertools.islice(it, b - a), b - a)
    paths = [path for path, _, _ in layout]
    finish_split(output_dir, split, paths, names)
    return paths


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Decodes one serialized Example into `image` uint8 [H, W, 3], `label` uint8 [H, W, 1]
    (all 255 when the record has no label), `name` string, `height`, `width`."""
    import tensorflow as tf

    f = tf.io.parse_single_example(serialized, features())
    image = tf.io.decode_image(f[IMAGE_ENCODED], channels=3, expand_animations=False)
    has_label = tf.strings.length(f[LABEL_ENCODED]) > 0
    label = tf.cond(
        has_label,
        lambda: tf.io.decode_png(f[LABEL_ENCODED], channels=1),
        lambda: tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, tf.uint8)),
    )
    tf.debugging.assert_equal(
        tf.shape(image)[:2], tf.shape(label)[:2],
        message="image and label sizes disagree in a TFRecord example",
    )
    return {"image": image, "label": label, "name": f[IMAGE_FILENAME],
            "height": f[IMAGE_HEIGHT], "width": f[IMAGE_WIDTH]}


def read_examples(tfrecord_dir: Path | str, split: str) -> Iterable[dict[str, np.ndarray]]:
    """Yields decoded examples of `split` as numpy (for tools and tests, in shard order)."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(list_shards(tfrecord_dir, split)).map(parse_example)
    for ex in ds.as_numpy_iterator():
        yield {"image": ex["image"], "label": ex["label"][..., 0], "name": ex["name"].decode()}
