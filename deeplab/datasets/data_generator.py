"""tf.data input pipeline over DeepLab TFRecords, with DeepLab's augmentation.

Training: random scale from {min, min+step, ..., max}, resize (image bilinear, label nearest,
both `align_corners=True` as in DeepLab), pad bottom/right to the crop size (image with the
mean pixel 127.5, label with the ignore label), random crop, horizontal flip. Random draws are
stateless functions of (seed, example index), so a seeded pipeline gives the same batches
however many threads decode it. Evaluation: no augmentation, full resolution.

Images come out as float32 in [0, 255] (the model scales them to [-1, 1]); labels as int32.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from deeplab.datasets import tfrecord
from deeplab.errors import BadInput

MEAN_PIXEL = 127.5


def _scale_values(min_scale: float, max_scale: float, step: float) -> tf.Tensor:
    if min_scale > max_scale:
        raise BadInput(f"min_scale_factor {min_scale} > max_scale_factor {max_scale}")
    n = int(round((max_scale - min_scale) / step)) + 1 if step > 0 else 0
    return tf.constant([min_scale + i * step for i in range(n)], tf.float32) if n else None


def augment(image: tf.Tensor, label: tf.Tensor, seed: tf.Tensor, crop_size, *,
            min_scale_factor=0.5, max_scale_factor=2.0, scale_factor_step_size=0.25,
            ignore_label=255, flip=True):
    """DeepLab training augmentation of one example.

    Args:
      image: uint8 or float [H, W, 3].
      label: uint8 [H, W, 1].
      seed: int32 [2] stateless seed.
      crop_size: (crop_height, crop_width).

    Returns:
      image float32 [crop_h, crop_w, 3], label int32 [crop_h, crop_w].
    """
    crop_h, crop_w = crop_size
    seeds = tf.random.experimental.stateless_split(seed, 5)
    image = tf.cast(image, tf.float32)
    label = tf.cast(label, tf.int32)
    shape = tf.shape(image)[:2]
    values = _scale_values(min_scale_factor, max_scale_factor, scale_factor_step_size)
    if values is not None:
        idx = tf.random.stateless_uniform([], seeds[0], 0, tf.shape(values)[0], dtype=tf.int32)
        scale = values[idx]
    else:
        scale = tf.random.stateless_uniform([], seeds[0], min_scale_factor, max_scale_factor)
    new_size = tf.cast(tf.cast(shape, tf.float32) * scale, tf.int32)
    image = tf.raw_ops.ResizeBilinear(images=image[None], size=new_size, align_corners=True)[0]
    label = tf.raw_ops.ResizeNearestNeighbor(images=label[None], size=new_size, align_corners=True)[0]
    # Pad bottom/right to at least the crop size: image with the mean, label with ignore.
    target_h = tf.maximum(new_size[0], crop_h)
    target_w = tf.maximum(new_size[1], crop_w)
    pads = [[0, target_h - new_size[0]], [0, target_w - new_size[1]], [0, 0]]
    image = tf.pad(image - MEAN_PIXEL, pads) + MEAN_PIXEL
    label = tf.pad(label - ignore_label, pads) + ignore_label
    # Random crop at the same offset for both.
    oy = tf.random.stateless_uniform([], seeds[1], 0, target_h - crop_h + 1, dtype=tf.int32)
    ox = tf.random.stateless_uniform([], seeds[2], 0, target_w - crop_w + 1, dtype=tf.int32)
    image = image[oy:oy + crop_h, ox:ox + crop_w]
    label = label[oy:oy + crop_h, ox:ox + crop_w]
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image = tf.cond(do_flip, lambda: image[:, ::-1], lambda: image)
        label = tf.cond(do_flip, lambda: label[:, ::-1], lambda: label)
    image = tf.ensure_shape(image, [crop_h, crop_w, 3])
    label = tf.ensure_shape(label[..., 0], [crop_h, crop_w])
    return image, label


def build_dataset(tfrecord_dir: Path | str, split: str, *, batch_size: int, is_training: bool,
                  crop_size=(513, 513), min_scale_factor=0.5, max_scale_factor=2.0,
                  scale_factor_step_size=0.25, ignore_label=255, seed: int = 0,
                  deterministic: bool = False, repeat: bool | None = None,
                  shuffle_buffer: int = 256, num_parallel_calls=tf.data.AUTOTUNE,
                  num_input_pipelines: int = 1, input_pipeline_id: int = 0,
                  skip_examples: int = 0) -> tf.data.Dataset:
    """The input pipeline of one split.

    Training yields `(image float32 [B, ch, cw, 3], label int32 [B, ch, cw])`, repeated,
    shuffled, augmented. Evaluation yields dicts `image` float32 [B, H, W, 3], `label` int32
    [B, H, W], `name` string [B], once, in file order, padded to the largest image of the batch
    (image with 127.5, label with the ignore label).

    With several input pipelines (one per worker under tf.distribute), each reads its own
    subset of the shards when there are at least as many shards as pipelines.

    `skip_examples` (training): leave out the stream's first examples without decoding or
    augmenting them, so a resumed training continues the stream where its checkpoint was: the
    examples that follow are the ones an uninterrupted run would have drawn (shuffles are
    seeded and augmentation is a function of the example's index).
    """
    if batch_size < 1:
        raise BadInput(f"batch_size must be >= 1, got {batch_size}")
    files = tfrecord.list_shards(tfrecord_dir, split)
    if num_input_pipelines > 1 and len(files) >= num_input_pipelines:
        files = files[input_pipeline_id::num_input_pipelines]
    repeat = is_training if repeat is None else repeat
    options = tf.data.Options()
    options.deterministic = deterministic or not is_training
    if is_training:
        ds = tf.data.Dataset.from_tensor_slices(files)
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                           num_parallel_calls=num_parallel_calls, deterministic=options.deterministic)
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.enumerate()
        if skip_examples:
            ds = ds.skip(skip_examples)

        def train_map(index, serialized):
            ex = tfrecord.parse_example(serialized)
            s = tf.stack([tf.cast(seed, tf.int64), index])
            s = tf.cast(s % (2**31 - 1), tf.int32)
            return augment(ex["image"], ex["label"], s, crop_size,
                           min_scale_factor=min_scale_factor, max_scale_factor=max_scale_factor,
                           scale_factor_step_size=scale_factor_step_size, ignore_label=ignore_label)

        ds = ds.map(train_map, num_parallel_calls=num_parallel_calls, deterministic=options.deterministic)
        ds = ds.batch(batch_size, drop_remainder=True)
    else:
        ds = tf.data.TFRecordDataset(files)

        def eval_map(serialized):
            ex = tfrecord.parse_example(serialized)
            return {"image": tf.cast(ex["image"], tf.float32),
                    "label": tf.cast(ex["label"][..., 0], tf.int32), "name": ex["name"]}

        ds = ds.map(eval_map, num_parallel_calls=num_parallel_calls, deterministic=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.padded_batch(batch_size, padding_values={
            "image": MEAN_PIXEL, "label": ignore_label, "name": ""})
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
