"""Streaming inference for the AL stages: per-image softmax probabilities at the label's size.

Images are resized by `inference_scale` (the paper: 0.5), run through the model in batches of
equal-sized images, and the probabilities are resized back (bilinear, align_corners=True), one
image at a time, so a whole split is never held in memory. With several GPUs, one replica of the
model per GPU: consecutive batches go to the replicas in turn and run at the same time; results
come back in input order.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from deeplab.errors import BadInput


class Predictor:
    """Wraps a Keras DeepLab model for probability inference.

    Args:
      model: a DeepLabv3+ Keras model (float images in [0, 255] -> logits).
      inference_scale: image scale for the forward pass (1.0 = full size).
      batch_size: images per forward pass (consecutive images of equal size are batched).
    """

    def __init__(self, model, inference_scale: float = 1.0, batch_size: int = 4, devices=None):
        import tensorflow as tf

        if not 0 < inference_scale <= 4:
            raise BadInput(f"inference_scale must be in (0, 4], got {inference_scale}")
        self.model = model
        self.scale = float(inference_scale)
        self.batch_size = max(1, int(batch_size))
        if devices is None:  # every GPU, one replica each; one replica wherever TF puts it
            gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
            devices = gpus if len(gpus) > 1 else [None]
        self.devices = list(devices)
        replicas = [self._replica(model if i == 0 else None, d) for i, d in enumerate(self.devices)]
        self._fn = replicas[0][0]  # the traced function (export_model serves it)
        self._fns = [run for _, run in replicas]

    def _replica(self, model, device):
        """(traced probability function, numpy runner) on `device`, with its own copy of the
        weights."""
        import contextlib

        import keras
        import tensorflow as tf

        with tf.device(device) if device else contextlib.nullcontext():
            if model is None:
                model = keras.models.clone_model(self.model)
                model.set_weights(self.model.get_weights())

            @tf.function(reduce_retracing=True, autograph=False)
            def _probs(images, out_size):
                x = tf.cast(images, tf.float32)
                if self.scale != 1.0:
                    hw = tf.cast(tf.shape(x)[1:3], tf.float32) * self.scale
                    size = tf.maximum(tf.cast(tf.round(hw), tf.int32), 1)
                    x = tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True)
                logits = tf.cast(model(x, training=False), tf.float32)
                logits = tf.raw_ops.ResizeBilinear(images=logits, size=out_size, align_corners=True)
                return tf.nn.softmax(logits, axis=-1)

        def run(images, out_size):
            with tf.device(device) if device else contextlib.nullcontext():
                return _probs(images, out_size).numpy()

        return _probs, run

    @classmethod
    def from_train_dir(cls, logdir, inference_scale: float = 1.0, batch_size: int = 4):
        from deeplab.training.trainer import load_trained

        model, _ = load_trained(logdir)
        return cls(model, inference_scale, batch_size)

    def probs(self, images: np.ndarray) -> np.ndarray:
        """float32 [B, H, W, C] for uint8 [B, H, W, 3] (or one [H, W, 3] image -> [H, W, C])."""
        images = np.asarray(images)
        single = images.ndim == 3
        if single:
            images = images[None]
        out = self._fns[0](images, np.array(images.shape[1:3], np.int32))
        return out[0] if single else out

    def _batches(self, items):
        names, images = [], []
        for name, image in items:
            if images and (image.shape != images[0].shape or len(images) >= self.batch_size):
                yield names, np.stack(images)
                names, images = [], []
            names.append(name)
            images.append(image)
        if images:
            yield names, np.stack(images)

    def stream(self, items: Iterable[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
        """Yields (name, probs float32 [H, W, C]) for (name, uint8 image) pairs, in order."""
        if len(self._fns) == 1:
            for names, batch in self._batches(items):
                yield from zip(names, self.probs(batch))
            return
        import collections
        from concurrent.futures import ThreadPoolExecutor

        # Batch k runs on replica k mod R; at most one batch per replica in flight.
        with ThreadPoolExecutor(len(self._fns)) as pool:
            pending = collections.deque()
            for k, (names, batch) in enumerate(self._batches(items)):
                if len(pending) == len(self._fns):
                    done_names, future = pending.popleft()
                    yield from zip(done_names, future.result())
                fn = self._fns[k % len(self._fns)]
                pending.append((names, pool.submit(fn, batch, np.array(batch.shape[1:3], np.int32))))
            while pending:
                done_names, future = pending.popleft()
                yield from zip(done_names, future.result())
