"""DeepLabv3+ model, checkpoint conversion, training, evaluation and export."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from deeplab.training import checkpoints
from deeplab.training.evaluate import confusion_matrix, iou_from_confusion
from deeplab.model import ModelOptions, build_model, regularized_kernels
from deeplab.training import trainer
from deeplab.training.trainer import TrainConfig, masked_cross_entropy_sum, train

TSV = Path(__file__).parent / "data" / "xception65_checkpoint_variables.tsv"
LIGHT = dict(model_variant="xception_light", batch_norm_decay=0.9)


# Both strides on Xception-65 (the paper's) and the light one; 41 and 71 differ only in their
# unit counts, so one stride each keeps the default run short.
@pytest.mark.parametrize("variant,output_stride", [
    ("xception_65", 8), ("xception_65", 16), ("xception_light", 8), ("xception_light", 16),
    ("xception_41", 16), ("xception_71", 16)])
def test_output_shapes(variant, output_stride):
    model = build_model(ModelOptions(num_classes=7, model_variant=variant, output_stride=output_stride))
    x = np.random.default_rng(0).uniform(0, 255, (1, 49, 57, 3)).astype(np.float32)
    assert model(x).shape == (1, 49, 57, 7)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    if output_stride == 16 and variant in ("xception_65", "xception_light"):
        # layer names are deterministic: a second build gives the same list (the builder names
        # every variant's layers the same way; two builds of the larger ones would double the time)
        assert names == [layer.name for layer in build_model(ModelOptions(
            num_classes=7, model_variant=variant, output_stride=output_stride)).layers]


def test_xception65_matches_checkpoint_table():
    model = build_model(ModelOptions(num_classes=19, model_variant="xception_65"))
    with open(TSV) as f:
        table = {r["name"]: tuple(int(v) for v in r["shape"].split(","))
                 for r in csv.DictReader(f, delimiter="\t")}
    assert len(table) == 732
    ours = {k: tuple(v.shape) for k, v in checkpoints.tf1_variables(model).items()}
    assert ours == table
    assert model.count_params() == 41_257_699
    assert sum(int(np.prod(s)) for s in table.values()) == 41_257_699
    assert len(regularized_kernels(model)) == 79


def test_stride4_feature_and_explicit_padding():
    from deeplab.core import xception
    import keras

    inp = keras.Input((65, 65, 3))
    feats = xception.xception(inp, "xception_light", 16)
    assert tuple(feats["stride_4"].shape[1:3]) == (17, 17)
    assert tuple(feats["out"].shape[1:3]) == (5, 5)
    model = build_model(ModelOptions(num_classes=3, **LIGHT))
    pad = model.get_layer("xception_65.entry_flow.conv1_1.pad")
    assert pad.padding == ((1, 1), (1, 1))


def _write_tf1_checkpoint(path, values):
    with tf.Graph().as_default():
        variables = {n: tf.compat.v1.Variable(v, name=n) for n, v in values.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(path))


@pytest.mark.e2e
def test_converter_loads_every_value_where_it_belongs(tmp_path):
    model = build_model(ModelOptions(num_classes=5, **LIGHT))
    names = checkpoints.tf1_variables(model)
    with open(TSV) as f:
        table = {r["name"] for r in csv.DictReader(f, delimiter="\t")}
    assert set(names) <= table  # the light model uses the checkpoint's own names
    rng = np.random.default_rng(0)
    values = {n: rng.normal(size=tuple(v.shape)).astype(np.float32) for n, v in names.items()}
    extra = {"global_step": np.int64(7), "xception_65/logits/weights": np.zeros((1, 1, 2048, 1001), np.float32),
             "xception_65/entry_flow/conv1_1/weights/Momentum": np.zeros((3, 3, 3, 8), np.float32),
             "some/unexpected": np.zeros(3, np.float32)}
    _write_tf1_checkpoint(tmp_path / "model.ckpt", {**values, **extra})
    fresh = build_model(ModelOptions(num_classes=5, **LIGHT))
    report = checkpoints.load_tf1_checkpoint(fresh, tmp_path / "model.ckpt")
    assert report.missing == [] and report.unexpected == ["some/unexpected"]
    for n, v in checkpoints.tf1_variables(fresh).items():
        np.testing.assert_array_equal(v.numpy(), values[n], err_msg=n)
    # Another class count: logits skipped, everything else loaded.
    other = build_model(ModelOptions(num_classes=3, **LIGHT))
    report = checkpoints.load_tf1_checkpoint(other, tmp_path)
    assert sorted(report.skipped_logits) == ["logits/semantic/biases", "logits/semantic/weights"]
    assert report.missing == [] and len(report.loaded) == len(names) - 2
    # The script writes DeepLab-named weights that load back exactly.
    out = tmp_path / "converted.npz"
    subprocess.run([sys.executable, "scripts/convert_checkpoint.py", "--checkpoint", str(tmp_path / "model.ckpt"),
                    "--model_variant", "xception_light", "--num_classes", "5", "--output", str(out)],
                   check=True, cwd=Path(__file__).parents[1])
    again = build_model(ModelOptions(num_classes=5, **LIGHT))
    checkpoints.load_weights(again, out)
    x = rng.uniform(0, 255, (1, 33, 33, 3)).astype(np.float32)
    np.testing.assert_allclose(again(x).numpy(), fresh(x).numpy(), rtol=1e-5, atol=1e-5)


def test_converter_fails_on_shape_mismatch(tmp_path):
    model = build_model(ModelOptions(num_classes=5, **LIGHT))
    values = {n: np.zeros(tuple(v.shape), np.float32) for n, v in checkpoints.tf1_variables(model).items()}
    values["xception_65/entry_flow/conv1_2/weights"] = np.zeros((3, 3, 8, 99), np.float32)
    _write_tf1_checkpoint(tmp_path / "model.ckpt", values)
    with pytest.raises(ValueError, match="conv1_2/weights"):
        checkpoints.load_tf1_checkpoint(build_model(ModelOptions(num_classes=5, **LIGHT)), tmp_path / "model.ckpt")
    with pytest.raises(FileNotFoundError, match="models/"):
        checkpoints.load_tf1_checkpoint(model, tmp_path / "nothing.ckpt")


def test_loss_ignores_255_and_empty_batches_give_zero():
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(2, 4, 4, 3)), tf.float32)
    labels = rng.integers(0, 3, (2, 4, 4))
    labels[0, :2] = 255
    s, n = masked_cross_entropy_sum(tf.constant(labels), logits)
    assert float(n) == 32 - 8
    changed = logits.numpy()
    changed[0, :2] += 100.0  # ignored pixels do not matter
    s2, _ = masked_cross_entropy_sum(tf.constant(labels), tf.constant(changed))
    np.testing.assert_allclose(float(s), float(s2), rtol=1e-6)
    p = tf.nn.softmax(logits).numpy()
    valid = labels != 255
    expected = -np.log(np.take_along_axis(p, np.where(valid, labels, 0)[..., None], -1)[..., 0])[valid].sum()
    np.testing.assert_allclose(float(s), expected, rtol=1e-5)
    s0, n0 = masked_cross_entropy_sum(tf.fill([1, 4, 4], 255), logits[:1])
    assert float(s0) == 0.0 and float(n0) == 0.0


def test_poly_schedule_momentum_and_weight_decay_take_the_hand_computed_steps():
    """Three optimizer steps on w with loss a.w + wd |w|^2 / 2 (gradient a + wd w): the poly
    learning rate base (1 - s / total) ** power, Keras' momentum v = m v - lr g, w += v."""
    config = TrainConfig(train_logdir="unused", tfrecord_dir="unused", training_number_of_steps=4,
                         base_learning_rate=0.1, learning_power=0.9, momentum=0.9, weight_decay=0.5)
    optimizer, schedule = trainer.make_optimizer(config)
    np.testing.assert_allclose([float(schedule(s)) for s in range(5)],
                               [0.1 * (1 - s / 4) ** 0.9 for s in range(5)], rtol=1e-6)
    assert float(schedule(4)) == 0.0
    a = np.array([0.3, 0.7], np.float32)
    w = tf.Variable([1.0, -2.0])
    w_hand, v_hand = np.array([1.0, -2.0]), np.zeros(2)
    for s in range(3):
        with tf.GradientTape() as tape:
            ce, loss = trainer.replica_loss(tf.reduce_sum(a * w), tf.constant(1.0), [w],
                                            config.weight_decay, replicas=1)
        optimizer.apply_gradients([(tape.gradient(loss, w), w)])
        g = a + 0.5 * w_hand
        v_hand = 0.9 * v_hand - 0.1 * (1 - s / 4) ** 0.9 * g
        w_hand = w_hand + v_hand
        np.testing.assert_allclose(w.numpy(), w_hand, rtol=1e-5)
    # on 2 replicas each carries half the weight decay; a batch with nothing labelled: 0, no NaN
    ce, loss = trainer.replica_loss(tf.constant(0.0), tf.constant(0.0), [w], 0.5, replicas=2)
    assert float(ce) == 0.0
    np.testing.assert_allclose(float(trainer.replica_loss(tf.constant(3.0), tf.constant(4.0), [w], 0.0, 2)[0]), 0.75)
    np.testing.assert_allclose(float(loss), 0.25 * 0.5 * float(tf.reduce_sum(w * w)), rtol=1e-6)
    assert float(trainer.weight_decay_loss([], 0.5)) == 0.0


def test_only_the_logits_bias_learns_twice_as_fast():
    model = build_model(ModelOptions(num_classes=3, **LIGHT))
    variables = model.trainable_variables
    mult = trainer.gradient_multipliers(variables)
    doubled = [v.path for v, m in zip(variables, mult) if m != 1.0]
    assert len(doubled) == 1 and doubled[0].endswith("bias") and "logits" in doubled[0]
    assert set(mult) == {1.0, trainer.BIAS_GRADIENT_MULTIPLIER} and trainer.BIAS_GRADIENT_MULTIPLIER == 2.0
    grads = [tf.ones_like(v) for v in variables]
    out = trainer.apply_multipliers(grads, mult)
    for v, g, m in zip(variables, out, mult):
        assert float(tf.reduce_max(g)) == m and float(tf.reduce_min(g)) == m, v.path
    # weight decay regularises every non-depthwise kernel, never the bias or BN
    paths = {k.path for k in regularized_kernels(model)}
    assert doubled[0] not in paths and all(p.endswith("kernel") for p in paths)


def test_miou_matches_hand_computed():
    labels = np.array([0, 0, 1, 1, 2, 255, 2, 0])
    preds = np.array([0, 1, 1, 1, 0, 2, 2, 0])
    cm = confusion_matrix(labels, preds, 4)
    expected = np.zeros((4, 4), int)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 0), (2, 2), (0, 0)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(cm, expected)
    miou, iou = iou_from_confusion(cm)
    # class 0: tp 2, union 2+1+1=4 -> 0.5; class 1: tp 2, union 3 -> 2/3; class 2: tp 1, union 2 -> 0.5
    np.testing.assert_allclose(iou[:3], [0.5, 2 / 3, 0.5])
    assert np.isnan(iou[3])  # empty union: left out of the mean
    assert miou == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)


def _config(tmp_path, tfrecords, steps, **kw):
    settings = dict(model=ModelOptions(**LIGHT), training_number_of_steps=steps,
                    base_learning_rate=0.01, train_crop_size=(65, 65), train_batch_size=4,
                    save_interval_steps=4, log_steps=2, seed=0, deterministic=True, progress=False)
    settings.update(kw)
    return TrainConfig(train_logdir=str(tmp_path / "train"), tfrecord_dir=str(tfrecords), **settings)


def _val_loss(logdir, tfrecords):
    """Mean cross-entropy of a trained model over the val split (deterministic)."""
    from deeplab.datasets import data_generator
    from deeplab.training.trainer import load_trained

    model, _ = load_trained(logdir)
    total, count = 0.0, 0.0
    for batch in data_generator.build_dataset(tfrecords, "val", batch_size=4, is_training=False):
        s, n = masked_cross_entropy_sum(batch["label"], model(batch["image"], training=False))
        total, count = total + float(s), count + float(n)
    return total / count


@pytest.mark.e2e
def test_training_lowers_loss_and_resumes(tmp_path, synth_tfrecords):
    info = train(_config(tmp_path, synth_tfrecords, 6))
    early = _val_loss(tmp_path / "train", synth_tfrecords)
    assert info["steps_this_run"] == 6
    with np.load(tmp_path / "train" / "final_weights.npz") as z:
        six = {k: z[k] for k in z.files}
    # another seed trains another model (so the bit-identity of equal seeds in
    # test_training_killed_after_a_checkpoint_resumes_to_the_same_weights can fail)
    other = tmp_path / "other"
    train(_config(other, synth_tfrecords, 6, seed=1))
    with np.load(other / "train" / "final_weights.npz") as z:
        assert z.files == list(six) and any(z[k].tobytes() != six[k].tobytes() for k in z.files)
    ckpt = tf.train.latest_checkpoint(str(tmp_path / "train" / "ckpt"))
    assert ckpt.endswith("-6")
    # More steps in the same folder: resumes at step 6, runs only the rest.
    info = train(_config(tmp_path, synth_tfrecords, 40))
    assert info["steps_this_run"] == 34
    assert tf.train.latest_checkpoint(str(tmp_path / "train" / "ckpt")).endswith("-40")
    late = _val_loss(tmp_path / "train", synth_tfrecords)
    assert late < early - 0.2, (early, late)
    # Finished: a rerun does nothing.
    assert train(_config(tmp_path, synth_tfrecords, 40))["steps_this_run"] == 34
    # Evaluation and export of the trained model.
    from deeplab.training.evaluate import evaluate
    from deeplab.training.export import export
    from deeplab.training.inference import Predictor
    from deeplab.training.trainer import load_trained

    model, _ = load_trained(tmp_path / "train")
    res = evaluate(model, synth_tfrecords, "val", 19, progress=False)
    cm = np.array(res["confusion_matrix"])
    assert res["images"] == 13 and cm.sum() == 13 * 64 * 128
    # its progress bar knows its total (the split's count from its meta file), in batches
    import io
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        again = evaluate(model, synth_tfrecords, "val", 19, batch_size=4, progress=True)
    assert again["images"] == 13
    assert "4/4 [" in err.getvalue() and "eval val" in err.getvalue(), err.getvalue()[-300:]
    path = export(model, tmp_path / "exported")
    loaded = tf.saved_model.load(str(path))
    x = np.random.default_rng(1).integers(0, 255, (2, 40, 56, 3)).astype(np.uint8)
    np.testing.assert_allclose(loaded.serve(x).numpy(), Predictor(model).probs(x), atol=1e-5)
    half = Predictor(model, inference_scale=0.5).probs(x[0])
    assert half.shape == (40, 56, 19)
    np.testing.assert_allclose(half.sum(-1), 1.0, rtol=1e-5)


def test_training_rejects_missing_checkpoint(tmp_path, synth_tfrecords):
    with pytest.raises(FileNotFoundError, match="convert_checkpoint"):
        train(_config(tmp_path, synth_tfrecords, 2, tf_initial_checkpoint=str(tmp_path / "none.npz")))


_TWO_REPLICAS = """
import sys, json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from deeplab.model import ModelOptions
from deeplab.training.trainer import TrainConfig, train
# batch norm frozen and no dropout: a replica's forward pass does not depend on the others, so
# two replicas of 2 examples must take the step one replica of the same 4 examples takes
options = ModelOptions(model_variant="xception_light", fine_tune_batch_norm=False, dropout_keep_prob=1.0)
infos, weights = {}, {}
for strategy in ("mirrored", "default"):
    infos[strategy] = train(TrainConfig(train_logdir=sys.argv[1] + strategy, tfrecord_dir=sys.argv[2],
        model=options, training_number_of_steps=4, base_learning_rate=0.05,
        train_crop_size=(33, 33), train_batch_size=4, seed=0, deterministic=True, strategy=strategy,
        progress=False))
    with np.load(sys.argv[1] + strategy + "/final_weights.npz") as z:
        weights[strategy] = {k: z[k] for k in z.files}
a, b = weights["mirrored"], weights["default"]
assert a.keys() == b.keys()
diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
moved = max(float(np.abs(a[k]).max()) for k in a)
print("RESULT", json.dumps({"replicas": [infos["mirrored"]["replicas"], infos["default"]["replicas"]],
                            "max_diff": diff, "losses": [infos[s]["last_losses"] for s in infos]}))
"""


@pytest.mark.e2e
def test_two_mirrored_replicas_take_the_step_of_one_on_the_same_global_batch(tmp_path, synth_tfrecords):
    out = subprocess.run([sys.executable, "-c", _TWO_REPLICAS, str(tmp_path / "m_"), str(synth_tfrecords)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.split("RESULT", 1)[1])
    assert info["replicas"] == [2, 1]
    np.testing.assert_allclose(info["losses"][0], info["losses"][1], rtol=1e-4)
    assert info["max_diff"] < 1e-4, info


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_MULTI_WORKER = """
import sys, json
from deeplab.model import ModelOptions
from deeplab.training.trainer import TrainConfig, train
info = train(TrainConfig(train_logdir=sys.argv[1], tfrecord_dir=sys.argv[2],
    model=ModelOptions(model_variant="xception_light", batch_norm_decay=0.9),
    training_number_of_steps=int(sys.argv[3]), save_interval_steps=2, base_learning_rate=0.05,
    train_crop_size=(33, 33), train_batch_size=4, seed=0, deterministic=True,
    strategy="multi_worker", progress=False))
print("RESULT", json.dumps(info))
"""


def _start_workers(logdir, tfrecords, steps):
    """Two MultiWorkerMirroredStrategy workers on the loopback (TF_CONFIG), one logdir."""
    ports = [_free_port(), _free_port()]
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen([sys.executable, "-c", _MULTI_WORKER, str(logdir), str(tfrecords),
                                       str(steps)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs):
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    return json.loads(outs[0][0].split("RESULT", 1)[1])


@pytest.mark.e2e
@pytest.mark.slow
def test_training_under_multi_worker_strategy(tmp_path, synth_tfrecords):
    """Two workers train 6 steps; then two workers again, one of them killed after the chief's
    checkpoint at step 2 and the other stopped, both restarted: they resume from the chief's
    checkpoint and end with the uninterrupted run's weights."""
    chief = _finish(_start_workers(tmp_path / "mw", synth_tfrecords, 6))
    assert chief["replicas"] == 2 and chief["steps"] == 6
    whole = checkpoints.read_weights(tmp_path / "mw" / "final_weights.npz")
    logdir = tmp_path / "killed"
    procs = _start_workers(logdir, synth_tfrecords, 6)
    deadline = time.monotonic() + 600
    while not list((logdir / "ckpt").glob("ckpt-2.index")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    procs[1].kill()  # the second worker dies; the chief cannot go on without it
    procs[0].kill()
    for p in procs:
        p.communicate()
    assert not (logdir / "final_weights.npz").exists()
    resumed = _finish(_start_workers(logdir, synth_tfrecords, 6))
    assert resumed["steps"] == 6
    again = checkpoints.read_weights(logdir / "final_weights.npz")
    assert again.keys() == whole.keys()
    for k in whole:
        np.testing.assert_array_equal(again[k], whole[k], err_msg=k)


@pytest.mark.e2e
def test_checkpoints_are_saved_by_time_as_well_as_by_step(tmp_path, synth_tfrecords):
    def kept(logdir):
        return sorted(int(p.name.split("-")[1].split(".")[0]) for p in (logdir / "ckpt").glob("ckpt-*.index"))

    # Steps alone would save only the final checkpoint (1000 > 4 steps); time saves every step.
    train(_config(tmp_path / "a", synth_tfrecords, 4, save_interval_steps=1000, save_interval_secs=0.0))
    assert kept(tmp_path / "a" / "train") == [3, 4]  # every step (two kept)


REPLICAS = """
import sys
import time
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from deeplab.training.inference import Predictor
from deeplab.model import ModelOptions, build_model
model = build_model(ModelOptions(num_classes=5, model_variant="xception_light", aspp_depth=16,
                                 decoder_depth=16))
rng = np.random.default_rng(0)
items = [(f"img{i}", rng.integers(0, 255, (40, 56 + 8 * (i // 3), 3)).astype(np.uint8)) for i in range(7)]
one = list(Predictor(model, batch_size=2).stream(items))
two = Predictor(model, batch_size=2, devices=["/CPU:0", "/CPU:1"])
assert len(two._fns) == 2
both = list(two.stream(items))
assert [n for n, _ in both] == [n for n, _ in items]
for (_, a), (_, b) in zip(one, both):
    np.testing.assert_allclose(a, b, atol=1e-5)
print("ok")
"""


@pytest.mark.e2e
def test_one_inference_replica_per_device_gives_the_same_probs():
    """Several devices (here two logical CPUs, as several GPUs would be): batches run on the
    replicas in turn; results come back in order and equal one replica's."""
    out = subprocess.run([sys.executable, "-c", REPLICAS], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_dataset_dir_flag_points_to_tfrecord_dir(capsys):
    """--dataset_dir is the data root in every script; the trainer and evaluator say so."""
    from deeplab import eval as deeplab_eval
    from deeplab import train as deeplab_train

    for main, first in ((deeplab_eval.main, "--checkpoint_dir"), (deeplab_train.main, "--train_logdir")):
        with pytest.raises(SystemExit) as e:
            main([first, "x", "--dataset_dir", "/data/tfrecord"])
        assert e.value.code == 2
        assert "pass the folder of TFRecords as --tfrecord_dir /data/tfrecord" in capsys.readouterr().err


@pytest.mark.e2e
def test_training_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path, synth_tfrecords):
    """A real training, SIGKILLed once a checkpoint exists and run again, ends with the weights of
    an uninterrupted run, bit for bit: the input stream continues where the checkpoint was (and
    two processes on the same labels and seed train the same model)."""
    import signal
    import time

    steps = 20
    flags = ["--tfrecord_dir", str(synth_tfrecords), "--model_variant", "xception_light",
             "--batch_norm_decay", "0.9", "--training_number_of_steps", str(steps),
             "--base_learning_rate", "0.01", "--train_crop_size", "65,65",
             "--train_batch_size", "4", "--save_interval_steps", "4", "--seed", "0",
             "--deterministic", "true"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))

    def command(logdir):
        return [sys.executable, "-m", "deeplab.train", "--train_logdir", str(logdir)] + flags

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(whole), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    # The manager's `checkpoint` file names a checkpoint once it is complete.
    while not (killed / "ckpt" / "checkpoint").is_file() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "train_done.json").exists(), "the training ended before the kill"
    resumed = subprocess.run(command(killed), check=True, env=env, capture_output=True, text=True)
    assert "resumed from" in resumed.stdout
    with np.load(whole / "final_weights.npz") as a, np.load(killed / "final_weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            assert a[k].tobytes() == b[k].tobytes(), k
    # the same weights (same seed, same labels, two processes) evaluate alike, to the last count
    from deeplab.training.evaluate import evaluate
    from deeplab.training.trainer import load_trained

    ea, eb = (evaluate(load_trained(d)[0], synth_tfrecords, "val", 19, progress=False) for d in (whole, killed))
    assert ea["miou"] == eb["miou"] and ea["confusion_matrix"] == eb["confusion_matrix"]


def test_class_weights_against_a_literal_count():
    """median_frequency from label_counts equals the definition computed image by image in a loop."""
    from deeplab.training import class_weights as CW

    rng = np.random.default_rng(0)
    labels = [rng.choice([0, 1, 1, 1, 2, 255], size=(6, 7)) for _ in range(4)]
    labels[1][:] = 1  # an image with one class only
    C = 4  # class 3 never appears
    class_px, image_px = np.zeros(C, int), np.zeros(C, int)
    for lab in labels:
        a, b = CW.label_counts(lab.astype(np.uint8), C)
        class_px += a
        image_px += b
    freq = {}
    for c in range(C):
        px = sum(int((lab == c).sum()) for lab in labels)
        seen = sum(int((lab != 255).sum()) for lab in labels if (lab == c).any())
        if px:
            freq[c] = px / seen
    med = float(np.median(list(freq.values())))
    expected = [med / freq[c] if c in freq else 1.0 for c in range(C)]
    np.testing.assert_allclose(CW.weights(class_px, image_px, "median_frequency"), expected)
    np.testing.assert_allclose(CW.weights(class_px, image_px, "sqrt_median_frequency"), np.sqrt(expected))
    assert CW.weights(class_px, image_px, "none") is None
    assert expected[1] < 1 < expected[0]  # the frequent class weighs less than the rare one
    with pytest.raises(ValueError, match="no labelled pixel"):
        CW.weights(np.zeros(C), np.zeros(C), "median_frequency")


def test_weighted_cross_entropy_weighs_each_pixel_by_its_class():
    labels = np.array([[[0, 1], [2, 255]]], np.int32)
    logits = tf.constant(np.random.default_rng(1).normal(size=(1, 2, 2, 3)).astype(np.float32))
    s, n = masked_cross_entropy_sum(tf.constant(labels), logits)
    ws, wn = masked_cross_entropy_sum(tf.constant(labels), logits, class_weights=(0.5, 2.0, 3.0))
    lp = tf.nn.log_softmax(logits).numpy()[0]
    terms = [-lp[0, 0, 0], -lp[0, 1, 1], -lp[1, 0, 2]]
    assert float(n) == float(wn) == 3
    np.testing.assert_allclose(float(s), sum(terms), rtol=1e-6)
    np.testing.assert_allclose(float(ws), 0.5 * terms[0] + 2 * terms[1] + 3 * terms[2], rtol=1e-6)
