"""Streaming inference for the AL stages: per-image softmax probabilities at the label's size.

Images are resized by `inference_scale` (the paper: 0.5), run through the model in batches of
equal-sized images, and the probabilities are resized back (bilinear, align_corners=True), one
image at a time, so a whole split is never held in memory.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


class Predictor:
    """Wraps a Keras DeepLab model for probability inference.

    Args:
      model: a DeepLabv3+ Keras model (float images in [0, 255] -> logits).
      inference_scale: image scale for the forward pass (1.0 = full size).
      batch_size: images per forward pass (consecutive images of equal size are batched).
    """

    def __init__(self, model, inference_scale: float = 1.0, batch_size: int = 4):
        import tensorflow as tf

        if not 0 < inference_scale <= 4:
            raise ValueError(f"inference_scale must be in (0, 4], got {inference_scale}")
        self.model = model
        self.scale = float(inference_scale)
        self.batch_size = max(1, int(batch_size))

        @tf.function(reduce_retracing=True)
        def _probs(images, out_size):
            x = tf.cast(images, tf.float32)
            if self.scale != 1.0:
                hw = tf.cast(tf.shape(x)[1:3], tf.float32) * self.scale
                size = tf.maximum(tf.cast(tf.round(hw), tf.int32), 1)
                x = tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True)
            logits = tf.cast(self.model(x, training=False), tf.float32)
            logits = tf.raw_ops.ResizeBilinear(images=logits, size=out_size, align_corners=True)
            return tf.nn.softmax(logits, axis=-1)

        self._fn = _probs

    @classmethod
    def from_train_dir(cls, logdir, inference_scale: float = 1.0, batch_size: int = 4):
        from deeplab.train import load_trained

        model, _ = load_trained(logdir)
        return cls(model, inference_scale, batch_size)

    def probs(self, images: np.ndarray) -> np.ndarray:
        """float32 [B, H, W, C] for uint8 [B, H, W, 3] (or one [H, W, 3] image -> [H, W, C])."""
        images = np.asarray(images)
        single = images.ndim == 3
        if single:
            images = images[None]
        out = self._fn(images, np.array(images.shape[1:3], np.int32)).numpy()
        return out[0] if single else out

    def stream(self, items: Iterable[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
        """Yields (name, probs float32 [H, W, C]) for (name, uint8 image) pairs, in order."""
        batch_names, batch_images = [], []

        def flush():
            probs = self.probs(np.stack(batch_images))
            for n, p in zip(batch_names, probs):
                yield n, p
            batch_names.clear()
            batch_images.clear()

        for name, image in items:
            if batch_images and (image.shape != batch_images[0].shape or len(batch_images) >= self.batch_size):
                yield from flush()
            batch_names.append(name)
            batch_images.append(image)
        if batch_images:
            yield from flush()
