"""Faults and bad input met from outside (damaged job files, names the file system refuses,
settings the data cannot hold): each gets one line naming the file or value and the fix, and
loses nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import human_job

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("text, words", [("[1, 2]", "holds a JSON list, not an object"),
                                         ('{"select": ', "is not valid JSON"),
                                         ("\udcff", "is not")])
def test_a_damaged_manifest_or_config_is_named_with_the_fix(tmp_path, synth_root, text, words):
    from deeplab.experiment.config import ExperimentConfig
    from deeplab.experiment.job import Experiment

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
    for call in (lambda: ExperimentConfig.load(exp.job_dir), lambda: Experiment.open(exp.job_dir)):
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
    from deeplab.experiment.config import ExperimentConfig
    from deeplab.experiment.job import Experiment
    from deeplab.experiment.stages import select_round
    from conftest import make_folder_dataset

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
                              superpixel_size_px=128.0, seed=1).validate()
    config.save_or_check()
    exp = Experiment(config)
    assert long in {s.name for s in exp.samples}
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_round(exp, 0, progress=False))
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
        assert f"job {exp.job_dir} is being run by another driver (pid {first.pid}" in out.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    out = subprocess.run(["bash", "-c", script.replace("sleep 60", "true")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "locked"
