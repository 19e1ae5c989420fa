"""The trainer of DeepLabv3+ (DeepLab's train.py on TensorFlow 2 / Keras 3); its command line
is `python -m deeplab.train` (deeplab/train.py).

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

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from deeplab import io_utils
from deeplab.errors import BadInput, CannotContinue, MissingFile, Unavailable
from deeplab.model import ModelOptions
from deeplab.paths import require_checkpoint

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
    class_weights: tuple[float, ...] | None = None  # per-class loss weights (None: all 1)
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
        raise BadInput(f"unknown strategy '{name}'; valid: {', '.join(STRATEGIES)}")
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


def masked_cross_entropy_sum(labels, logits, ignore_label=255, class_weights=None):
    """(sum of per-pixel softmax cross-entropy over labelled pixels, number of them); with
    `class_weights` (float [C]) each pixel's term is weighted by its class's weight (the count
    stays the number of pixels, so the weights set the classes' shares, not the loss scale)."""
    import tensorflow as tf

    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(logits, tf.float32))
    if class_weights is not None:
        ce = ce * tf.gather(tf.constant(class_weights, tf.float32), safe)
    ce = tf.where(valid, ce, tf.zeros_like(ce))
    return tf.reduce_sum(ce), tf.reduce_sum(tf.cast(valid, tf.float32))


def make_optimizer(config: TrainConfig):
    """(optimizer, schedule): SGD with momentum `config.momentum` (Keras: v = m v - lr g,
    w += v) on DeepLab's poly schedule lr(step) = base (1 - step / total) ** power, read at
    `optimizer.iterations`; wrapped for loss scaling with mixed precision."""
    import keras

    schedule = keras.optimizers.schedules.PolynomialDecay(
        config.base_learning_rate, decay_steps=config.training_number_of_steps,
        end_learning_rate=0.0, power=config.learning_power)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum)
    if config.mixed_precision:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer, schedule


def weight_decay_loss(kernels, weight_decay: float):
    """slim's L2 regulariser: weight_decay * sum(w^2) / 2 over `kernels` (its gradient is
    weight_decay * w)."""
    import tensorflow as tf

    if not kernels:
        return tf.constant(0.0)
    return 0.5 * weight_decay * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels])


def replica_loss(ce_sum, global_count, kernels, weight_decay: float, replicas: int):
    """(cross-entropy, loss) of one replica's share of a step: the cross-entropy summed over
    its labelled pixels divided by the labelled pixels of the whole global batch (0 when none
    is labelled), plus its 1/replicas share of the weight decay, so that the replicas' summed
    gradients are those of one replica on the global batch."""
    import tensorflow as tf

    ce = ce_sum / tf.maximum(global_count, 1.0)
    return ce, ce + weight_decay_loss(kernels, weight_decay) / replicas


BIAS_GRADIENT_MULTIPLIER = 2.0  # DeepLab's get_model_gradient_multipliers: biases learn x2


def gradient_multipliers(variables) -> list[float]:
    """Per trainable variable: BIAS_GRADIENT_MULTIPLIER for a bias (in DeepLabv3+ the logits'
    only), 1 otherwise."""
    return [BIAS_GRADIENT_MULTIPLIER if v.path.endswith("bias") else 1.0 for v in variables]


def apply_multipliers(grads, multipliers: list[float]):
    return [g if m == 1.0 else g * m for g, m in zip(grads, multipliers)]


def _check(config: TrainConfig):
    if config.training_number_of_steps < 1:
        raise BadInput(f"training_number_of_steps must be >= 1, got {config.training_number_of_steps}")
    if config.train_batch_size < 1:
        raise BadInput(f"train_batch_size must be >= 1, got {config.train_batch_size}")
    if config.tf_initial_checkpoint:
        require_checkpoint(config.tf_initial_checkpoint, "tf_initial_checkpoint")


def _remove_partial_saves(ckpt_dir: Path) -> None:
    """What a save cut short leaves (TensorFlow writes `ckpt-N_temp/` and renames it): never a
    checkpoint, so removed before training goes on."""
    import shutil

    for partial in Path(ckpt_dir).glob("*_temp*"):
        shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)


def _save(manager, ckpt_dir: Path, number: int) -> None:
    """A checkpoint, or an `Unavailable` (an OSError) naming the folder and the fix (a full disk:
    TensorFlow's ResourceExhaustedError); the partial save is removed."""
    import tensorflow as tf

    try:
        manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as e:
        _remove_partial_saves(ckpt_dir)
        why = getattr(e, "message", None) or getattr(e, "strerror", None) or str(e)
        raise Unavailable(getattr(e, "errno", None) or 0, f"cannot write checkpoint {number} into "
                          f"{ckpt_dir} ({why}): free space and run again; training resumes from its "
                          "last checkpoint") from None


def _restore(ckpt, path: str, ckpt_dir: Path) -> None:
    """Restores the latest checkpoint, or stops naming it and the fix when it is damaged (a
    checkpoint cannot be made again from anything else)."""
    import tensorflow as tf

    try:
        ckpt.restore(path).expect_partial()
    # a cut file: IndexError ("Read less bytes than requested"); a flipped byte: DataLossError
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        why = getattr(e, "message", None) or str(e)
        raise CannotContinue(f"checkpoint {path} is damaged ({why.splitlines()[0][:200]}): delete its "
                             f"files ({path}.*) to resume from the checkpoint before it, or delete "
                             f"{ckpt_dir} to train the round again from its start") from None


def _already_done(config: TrainConfig, logdir: Path) -> dict | None:
    """The summary of a training of this many steps already complete in `logdir`, or None."""
    done = logdir / DONE_FILE
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("steps") == config.training_number_of_steps:
            return info
    return None


def _record_config(config: TrainConfig, logdir: Path) -> None:
    """The network's options and the whole config beside the weights (read by load_trained)."""
    io_utils.write_text(logdir / OPTIONS_FILE, config.model.to_json() + "\n")
    cfg = dataclasses.asdict(config)
    cfg["model"] = json.loads(config.model.to_json())
    io_utils.write_json(logdir / "train_config.json", cfg)


def _runtime(config: TrainConfig):
    """The distribution strategy, with determinism, seeds and precision set as asked."""
    import keras

    strategy = choose_strategy(config.strategy)
    if config.deterministic:
        enable_determinism()
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    replicas = strategy.num_replicas_in_sync
    if config.train_batch_size % replicas:
        raise BadInput(
            f"train_batch_size {config.train_batch_size} is not divisible by the "
            f"{replicas} replicas")
    return strategy


@dataclasses.dataclass
class _State:
    """What a training step changes and a checkpoint keeps."""

    model: object
    optimizer: object
    schedule: object
    step: object
    checkpoint: object


def _build_state(config: TrainConfig, strategy) -> _State:
    import tensorflow as tf

    from deeplab.model import build_model

    with strategy.scope():
        model = build_model(dataclasses.replace(config.model, num_classes=config.num_classes))
        optimizer, schedule = make_optimizer(config)
        optimizer.build(model.trainable_variables)  # slots exist before tf.function traces
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # The random generators' states (dropout's) are model variables that a Checkpoint of
        # the Keras model does not track: kept beside it so a resumed run draws what an
        # uninterrupted one would.
        random_states = [v for v in model.non_trainable_variables
                         if v.path.endswith("seed_generator_state")]
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step,
                                   random_states=random_states)
    return _State(model, optimizer, schedule, step, ckpt)


def _resume_or_start(config: TrainConfig, logdir: Path, state: _State, chief: bool):
    """Restores the latest checkpoint (every worker the chief's) or loads the initial weights;
    returns the checkpoint manager and its folder (the chief's in train_logdir, a temporary one
    for the other workers, which take part in saving)."""
    import tensorflow as tf

    from deeplab.training import checkpoints

    ckpt_dir = logdir / "ckpt" if chief else Path(tempfile.mkdtemp(prefix="worker_ckpt_"))
    manager = tf.train.CheckpointManager(state.checkpoint, str(ckpt_dir), max_to_keep=2)
    _remove_partial_saves(ckpt_dir)
    latest = tf.train.latest_checkpoint(str(logdir / "ckpt"))
    if latest:
        _restore(state.checkpoint, latest, logdir / "ckpt")
        print(f"resumed from {latest} at step {int(state.step.numpy())}")
    elif config.tf_initial_checkpoint:
        report = checkpoints.load_initial(state.model, config.tf_initial_checkpoint,
                                          config.initialize_last_layer)
        print(f"initial checkpoint {config.tf_initial_checkpoint}: {report.summary()}")
    return manager, ckpt_dir


def _input(config: TrainConfig, strategy, start: int):
    """The distributed input from `start` on: a resumed run continues the stream where the
    checkpoint was (every step took train_batch_size examples, spread evenly over the input
    pipelines)."""
    from deeplab.datasets import data_generator

    seed = 0 if config.seed is None else config.seed

    def dataset_fn(ctx):
        return data_generator.build_dataset(
            config.tfrecord_dir, config.train_split,
            batch_size=ctx.get_per_replica_batch_size(config.train_batch_size), is_training=True,
            crop_size=config.train_crop_size, min_scale_factor=config.min_scale_factor,
            max_scale_factor=config.max_scale_factor,
            scale_factor_step_size=config.scale_factor_step_size,
            ignore_label=config.ignore_label, seed=seed + 1000 * ctx.input_pipeline_id,
            deterministic=config.deterministic, num_input_pipelines=ctx.num_input_pipelines,
            input_pipeline_id=ctx.input_pipeline_id,
            skip_examples=start * config.train_batch_size // ctx.num_input_pipelines)

    return iter(strategy.distribute_datasets_from_function(dataset_fn))


def _step_function(config: TrainConfig, strategy, state: _State):
    """One synchronous step over the replicas: (mean cross-entropy, labelled pixels)."""
    import tensorflow as tf

    from deeplab.model import regularized_kernels

    model, optimizer, replicas = state.model, state.optimizer, strategy.num_replicas_in_sync
    kernels = regularized_kernels(model)
    multipliers = gradient_multipliers(model.trainable_variables)

    def replica_step(images, labels):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            ce_sum, count = masked_cross_entropy_sum(labels, logits, config.ignore_label,
                                                     config.class_weights)
            global_count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
            ce, loss = replica_loss(ce_sum, global_count, kernels, config.weight_decay, replicas)
            scaled = optimizer.scale_loss(loss) if config.mixed_precision else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        grads = apply_multipliers(grads, multipliers)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return ce * replicas, count

    # autograph off: the step has no Python branch on a tensor, and tracing it is cheaper
    @tf.function(autograph=False)
    def train_step(iterator):
        images, labels = next(iterator)
        ce, count = strategy.run(replica_step, args=(images, labels))
        state.step.assign_add(1)
        return (strategy.reduce(tf.distribute.ReduceOp.MEAN, ce, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    return train_step


def _run_steps(config: TrainConfig, state: _State, train_step, iterator, manager, ckpt_dir: Path,
               logdir: Path, start: int) -> list[float]:
    """Steps until training_number_of_steps, logging to TensorBoard every log_steps and saving a
    checkpoint every save_interval_steps or save_interval_secs; returns this run's losses."""
    import tensorflow as tf
    from tqdm import tqdm

    total = config.training_number_of_steps
    writer = tf.summary.create_file_writer(str(logdir / "summaries"))
    losses, t_log, last_save = [], time.perf_counter(), time.monotonic()
    bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not config.progress)
    while int(state.step.numpy()) < total:
        ce, _count = train_step(iterator)
        loss_value = float(ce)
        if not (loss_value == loss_value):  # NaN
            raise FloatingPointError(
                f"loss became NaN at step {int(state.step.numpy())}: lower base_learning_rate")
        losses.append(loss_value)
        s = int(state.step.numpy())
        bar.update(1)
        if s % config.log_steps == 0 or s == total:
            dt = time.perf_counter() - t_log
            t_log = time.perf_counter()
            bar.set_postfix(loss=f"{loss_value:.3f}")
            with writer.as_default(step=s):
                tf.summary.scalar("loss/cross_entropy", loss_value)
                tf.summary.scalar("learning_rate", float(state.schedule(s)))
                tf.summary.scalar("images_per_second",
                                  config.log_steps * config.train_batch_size / max(dt, 1e-9))
        if s < total and (s % config.save_interval_steps == 0
                          or time.monotonic() - last_save >= config.save_interval_secs):
            _save(manager, ckpt_dir, s)
            last_save = time.monotonic()
    bar.close()
    _save(manager, ckpt_dir, int(state.step.numpy()))
    return losses


def train(config: TrainConfig) -> dict:
    """Runs (or resumes) training; returns a summary dict (also written as train_done.json)."""
    from deeplab.datasets import tfrecord
    from deeplab.training import checkpoints

    _check(config)
    logdir = Path(config.train_logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    info = _already_done(config, logdir)
    if info is not None:
        print(f"training already complete in {logdir} ({info['steps']} steps)")
        return info
    tfrecord.list_shards(config.tfrecord_dir, config.train_split)  # clear error if missing
    _record_config(config, logdir)
    strategy = _runtime(config)
    state = _build_state(config, strategy)
    chief = _is_chief(strategy)
    manager, ckpt_dir = _resume_or_start(config, logdir, state, chief)
    start = int(state.step.numpy())
    t0 = time.perf_counter()
    losses = _run_steps(config, state, _step_function(config, strategy, state),
                        _input(config, strategy, start), manager, ckpt_dir, logdir, start)
    total = config.training_number_of_steps
    loss_value = losses[-1] if losses else float("nan")
    if not chief:
        return {"steps": total, "final_loss": loss_value, "chief": False}
    checkpoints.save_weights(state.model, logdir / FINAL_WEIGHTS)
    elapsed = time.perf_counter() - t0
    done_steps = int(state.step.numpy()) - start
    info = {"steps": total, "final_loss": loss_value,
            "first_losses": losses[:5], "last_losses": losses[-5:],
            "seconds": elapsed, "steps_this_run": done_steps,
            "images_per_second": done_steps * config.train_batch_size / max(elapsed, 1e-9),
            "replicas": strategy.num_replicas_in_sync}
    peak = gpu_peak_bytes()
    if peak is not None:
        info["gpu_peak_bytes"] = peak
    io_utils.write_json(logdir / DONE_FILE, info)
    return info


def gpu_peak_bytes() -> int | None:
    """The largest peak of allocated memory over this process's GPUs (None without a GPU)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return None
    return max(int(tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"])
               for i in range(len(gpus)))


def load_trained(logdir: str | Path):
    """(model, options) of a finished training folder."""
    from deeplab.model import build_model
    from deeplab.training import checkpoints

    logdir = Path(logdir)
    weights = logdir / FINAL_WEIGHTS
    if not weights.is_file():
        raise MissingFile(
            f"{weights} does not exist: training in {logdir} has not finished (run it again to resume)")
    options = ModelOptions.from_json((logdir / OPTIONS_FILE).read_text())
    model = build_model(options)
    report = checkpoints.load_weights(model, weights)
    if report.missing:
        raise BadInput(f"{weights} lacks {len(report.missing)} variables, e.g. {report.missing[:3]}")
    return model, options
