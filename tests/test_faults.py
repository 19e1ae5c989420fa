"""Faults and bad input met from outside (damaged job files, names the file system refuses,
settings the data cannot hold): each gets one line naming the file or value and the fix, and
loses nothing."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import human_job

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("text, words", [("[1, 2]", "holds a JSON list, not an object"),
                                         ('{"select": ', "is not valid JSON"),
                                         ("\udcff", "is not")])
def test_a_damaged_manifest_or_config_is_named_with_the_fix(tmp_path, synth_root, text, words):
    from deeplab.experiment.settings import ExperimentConfig
    from deeplab.experiment.job import Job

    exp = human_job(tmp_path, synth_root)
    manifest = exp.round_dir(0) / "manifest.json"
    kept = manifest.read_bytes()
    manifest.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match="manifest.json " + words) as e:
        exp.manifest(0)
    assert str(exp.round_dir(0)) in str(e.value) and "to run round 0 again" in str(e.value)
    manifest.write_bytes(kept)
    config = exp.job_dir / "config.json"
    config.write_bytes(text.encode("utf-8", "surrogateescape"))
    for call in (lambda: ExperimentConfig.load(exp.job_dir), lambda: Job.open(exp.job_dir)):
        with pytest.raises(ValueError, match="config.json " + words + r".*new JOB_NAME"):
            call()


def test_a_script_on_a_damaged_manifest_says_one_line(tmp_path, synth_root):
    exp = human_job(tmp_path, synth_root)
    manifest = exp.round_dir(0) / "manifest.json"
    manifest.write_text("[]")
    out = subprocess.run([sys.executable, "scripts/select_regions.py", "--job_dir", str(exp.job_dir),
                          "--round", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert str(manifest) in last and "holds a JSON list" in last
    assert manifest.read_text() == "[]"  # nothing overwritten


def test_an_image_name_of_250_characters_goes_through_the_cache(tmp_path, synth_root):
    """A legal file name near the 255-byte limit: the atomic writes' temporary names must not
    push it over (they used to add a prefix and a suffix to the whole name)."""
    from deeplab import io_utils
    from deeplab.experiment import tasks
    from deeplab.experiment.settings import ExperimentConfig
    from deeplab.experiment.job import Job
    from deeplab.experiment.stages import select_stage
    from helpers import make_folder_dataset

    target = tmp_path / ("n" * 251 + ".npz")  # 255 bytes
    io_utils.write_bytes(target, b"x")
    assert target.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [target.name]
    root = make_folder_dataset(synth_root, tmp_path / "data", labels=True, splits=False,
                               num_train=2, num_val=1, nested=False, jpeg_every=0)
    long = "a" * 246  # + ".png" = 250 characters
    first = sorted((root / "images").glob("*.png"))[0]
    first.rename(first.with_name(long + ".png"))
    (root / "labels" / first.name).rename(root / "labels" / f"{long}.png")
    config = ExperimentConfig(job_dir=str(tmp_path / "job"), dataset="folder", dataset_dir=str(root),
                              clicks_per_round=4, superpixel_method="slic",
                              superpixel_size_px=128.0, seed=1, num_workers=1).validate()
    config.save_or_check()
    exp = Job(config)
    assert long in {s.name for s in exp.samples}
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_stage(exp, 0, progress=False))
    assert exp.load_map(0, long).shape == (64, 128)


@pytest.mark.parametrize("name", ["ARMS", "SEEDS"])
def test_compare_sh_refuses_an_empty_arms_or_seeds(tmp_path, name):
    """ARMS='' is a mistake, not a request for the default benchmark (which builds a pool of
    400 scenes and trains for an hour): refused before anything is written."""
    import os

    env = dict(os.environ, WORK_DIR=str(tmp_path / "work"), **{name: ""})
    out = subprocess.run(["bash", "bash_files/compare.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and f"{name} is empty" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and not (tmp_path / "work").exists()


def test_nothing_is_generated_into_a_data_dir_the_user_named(tmp_path):
    """DATASET=synthetic (the default) with DATA_DIR set to an empty folder of the user's: refused
    in one line, the folder left empty (it used to receive 130 generated scenes)."""
    mine = tmp_path / "my_images"
    mine.mkdir()
    out = subprocess.run([sys.executable, "scripts/init_experiment.py", "--job_dir", str(tmp_path / "job"),
                          "--dataset", "synthetic", "--dataset_dir", str(mine)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert str(mine) in last and "make_synthetic.py" in last
    assert list(mine.iterdir()) == [] and not (tmp_path / "job").exists()


def test_one_process_runs_a_jobs_stages_and_one_driver_a_job(tmp_path, synth_root):
    """A second process on a job whose stages another runs stops with one line naming the
    holder; so does a second driver; a killed holder leaves no lock behind."""
    import os
    import signal

    exp = human_job(tmp_path, synth_root)
    code = ("import sys, time\nfrom deeplab.experiment.locks import job_lock\n"
            f"with job_lock({str(exp.job_dir)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = subprocess.run([sys.executable, "scripts/annotate_regions.py", "--job_dir", str(exp.job_dir),
                              "--round", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        last = out.stderr.strip().splitlines()[-1]
        assert f"job {exp.job_dir} is being run by another process (pid {holder.pid}" in last
        assert exp.ledger.read() == []
    finally:
        holder.kill()
        holder.wait()
    from deeplab.experiment.locks import job_lock

    with job_lock(exp.job_dir):  # released with the process that held it
        pass
    # the drivers: lock_job of bash_files/settings.sh
    script = (f'set -euo pipefail; source bash_files/settings.sh; JOB_DIR={str(exp.job_dir)!r}; '
              'lock_job; echo locked; sleep 60')
    first = subprocess.Popen(["bash", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert first.stdout.readline().strip() == "locked"
        out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "locked" not in out.stdout
        assert f"job {exp.job_dir} is being run by another process (pid {first.pid}" in out.stderr
        # one lock per job: a stage run by hand meanwhile is refused too, naming the driver ...
        out = subprocess.run([sys.executable, "scripts/annotate_regions.py", "--job_dir", str(exp.job_dir),
                              "--round", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and f"is being run by another process (pid {first.pid}" in out.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # ... while a stage the driver starts, directly or under the STAGE_LOG wrapper, runs under the
    # lock its driver holds, which still names the driver
    take = (f"from deeplab.experiment.locks import job_lock\nwith job_lock({str(exp.job_dir)!r}):\n"
            "    print('stage ran')")
    for run in ('"$PYTHON" -c "$TAKE"', f'"$PYTHON" -m deeplab.experiment.stage_log --log {tmp_path}/s.jsonl -- -c "$TAKE"'):
        inside = script.replace("echo locked; sleep 60", f'echo locked; {run}; echo $$; cat "$JOB_DIR/job.lock"')
        out = subprocess.run(["bash", "-c", inside], cwd=ROOT, env=dict(os.environ, TAKE=take),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[:2] == ["locked", "stage ran"] and lines[3].startswith(f"pid {lines[2]} on ")
    out = subprocess.run(["bash", "-c", script.replace("sleep 60", "true")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "locked"
    # a driver killed while a stage it started still ends (that stage holds the lock for a few
    # seconds): the next driver, started at once, waits for the lock instead of refusing
    import time

    orphan = script.replace("echo locked; sleep 60", "(exec sleep 3) & echo locked; sleep 60")
    first = subprocess.Popen(["bash", "-c", orphan], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert first.stdout.readline().strip() == "locked"
        os.kill(first.pid, signal.SIGKILL)  # the driver alone: its `sleep` lives on, holding the lock
        first.wait()
        start = time.monotonic()
        out = subprocess.run(["bash", "-c", script.replace("sleep 60", "true")], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        waited = time.monotonic() - start
    finally:
        os.killpg(first.pid, signal.SIGKILL)
    assert out.returncode == 0 and out.stdout.strip() == "locked", out.stderr
    assert f"its last driver (pid {first.pid}) is gone; waiting" in out.stderr
    assert waited > 1.0  # it did wait for the orphan, which the old driver refused
    # ... but not forever: an orphan that outlives LOCK_WAIT_SECS is named as the cause
    first = subprocess.Popen(["bash", "-c", orphan.replace("sleep 3", "sleep 30")], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert first.stdout.readline().strip() == "locked"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        out = subprocess.run(["bash", "-c", "LOCK_WAIT_SECS=1; " + script.replace("sleep 60", "true")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
    assert out.returncode == 2 and "still locked 1 s after its driver" in out.stderr


def _ctrl_c_default():
    """In the child, before exec: SIGINT back to its default. A test run started in the background
    (`pytest &`, nohup, some CI runners) hands its children SIGINT ignored, and bash cannot undo
    an ignore it inherits, so without this a Ctrl-C test would test nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _driver_shell(tmp_path, body: str):
    """A bash that sources bash_files/settings.sh and runs `py` on a script that prints its pid,
    then waits inside cli.guarded (as every script does), in a session of its own."""
    script = tmp_path / "waits.py"
    script.write_text("import os, sys, time\nfrom deeplab import cli\n"
                      "def work():\n    print(os.getpid(), flush=True)\n    time.sleep(60)\n    return 0\n"
                      "sys.exit(cli.guarded(work, what='round 9: train'))\n")
    return subprocess.Popen(["bash", "-c", f"set -euo pipefail; source bash_files/settings.sh; {body} {script}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_ctrl_c_default)


def _gone(pid, secs=10.0):
    import os
    import time

    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_in_a_driver_ends_on_the_scripts_stopped_line(tmp_path):
    """Ctrl-C (SIGINT to the process group) while a driver's script runs: the script's one
    'stopped' line reaches the terminal through the driver's stderr filter, and the driver
    exits 130 (it used to exit 1 with the line lost)."""
    import os
    import signal

    driver = _driver_shell(tmp_path, "py")
    pid = int(driver.stdout.readline())
    os.killpg(driver.pid, signal.SIGINT)
    _, err = driver.communicate(timeout=30)
    assert driver.returncode == 130, err
    assert "stopped (round 9: train): what is saved stays saved" in err and "Traceback" not in err
    assert _gone(pid)


def test_a_script_ends_with_the_driver_that_started_it(tmp_path):
    """SIGTERM to the driver's shell alone: the script it was running ends too (it used to run
    on as an orphan, a second writer beside a rerun)."""
    import os
    import signal

    driver = _driver_shell(tmp_path, "py")
    pid = int(driver.stdout.readline())
    try:
        os.kill(driver.pid, signal.SIGTERM)
        driver.wait(timeout=30)
        assert _gone(pid), "the script outlived its driver"
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_ctrl_c_in_a_pooled_stage_stops_at_once_and_resumes(tmp_path):
    """SIGINT to the process group while superpixels run on a pool of two workers: the stage
    stops within seconds with one line and 130 (it used to hang in the pool's shutdown until a
    third Ctrl-C); run again, it writes the rest."""
    import os
    import signal
    import time

    from deeplab.datasets import synthetic

    root = synthetic.generate(tmp_path / "data", num_train=300, num_val=1, height=96, width=192, seed=5)
    out_dir = tmp_path / "maps"
    cmd = [sys.executable, "scripts/extract_superpixels.py", "--dataset", "synthetic", "--dataset_dir",
           str(root), "--method", "slic", "--output_dir", str(out_dir), "--num_workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_ctrl_c_default)
    try:
        deadline = time.monotonic() + 120
        while len(list(out_dir.rglob("*.npz"))) < 10:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "stopped: what is saved stays saved" in err and "Traceback" not in err
    done = len(list(out_dir.rglob("*.npz")))
    assert done < 300
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and f"{300 - done} maps written, {done} already there" in rerun.stdout, rerun.stdout[-500:]
    assert len(list(out_dir.rglob("*.npz"))) == 300


def _examples(shards):
    """Every record's features (a protobuf map: its serialised order may differ between builds)."""
    import tensorflow as tf

    out = []
    for shard in shards:
        for raw in tf.data.TFRecordDataset(str(shard)).as_numpy_iterator():
            feats = tf.train.Example.FromString(raw).features.feature
            out.append({k: feats[k].SerializeToString(deterministic=True) for k in sorted(feats)})
    return out


def test_a_damaged_val_tfrecord_is_named_and_rebuilt(tmp_path, synth_root):
    """A val shard with a flipped byte, or cut short: evaluation's check names it (instead of
    TensorFlow's DataLossError), and the drivers' build step rebuilds it (it used to report
    'complete TFRecords ... skipped' for ever)."""
    from deeplab.datasets import get_dataset, tfrecord

    out = tmp_path / "rec"
    cmd = [sys.executable, "scripts/build_tfrecords.py", "--dataset", "synthetic", "--dataset_dir",
           str(synth_root), "--splits", "val", "--output_dir", str(out), "--skip_existing"]
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    names = [s.name for s in get_dataset("synthetic").list_split(synth_root, "val")]
    shards = tfrecord.list_shards(out, "val")
    original = {s: Path(s).read_bytes() for s in shards}
    first = _examples(shards)
    for damage in (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], lambda b: b[: len(b) // 2]):
        Path(shards[1]).write_bytes(damage(original[shards[1]]))
        with pytest.raises(ValueError, match=f"TFRecord {shards[1]} is damaged.*driver again"):
            tfrecord.check_meta(out, "val", names, fix="run the driver again")
        rebuilt = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert rebuilt.returncode == 0 and f"{shards[1]} is damaged" in rebuilt.stdout, rebuilt.stdout
        assert _examples(tfrecord.list_shards(out, "val")) == first  # as built
        tfrecord.check_meta(out, "val", names, fix="-")
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "complete TFRecords" in again.stdout


@pytest.mark.e2e  # trains the stand-in (tiny) twice
def test_a_damaged_stand_in_is_built_again_and_damaged_weights_are_named(tmp_path, capsys):
    import numpy as np

    from deeplab.training import checkpoints, standin

    config = standin.StandinConfig(num_images=4, num_val=2, steps=2, height=64, width=128,
                                   crop_size=65, batch_size=2)
    path = standin.build(config, work_dir=tmp_path / "work", models_dir=tmp_path / "models",
                         progress=False)
    original = checkpoints.read_weights(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"weights file {path} is damaged .*build_standin.py"):
        checkpoints.read_weights(path)
    assert standin.build(config, work_dir=tmp_path / "work", models_dir=tmp_path / "models",
                         progress=False) == path
    assert f"stand-in backbone {path} is damaged: building it again" in capsys.readouterr().err
    again = checkpoints.read_weights(path)
    assert again.keys() == original.keys()
    for k in original:
        np.testing.assert_array_equal(again[k], original[k])
    other = tmp_path / "converted.npz"
    other.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=f"weights file {other} is damaged .*convert_checkpoint.py"):
        checkpoints.read_weights(other)


def test_a_stand_in_that_is_there_is_checked_without_tensorflow(tmp_path):
    """A driver's stand-in step on a finished stand-in reads the file whole and prints its path
    without importing TensorFlow or Keras (it took 5-7 s each time a driver started)."""
    import numpy as np

    from deeplab.training import standin

    path = standin.weights_path(standin.StandinConfig(), tmp_path / "models")
    path.parent.mkdir()
    np.savez(path, **{"xception_65/entry_flow/conv1_1/weights": np.ones((3, 3, 3, 2), np.float32)})
    code = ("import sys; from deeplab.training import standin; "
            f"print(standin.build(work_dir={str(tmp_path / 'work')!r}, models_dir={str(path.parent)!r})); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [str(path), "[]"]
    assert not (tmp_path / "work").exists()  # nothing was built


def test_a_full_disk_at_the_ledger_names_it_and_records_nothing(tmp_path, monkeypatch):
    import errno
    import os

    from deeplab.experiment.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.jsonl")
    row = {"round": 0, "image": "a", "region": 1, "answer": 2, "size": 10, "score": 0.5, "cost": 1}
    ledger.append([row])
    kept = ledger.path.read_bytes()
    real_write = os.write

    def full(fd, data):  # half of it fits, then the disk is full
        if len(data) > 10:
            real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match=f"cannot append to the ledger {ledger.path} .*No space left.*"
                                      "none of these answers was recorded"):
        ledger.append([dict(row, region=2), dict(row, region=3)])
    monkeypatch.undo()
    assert ledger.path.read_bytes() == kept
    ledger.append([dict(row, region=2)])  # space freed: it goes on
    assert [r["region"] for r in ledger.read()] == [1, 2]


@pytest.mark.e2e  # trains (tiny) twice
def test_a_full_disk_in_a_checkpoint_names_the_folder_and_leaves_no_partial_save(
        tmp_path, synth_root, monkeypatch):
    import tensorflow as tf

    from deeplab.datasets import build_data, get_dataset
    from deeplab.model import ModelOptions
    from deeplab.training.trainer import TrainConfig, train

    ds = get_dataset("synthetic")
    rec = tmp_path / "rec"
    build_data.build_split(ds, ds.list_split(synth_root, "train")[:4], rec, "train", num_shards=1,
                           progress=False)
    config = TrainConfig(train_logdir=str(tmp_path / "train"), tfrecord_dir=str(rec),
                         model=ModelOptions(model_variant="xception_light", num_classes=19),
                         training_number_of_steps=4, train_crop_size=(33, 33), train_batch_size=2,
                         save_interval_steps=2, seed=0, progress=False)
    real_save = tf.train.CheckpointManager.save

    def full(self, checkpoint_number=None, **kw):
        if checkpoint_number == 2:
            partial = Path(self.directory) / "ckpt-2_temp"
            partial.mkdir(parents=True)
            (partial / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 100)
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return real_save(self, checkpoint_number=checkpoint_number, **kw)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    ckpt_dir = tmp_path / "train" / "ckpt"
    with pytest.raises(OSError, match=f"cannot write checkpoint 2 into {ckpt_dir} .*No space left"):
        train(config)
    assert not list(ckpt_dir.glob("*_temp*"))
    monkeypatch.undo()
    assert train(config)["steps"] == 4  # space freed: the round trains
    # a damaged checkpoint cannot be made again: named, with the fix, not a DataLossError
    (tmp_path / "train" / "train_done.json").unlink()
    data = next(ckpt_dir.glob("ckpt-4.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    with pytest.raises(RuntimeError, match=f"checkpoint {ckpt_dir}/ckpt-4 is damaged .*delete its files"):
        train(config)


def test_a_full_disk_in_the_val_tfrecords_names_the_shard(tmp_path, synth_root, monkeypatch):
    import tensorflow as tf

    from deeplab.datasets import build_data, get_dataset, tfrecord

    class FullDisk(tf.io.TFRecordWriter):  # TensorFlow's writer, on a disk that fills up
        def write(self, record):
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDisk)
    ds = get_dataset("synthetic")
    with pytest.raises(OSError, match=f"cannot write TFRecord shard {tmp_path / 'rec'}/val-00000-of-00002"
                                      ".*No space left.*free space and run again"):
        build_data.build_split(ds, ds.list_split(synth_root, "val"), tmp_path / "rec", "val",
                               num_shards=2, progress=False)
    assert tfrecord.read_meta(tmp_path / "rec", "val") is None and not list((tmp_path / "rec").glob("*.tmp"))


def test_only_expected_errors_are_one_line(capsys):
    """Bad input and named faults (`deeplab.errors.UserError`: a bad value, a missing file, a full
    disk, a job's state, a missing optional package) are one line and exit status 2, and each is
    still the built-in error it names; anything else keeps its traceback: a defect (KeyError,
    ZeroDivisionError, TypeError) and a library's own ValueError or OSError that the code did not
    turn into a named error. The one OSError shown as one line is the system's refusal of a file
    it names (a full disk, no permission)."""
    from deeplab import cli, errors

    def fails(e):
        def run():
            raise e
        return run

    for e, builtin in ((errors.BadInput("bad value x"), ValueError),
                       (errors.MissingFile("no file y"), FileNotFoundError),
                       (errors.Unavailable(28, "cannot write z: free space"), OSError),
                       (errors.CannotContinue("busy z"), RuntimeError),
                       (errors.MissingPackage('EXECUTOR=ray needs Ray: pip install -e ".[ray]"'), ImportError)):
        assert isinstance(e, builtin)
        assert cli.guarded(fails(e), what="stage") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(e) in err[0]
    # the system's refusal of a file it names: the machine's state, one line naming the file
    import errno

    for e in (PermissionError(errno.EACCES, "Permission denied", "/w/job/config.json"),
              OSError(errno.ENOSPC, "No space left on device", "/w/job/round_00/labels/a.png"),
              FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/work")):
        assert cli.guarded(fails(e), what="stage") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and e.filename in err[0] and e.strerror in err[0]
    for e in (KeyError("k"), ZeroDivisionError("z"), TypeError("t"), IndexError("i"),
              ValueError("operands could not be broadcast"), OSError("a library's own"),
              OSError(errno.ENOSPC, "No space left on device")):  # no file named: not shown as one
        with pytest.raises(type(e)):
            cli.guarded(fails(e))


def test_stage_lines_are_words():
    """The drivers print a stage's figures in words (the manifest keeps the numbers); a manifest
    of unknown shape falls back to its figures, long lists by length, never a raw dict."""
    from deeplab.cli import describe_stage

    select = {"method": "random", "budget": 1817, "spent": 1817, "pool": 60553, "regions_total": 60553,
              "exhausted": False, "base_regions_total": 60553, "regions_per_image": 164.99,
              "mean_region_px": 261.83, "pool_px_quartiles": [185.0, 259.0, 332.0]}
    assert describe_stage("select", select) == \
        "1,817 regions asked of 60,553 (random; 165.0 regions per image, 262 px on average)"
    annotate = {"answers": 1000, "clicks": 1000, "labelled_answers": 990, "rows_sha256": ["ab"] * 1000}
    assert describe_stage("annotate", annotate) == "1,000 answers, 990 of them with a class, 1,000 clicks"
    data = {"images": 20, "labelled_px": 152084, "labelled_px_before_sieve": 163840, "min_size_px": 486,
            "noise_after": 0.6729, "noise_before": 0.68979, "sieve": True, "sieved_px": 11756,
            "sieved_wrong_share": 0.90839}
    assert describe_stage("data", data) == (
        "20 images, 152,084 labelled px after sieving removed 11,756 px (90.8 % of them wrongly "
        "labelled); wrong labels 68.98 % before sieving, 67.29 % after")
    assert describe_stage("eval", {"miou": 0.4738}) == "mIoU 47.38 %"
    assert describe_stage("eval", {"miou": None, "evaluated": False, "reason": "no val split"}) == \
        "not evaluated: no val split"
    odd = describe_stage("train", {"steps": 5, "digest": ["x"] * 20})  # a key missing: plain figures
    assert odd == "steps 5, digest 20 entries" and "{" not in odd


def test_a_truncated_round_weights_file_is_named_with_advice_that_fits(tmp_path):
    """A round's own final_weights.npz, truncated: the advice is to train the round again (its
    train folder deleted), not to copy or convert a checkpoint."""
    import numpy as np

    from deeplab.training import checkpoints

    path = tmp_path / "job" / "round_01" / "train" / "final_weights.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, a=np.arange(1000.0))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=f"this round's own training wrote it: delete {path.parent}") as e:
        checkpoints.read_weights(path)
    assert "convert" not in str(e.value)
    other = tmp_path / "models" / "mine.npz"  # any other weights file: copy or convert it again
    other.parent.mkdir()
    other.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="copy it again from where it came from"):
        checkpoints.read_weights(other)


def test_init_checkpoint_that_is_no_checkpoint_is_refused_at_the_start(tmp_path):
    """INIT_CHECKPOINT naming an existing file that holds no weights is refused when the job is
    made (init_experiment), in one line, not at the first training."""
    import subprocess
    import sys
    import zipfile

    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    data.write_bytes(b"\0" * 64)
    fake_npz = tmp_path / "fake.npz"
    fake_npz.write_bytes(b"PK but not a zip")
    other_zip = tmp_path / "other.npz"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    for path, message in ((text, "is neither a weights file"), (data, "name the checkpoint's prefix"),
                          (fake_npz, "is not a readable weights file"), (other_zip, "holds no weight arrays")):
        job = tmp_path / "w" / path.stem
        out = subprocess.run([sys.executable, "scripts/init_experiment.py", "--job_dir", str(job),
                              "--work_dir", str(tmp_path / "w"), "--init_checkpoint", str(path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr, (path, out.stderr[-500:])
        assert len(out.stderr.strip().splitlines()) == 1 and not (job / "config.json").exists()


def test_a_script_under_the_stage_log_wrapper_ends_with_its_driver(tmp_path):
    """STAGE_LOG puts a wrapper between the driver and each script: SIGTERM to the driver ends
    the wrapper and the script too (neither runs on as a second writer holding the job)."""
    import signal
    import subprocess
    import sys
    import time

    started, finished = tmp_path / "started", tmp_path / "finished"
    code = ("from deeplab.cli import follow_driver; follow_driver(); import pathlib, time; "
            f"pathlib.Path({str(started)!r}).touch(); time.sleep(20); pathlib.Path({str(finished)!r}).touch()")
    driver = subprocess.Popen(
        ["bash", "-c", f'export AL_DRIVER_PID=$$; "{sys.executable}" -m deeplab.experiment.stage_log '
                       f'--log "{tmp_path / "stages.jsonl"}" -- -c "$0"; echo after', code],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-f", str(started)], capture_output=True, text=True).stdout.split()
    assert children  # the wrapper and the script, running
    driver.send_signal(signal.SIGTERM)
    driver.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", str(started)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the script outlived its driver"
        time.sleep(0.05)
    time.sleep(0.5)
    assert not finished.exists()


def _descendants(pid: int) -> set[int]:
    """The processes below `pid` now (from /proc's children lists)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with __import__("contextlib").suppress(OSError):
                kids = {int(k) for k in task.read_text().split()}
                todo += list(kids - out)
                out |= kids
    return out


def test_a_stopped_comparison_ends_its_arms_and_records_its_time(tmp_path, data_root):
    """SIGTERM to compare.sh while two arms run side by side in the background: every round
    driver and script below it ends, the run ends with status 130 and one 'stopped' line, and
    its wall time is in wall_clock.txt (P8 counts stopped runs too)."""
    import os
    import signal
    import time

    from helpers import TINY_COMPARE

    env = {**os.environ, **TINY_COMPARE, "WORK_DIR": str(tmp_path), "DATA_DIR": str(data_root),
           "JOB_NAME": "cmp", "SEEDS": "0", "ARMS": "random paper", "PARALLEL_ARMS": "2",
           "STANDIN": "0", "NUMERICS_CHECK": "0", "PYTHONPATH": str(ROOT), "ROUNDS": "4"}
    proc = subprocess.Popen(["bash", "bash_files/compare.sh"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        log = tmp_path / "cmp" / "logs" / "paper_s0.log"
        deadline = time.monotonic() + 300
        while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # the arms' drivers start their scripts
        below = _descendants(proc.pid)
        assert proc.poll() is None and len(below) >= 4, proc.communicate()  # 2 drivers, 2 scripts
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "stopped: what is saved stays saved" in err and "Traceback" not in err
    # at once (each arm has three rounds to go): the driver waited for its round drivers, and
    # their scripts end with them
    assert all(_gone(p, 5) for p in below), "a round driver or script outlived the comparison"
    start, end = map(int, (tmp_path / "cmp" / "wall_clock.txt").read_text().split())
    assert 0 < end - start < 600
