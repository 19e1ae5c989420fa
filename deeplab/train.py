"""Trains DeepLabv3+ from TFRecords (DeepLab's train.py, on TensorFlow 2 / Keras 3).

  python -m deeplab.train --train_logdir work_dirs/exp/train \
      --dataset synthetic --tfrecord_dir work_dirs/cache/<data>/tfrecord \
      --model_variant xception_light --training_number_of_steps 200 --train_crop_size 129,129

Poly learning rate (power 0.9), momentum 0.9, weight decay (slim's `wd * sum(w^2) / 2` on
every non-depthwise kernel), per-pixel cross-entropy averaged over labelled pixels (a batch
without labelled pixels contributes 0), logits-bias gradients x2. Runs under tf.distribute:
MultiWorkerMirroredStrategy when TF_CONFIG is set, MirroredStrategy with several GPUs, the
default strategy otherwise. Resumes from the newest checkpoint in train_logdir, which is saved
every `save_interval_steps` steps and every `save_interval_secs` seconds (DeepLab's default,
1200 s: a crash costs at most that much work); a resumed run continues the input stream where
its checkpoint was, so with `deterministic` it ends with the weights of an uninterrupted run,
bit for bit. Writes
TensorBoard summaries, `model_options.json`, `train_config.json`, and at the end
`final_weights.npz` (DeepLab-named) and `train_done.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from deeplab import io_utils
from deeplab.cli import parse_bool
from deeplab.paths import require_checkpoint
from deeplab.model import ModelOptions

FINAL_WEIGHTS = "final_weights.npz"
DONE_FILE = "train_done.json"
OPTIONS_FILE = "model_options.json"


@dataclasses.dataclass
class TrainConfig:
    train_logdir: str
    tfrecord_dir: str  # folder of TFRecords ({split}-*-of-*.tfrecord)
    num_classes: int = 19
    ignore_label: int = 255
    train_split: str = "train"
    model: ModelOptions = dataclasses.field(default_factory=ModelOptions)
    training_number_of_steps: int = 30000
    base_learning_rate: float = 0.007
    learning_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 4e-5
    train_crop_size: tuple[int, int] = (769, 769)
    train_batch_size: int = 4  # global, over all replicas
    min_scale_factor: float = 0.5
    max_scale_factor: float = 2.0
    scale_factor_step_size: float = 0.25
    tf_initial_checkpoint: str | None = None
    initialize_last_layer: bool = True
    save_interval_steps: int = 500
    save_interval_secs: float = 1200.0  # also save when this long has passed (DeepLab's)
    log_steps: int = 10
    seed: int | None = None
    deterministic: bool = False
    mixed_precision: bool = False
    strategy: str = "auto"
    progress: bool = True


STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def choose_strategy(name: str = "auto"):
    """`auto`: MultiWorkerMirrored when TF_CONFIG is set, Mirrored with several GPUs, else the
    default strategy. `mirrored` on a machine without GPUs mirrors over the logical CPU devices
    (useful for tests)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy '{name}'; valid: {', '.join(STRATEGIES)}")
    if name == "multi_worker" or (name == "auto" and os.environ.get("TF_CONFIG")):
        # Must come before anything initialises the TensorFlow context.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def enable_determinism() -> None:
    """Deterministic kernels (`tf.config.experimental.enable_op_determinism`): with a seed and a
    deterministic input pipeline, the same labels give bit-identical weights. It must precede
    any op; an error names the op that has no deterministic kernel."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def masked_cross_entropy_sum(labels, logits, ignore_label=255):
    """(sum of per-pixel softmax cross-entropy over labelled pixels, number of them)."""
    import tensorflow as tf

    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(logits, tf.float32))
    ce = tf.where(valid, ce, tf.zeros_like(ce))
    return tf.reduce_sum(ce), tf.reduce_sum(tf.cast(valid, tf.float32))


def _check(config: TrainConfig):
    if config.training_number_of_steps < 1:
        raise ValueError(f"training_number_of_steps must be >= 1, got {config.training_number_of_steps}")
    if config.train_batch_size < 1:
        raise ValueError(f"train_batch_size must be >= 1, got {config.train_batch_size}")
    if config.tf_initial_checkpoint:
        require_checkpoint(config.tf_initial_checkpoint, "tf_initial_checkpoint")


def train(config: TrainConfig) -> dict:
    """Runs (or resumes) training; returns a summary dict (also written as train_done.json)."""
    import keras
    import tensorflow as tf

    from deeplab import checkpoints
    from deeplab.datasets import data_generator, tfrecord
    from deeplab.model import build_model, regularized_kernels

    _check(config)
    logdir = Path(config.train_logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    done = logdir / DONE_FILE
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("steps") == config.training_number_of_steps:
            print(f"training already complete in {logdir} ({info['steps']} steps)")
            return info
    tfrecord.list_shards(config.tfrecord_dir, config.train_split)  # clear error if missing
    io_utils.write_text(logdir / OPTIONS_FILE, config.model.to_json() + "\n")
    cfg = dataclasses.asdict(config)
    cfg["model"] = json.loads(config.model.to_json())
    io_utils.write_json(logdir / "train_config.json", cfg)
    strategy = choose_strategy(config.strategy)
    if config.deterministic:
        enable_determinism()
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    replicas = strategy.num_replicas_in_sync
    if config.train_batch_size % replicas:
        raise ValueError(
            f"train_batch_size {config.train_batch_size} is not divisible by the "
            f"{replicas} replicas")
    total = config.training_number_of_steps
    with strategy.scope():
        model = build_model(dataclasses.replace(config.model, num_classes=config.num_classes))
        # DeepLab's poly schedule: base * (1 - step / total) ** power, on optimizer.iterations.
        schedule = keras.optimizers.schedules.PolynomialDecay(
            config.base_learning_rate, decay_steps=total, end_learning_rate=0.0,
            power=config.learning_power)
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum)
        if config.mixed_precision:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)  # slots exist before tf.function traces
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # The random generators' states (dropout's) are model variables that a Checkpoint of
        # the Keras model does not track: kept beside it so a resumed run draws what an
        # uninterrupted one would.
        random_states = [v for v in model.non_trainable_variables
                         if v.path.endswith("seed_generator_state")]
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                                   random_states=random_states)
    chief = _is_chief(strategy)
    # Every worker takes part in saving; only the chief writes into train_logdir.
    ckpt_dir = logdir / "ckpt" if chief else Path(tempfile.mkdtemp(prefix="worker_ckpt_"))
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        print(f"resumed from {manager.latest_checkpoint} at step {int(step.numpy())}")
    elif config.tf_initial_checkpoint:
        report = checkpoints.load_initial(model, config.tf_initial_checkpoint, config.initialize_last_layer)
        print(f"initial checkpoint {config.tf_initial_checkpoint}: {report.summary()}")

    kernels = regularized_kernels(model)
    bias_ids = {id(v) for v in model.trainable_variables if v.path.endswith("bias")}
    seed = 0 if config.seed is None else config.seed
    start = int(step.numpy())

    def dataset_fn(ctx):
        # A resumed run continues the input stream where the checkpoint was: every step took
        # train_batch_size examples, spread evenly over the input pipelines.
        ds = data_generator.build_dataset(
            config.tfrecord_dir, config.train_split,
            batch_size=ctx.get_per_replica_batch_size(config.train_batch_size), is_training=True,
            crop_size=config.train_crop_size, min_scale_factor=config.min_scale_factor,
            max_scale_factor=config.max_scale_factor,
            scale_factor_step_size=config.scale_factor_step_size,
            ignore_label=config.ignore_label, seed=seed + 1000 * ctx.input_pipeline_id,
            deterministic=config.deterministic, num_input_pipelines=ctx.num_input_pipelines,
            input_pipeline_id=ctx.input_pipeline_id,
            skip_examples=start * config.train_batch_size // ctx.num_input_pipelines)
        return ds

    dist_ds = strategy.distribute_datasets_from_function(dataset_fn)

    def replica_step(images, labels):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            ce_sum, count = masked_cross_entropy_sum(labels, logits, config.ignore_label)
            global_count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
            ce = ce_sum / tf.maximum(global_count, 1.0)  # 0 when nothing is labelled
            wd = 0.5 * config.weight_decay * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels])
            loss = ce + wd / replicas
            scaled = optimizer.scale_loss(loss) if config.mixed_precision else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        grads = [g * 2.0 if id(v) in bias_ids else g for g, v in zip(grads, model.trainable_variables)]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return ce * replicas, count

    @tf.function
    def train_step(iterator):
        images, labels = next(iterator)
        ce, count = strategy.run(replica_step, args=(images, labels))
        step.assign_add(1)
        return (strategy.reduce(tf.distribute.ReduceOp.MEAN, ce, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    writer = tf.summary.create_file_writer(str(logdir / "summaries"))
    iterator = iter(dist_ds)
    losses, t0, t_log = [], time.perf_counter(), time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not config.progress)
    loss_value = float("nan")
    last_save = time.monotonic()
    while int(step.numpy()) < total:
        ce, _count = train_step(iterator)
        loss_value = float(ce)
        if not (loss_value == loss_value):  # NaN
            raise FloatingPointError(
                f"loss became NaN at step {int(step.numpy())}: lower base_learning_rate")
        losses.append(loss_value)
        s = int(step.numpy())
        bar.update(1)
        if s % config.log_steps == 0 or s == total:
            dt = time.perf_counter() - t_log
            t_log = time.perf_counter()
            bar.set_postfix(loss=f"{loss_value:.3f}")
            with writer.as_default(step=s):
                tf.summary.scalar("loss/cross_entropy", loss_value)
                tf.summary.scalar("learning_rate", float(schedule(s)))
                tf.summary.scalar("images_per_second",
                                  config.log_steps * config.train_batch_size / max(dt, 1e-9))
        if s < total and (s % config.save_interval_steps == 0
                          or time.monotonic() - last_save >= config.save_interval_secs):
            manager.save(checkpoint_number=s)
            last_save = time.monotonic()
    bar.close()
    manager.save(checkpoint_number=int(step.numpy()))
    if not chief:
        return {"steps": total, "final_loss": loss_value, "chief": False}
    checkpoints.save_weights(model, logdir / FINAL_WEIGHTS)
    elapsed = time.perf_counter() - t0
    done_steps = int(step.numpy()) - start
    info = {"steps": total, "final_loss": loss_value,
            "first_losses": losses[:5], "last_losses": losses[-5:],
            "seconds": elapsed, "steps_this_run": done_steps,
            "images_per_second": done_steps * config.train_batch_size / max(elapsed, 1e-9),
            "replicas": replicas}
    io_utils.write_json(done, info)
    return info


def load_trained(logdir: str | Path):
    """(model, options) of a finished training folder."""
    from deeplab import checkpoints
    from deeplab.model import build_model

    logdir = Path(logdir)
    weights = logdir / FINAL_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} does not exist: training in {logdir} has not finished (run it again to resume)")
    options = ModelOptions.from_json((logdir / OPTIONS_FILE).read_text())
    model = build_model(options)
    report = checkpoints.load_weights(model, weights)
    if report.missing:
        raise ValueError(f"{weights} lacks {len(report.missing)} variables, e.g. {report.missing[:3]}")
    return model, options


# ---------------------------------------------------------------------------- flags
def _ints(text):
    return tuple(int(v) for v in str(text).replace("x", ",").split(",") if v)


def add_model_flags(p: argparse.ArgumentParser):
    p.add_argument("--model_variant", default="xception_65")
    p.add_argument("--output_stride", type=int, default=16)
    p.add_argument("--atrous_rates", type=int, action="append", default=None,
                   help="repeat per rate (DeepLab style) or leave out for the default")
    p.add_argument("--decoder_output_stride", type=int, default=4)
    p.add_argument("--fine_tune_batch_norm", type=parse_bool, default=True)
    p.add_argument("--batch_norm_decay", type=float, default=0.9997)


def model_options_from(args, num_classes) -> ModelOptions:
    return ModelOptions(num_classes=num_classes, model_variant=args.model_variant,
                        output_stride=args.output_stride,
                        atrous_rates=tuple(args.atrous_rates) if args.atrous_rates else None,
                        decoder_output_stride=args.decoder_output_stride or None,
                        fine_tune_batch_norm=args.fine_tune_batch_norm,
                        bn_momentum=args.batch_norm_decay)


def add_tfrecord_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tfrecord_dir", default=None, help="folder holding the TFRecords (required)")
    p.add_argument("--dataset_dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--classes", default=None,
                   help="with --dataset folder: the data set's classes.json (class count, ignore label)")


def check_tfrecord_flags(p: argparse.ArgumentParser, args) -> None:
    """--dataset_dir means the data root in every script; here the TFRecords are --tfrecord_dir."""
    if args.dataset_dir is not None:
        p.error("--dataset_dir is the data root in this project's scripts; pass the folder of "
                f"TFRecords as --tfrecord_dir {args.dataset_dir}")
    if args.tfrecord_dir is None:
        p.error("--tfrecord_dir (the folder of TFRecords) is required")


def dataset_for_tfrecords(p: argparse.ArgumentParser, args):
    """The descriptor of --dataset (a folder data set: from --classes)."""
    from deeplab.datasets import get_dataset
    from deeplab.datasets.descriptors import FolderDataset

    if args.dataset == "folder":
        if not args.classes:
            p.error("--dataset folder needs --classes DATA_DIR/classes.json")
        try:
            return FolderDataset.from_classes(args.classes)
        except (ValueError, FileNotFoundError) as e:
            p.error(str(e))
    return get_dataset(args.dataset)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_logdir", required=True)
    p.add_argument("--dataset", default="synthetic")
    add_tfrecord_flags(p)
    p.add_argument("--train_split", default="train")
    add_model_flags(p)
    p.add_argument("--training_number_of_steps", type=int, default=30000)
    p.add_argument("--base_learning_rate", type=float, default=0.007)
    p.add_argument("--learning_power", type=float, default=0.9)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=4e-5)
    p.add_argument("--train_crop_size", type=_ints, default=(769, 769))
    p.add_argument("--train_batch_size", type=int, default=4)
    p.add_argument("--min_scale_factor", type=float, default=0.5)
    p.add_argument("--max_scale_factor", type=float, default=2.0)
    p.add_argument("--scale_factor_step_size", type=float, default=0.25)
    p.add_argument("--tf_initial_checkpoint", default=None)
    p.add_argument("--initialize_last_layer", type=parse_bool, default=True)
    p.add_argument("--save_interval_steps", type=int, default=500)
    p.add_argument("--save_interval_secs", type=float, default=1200.0,
                   help="also save a checkpoint when this many seconds have passed (DeepLab's default)")
    p.add_argument("--log_steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--deterministic", type=parse_bool, default=False,
                   help="deterministic kernels and input order (with --seed: repeatable runs)")
    p.add_argument("--mixed_precision", type=parse_bool, default=False)
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    args = p.parse_args(argv)
    check_tfrecord_flags(p, args)
    ds = dataset_for_tfrecords(p, args)
    crop = args.train_crop_size if len(args.train_crop_size) == 2 else args.train_crop_size * 2
    config = TrainConfig(
        train_logdir=args.train_logdir, tfrecord_dir=args.tfrecord_dir, num_classes=ds.num_classes,
        ignore_label=ds.ignore_label, train_split=args.train_split,
        model=model_options_from(args, ds.num_classes),
        training_number_of_steps=args.training_number_of_steps,
        base_learning_rate=args.base_learning_rate, learning_power=args.learning_power,
        momentum=args.momentum, weight_decay=args.weight_decay, train_crop_size=crop,
        train_batch_size=args.train_batch_size, min_scale_factor=args.min_scale_factor,
        max_scale_factor=args.max_scale_factor, scale_factor_step_size=args.scale_factor_step_size,
        tf_initial_checkpoint=args.tf_initial_checkpoint,
        initialize_last_layer=args.initialize_last_layer,
        save_interval_steps=args.save_interval_steps,
        save_interval_secs=args.save_interval_secs, log_steps=args.log_steps, seed=args.seed,
        deterministic=args.deterministic, mixed_precision=args.mixed_precision, strategy=args.strategy)
    info = train(config)
    print(json.dumps({k: info[k] for k in ("steps", "final_loss", "images_per_second")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
