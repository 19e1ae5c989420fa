"""Training and inference throughput of DeepLabv3+ (images/s) and the input pipeline's share
of a training step.

For each configuration: training steps on random batches already in memory (model only),
training steps fed by the real tf.data pipeline over synthetic TFRecords (model + input), and
inference (forward pass, softmax). The input share is 1 - (model-only time / fed time).

  python scripts/benchmark_model.py                        # CPU defaults
  python scripts/benchmark_model.py --configs xception_65:769:4 --mixed_precision   # a GPU
  python scripts/benchmark_model.py --configs xception_light:129:8 --deterministic  # its cost
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["xception_65:513:1", "xception_light:129:8"],
                   help="variant:crop:batch")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="steps run before timing (tracing)")
    p.add_argument("--mixed_precision", action="store_true", help="float16 compute (a GPU)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels and input order, as the AL drivers train by default")
    p.add_argument("--breakdown", action="store_true",
                   help="also split a step's time into forward, backward, optimizer and input")
    p.add_argument("--num_classes", type=int, default=19, help="the model's classes")
    args = p.parse_args(argv)
    import keras
    import tensorflow as tf

    from deeplab.datasets import build_data, data_generator, get_dataset, synthetic
    from deeplab.model import ModelOptions, build_model
    from deeplab.training.trainer import masked_cross_entropy_sum

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if args.deterministic:
        from deeplab.training.trainer import enable_determinism

        enable_determinism()
    gpus = tf.config.list_logical_devices("GPU")
    print(f"device: {'GPU x%d' % len(gpus) if gpus else 'CPU (%d cores)' % os.cpu_count()}, "
          f"mixed precision: {args.mixed_precision}, deterministic: {args.deterministic}")
    print(f"{'variant':16s} {'crop':>5s} {'batch':>5s} {'train img/s':>12s} {'fed img/s':>10s} "
          f"{'input share':>11s} {'infer img/s':>12s}")
    for cfg in args.configs:
        variant, crop, batch = cfg.split(":")
        crop, batch = int(crop), int(batch)
        model = build_model(ModelOptions(num_classes=args.num_classes, model_variant=variant))
        opt = keras.optimizers.SGD(0.001, momentum=0.9)
        opt.build(model.trainable_variables)

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                s, n = masked_cross_entropy_sum(y, model(x, training=True))
                loss = s / tf.maximum(n, 1.0)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        @tf.function
        def infer(x):
            return tf.nn.softmax(tf.cast(model(x, training=False), tf.float32))

        rng = np.random.default_rng(0)
        x = tf.constant(rng.uniform(0, 255, (batch, crop, crop, 3)).astype(np.float32))
        y = tf.constant(rng.integers(0, args.num_classes, (batch, crop, crop)).astype(np.int32))

        def timed(fn, n):
            for _ in range(args.warmup):
                fn()
            t = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - t) / n

        t_model = timed(lambda: float(step(x, y)), args.steps)
        t_infer = timed(lambda: infer(x).numpy(), args.steps)
        with tempfile.TemporaryDirectory() as tmp:
            h, w = max(crop, 128), max(2 * crop, 256)
            root = synthetic.generate(tmp, num_train=max(8, batch * 2), num_val=1, height=h, width=w)
            ds = get_dataset("synthetic")
            build_data.build_split(ds, ds.list_split(root, "train"), f"{tmp}/tfr", "train", 2, progress=False)
            it = iter(data_generator.build_dataset(f"{tmp}/tfr", "train", batch_size=batch,
                                                   is_training=True, crop_size=(crop, crop),
                                                   deterministic=args.deterministic))
            def fed():  # the generated scenes hold 19 classes: others than --num_classes ignored
                images, labels = next(it)
                return float(step(images, tf.where(labels < args.num_classes, labels, 255)))

            t_fed = timed(fed, args.steps)
        share = max(0.0, 1 - t_model / t_fed)
        print(f"{variant:16s} {crop:5d} {batch:5d} {batch / t_model:12.2f} {batch / t_fed:10.2f} "
              f"{100 * share:10.1f}% {batch / t_infer:12.2f}")
        if args.breakdown:
            variables = model.trainable_variables

            @tf.function
            def forward(x, y):
                s, n = masked_cross_entropy_sum(y, model(x, training=True))
                return s / tf.maximum(n, 1.0)

            @tf.function
            def gradients(x, y):
                with tf.GradientTape() as tape:
                    s, n = masked_cross_entropy_sum(y, model(x, training=True))
                    loss = s / tf.maximum(n, 1.0)
                return tape.gradient(loss, variables)

            t_fwd = timed(lambda: float(forward(x, y)), args.steps)
            t_grad = timed(lambda: [g.numpy() for g in gradients(x, y)][:0], args.steps)
            parts = {"input": t_fed - t_model, "forward": t_fwd, "backward": t_grad - t_fwd,
                     "optimizer": t_model - t_grad}
            print("  per step: " + ", ".join(
                f"{k} {1000 * v:.0f} ms ({100 * v / t_fed:.0f} %)" for k, v in parts.items())
                  + f"; total {1000 * t_fed:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
