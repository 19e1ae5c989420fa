"""bash_files/compare.sh end to end on tiny data, and the drivers in its arms' modes: REGIONS
base | adaptive | oracle, ACQUISITION random | class_balanced after the warm-up, SIEVE 0 | 1,
WARM_START 1; identical labels give identical weights across processes. (ACQUISITION=uncertainty
with REGIONS=base, SIEVE=1 and WARM_START=0 runs through both drivers in
tests/test_browser.py, on a folder data set.)"""

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deeplab.active import compare, superpixels
from deeplab.active.experiment import Experiment

ROOT = Path(__file__).parents[1]
TINY = {"ROUNDS": "2", "CLICKS_PER_ROUND": "5%", "TRAIN_STEPS": "6", "TRAIN_CROP_SIZE": "65",
        "TRAIN_BATCH_SIZE": "4", "BASE_LEARNING_RATE": "0.01", "SUPERPIXEL_METHOD": "slic",
        "NUM_WORKERS": "1", "EPS": "0.02"}
ARMS = "full random paper oracle"


def _driver(script, tmp, synth_root, **env):
    full = {**os.environ, "WORK_DIR": str(tmp), "DATA_DIR": str(synth_root), **TINY, **env}
    out = subprocess.run(["bash", f"bash_files/{script}"], cwd=ROOT, env=full, capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, synth_root):
    """A copy of the tiny data set, so that what the drivers leave in it (nothing, checked
    below) cannot reach the other test modules."""
    import shutil

    root = tmp_path_factory.mktemp("compare_data") / "synth"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("superpixels", "tfrecord"))
    return root


@pytest.fixture(scope="module")
def compared(tmp_path_factory, data_root):
    synth_root = data_root
    tmp = tmp_path_factory.mktemp("compare")
    # Every arm trains its own warm-up round here, to show that they are bit-identical.
    out = _driver("compare.sh", tmp, synth_root, JOB_NAME="cmp", SEEDS="3", ARMS=ARMS,
                  SHARE_WARM_UP="0", WARM_START="1")
    return tmp / "cmp", out


def test_compare_writes_csv_png_md(compared):
    cmp_dir, _ = compared
    with open(cmp_dir / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["arm", "seed", "round", "clicks", "miou"]
    assert "iou_road" in rows[0] and "label_noise_after_sieve" in rows[0]
    full = [r for r in rows if r["arm"] == "full"]
    assert len(full) == 1 and full[0]["round"] == ""
    base_total = Experiment.open(cmp_dir / "random_s3").base_regions_total()
    assert int(full[0]["clicks"]) == base_total  # every base superpixel asked once
    budget = round(0.05 * base_total)
    for arm in ("random", "paper", "oracle"):
        mine = [r for r in rows if r["arm"] == arm]
        assert [r["round"] for r in mine] == ["0", "1"] and all(r["seed"] == "3" for r in mine)
        assert int(mine[0]["clicks"]) == budget
        assert budget < int(mine[1]["clicks"]) <= 2 * budget
        assert all(0 <= float(r["miou"]) <= 100 for r in mine)
    md = (cmp_dir / "comparison.md").read_text()
    for arm in ("random", "paper", "oracle"):
        assert f"| {arm} |" in md
    assert "Fully supervised reference" in md and "% of the reference" in md
    assert (cmp_dir / "comparison.png").stat().st_size > 10_000


def test_arms_run_their_modes(compared):
    cmp_dir, _ = compared
    for arm in ("random", "paper", "oracle"):
        exp = Experiment.open(cmp_dir / f"{arm}_s3")
        regions, acq, sieve = compare.ARMS[arm]
        c = exp.config
        assert (c.regions, c.acquisition, int(c.sieve), c.warm_start) == (regions, acq, sieve, True)
        m = exp.manifest(1)
        assert m["select"]["method"] == acq
        assert m["data"]["sieve"] == bool(sieve)
        if not sieve:
            assert m["data"]["sieved_px"] == 0
        # warm start: round 1 starts from round 0's weights
        cfg = json.loads((exp.round_dir(1) / "train" / "train_config.json").read_text())
        assert cfg["tf_initial_checkpoint"].endswith("round_00/train/final_weights.npz")
        name = exp.samples[0].name
        merged, base = exp.load_map(1, name), exp.load_map(0, name)
        if regions == "base":
            np.testing.assert_array_equal(merged, base)
        elif regions == "oracle":
            label = exp.descriptor.read_label(exp.samples[0])
            np.testing.assert_array_equal(merged, superpixels.oracle_superpixels(label))
            assert (exp.oracle_dir / f"{name}.npz").is_file()  # written by the driver
        else:  # unions of base superpixels
            assert len(set(zip(base.ravel().tolist(), merged.ravel().tolist()))) == base.max() + 1
        if acq == "uncertainty":  # taken by descending mean uncertainty
            sel = json.loads((exp.round_dir(1) / "selection.json").read_text())["regions"]
            scores = [r["score"] for r in sel]
            assert scores == sorted(scores, reverse=True)
        # the collapse warning is given exactly when the merge left under a quarter of the regions
        r = m["regions"]
        collapsed = regions == "adaptive" and r["regions_per_image_after"] < 0.25 * r["regions_per_image_before"]
        assert ("warning" in r) == collapsed


def test_identical_labels_give_identical_weights_across_processes(compared):
    cmp_dir, _ = compared
    jobs = [Experiment.open(cmp_dir / f"{arm}_s3") for arm in ("random", "paper", "oracle")]
    ref = jobs[0]
    with np.load(ref.round_dir(0) / "train" / "final_weights.npz") as z:
        w0 = {k: z[k].tobytes() for k in z.files}
    ev0 = json.loads((ref.round_dir(0) / "eval.json").read_text())
    rows0 = [r for r in ref.ledger.read() if r["round"] == 0]
    for exp in jobs[1:]:
        assert [r for r in exp.ledger.read() if r["round"] == 0] == rows0
        with np.load(exp.round_dir(0) / "train" / "final_weights.npz") as z:
            assert {k: z[k].tobytes() for k in z.files} == w0
        assert json.loads((exp.round_dir(0) / "eval.json").read_text()) == ev0


def test_collapse_warning_reaches_the_output(compared):
    cmp_dir, out = compared
    m = Experiment.open(cmp_dir / "paper_s3").manifest(1)["regions"]
    if "warning" in m:
        assert "WARNING: round 1: the adaptive merge left" in out.stderr
        assert "too weak for eps=0.02" in out.stderr
    # TensorFlow's start-up notices are kept out of the drivers' output
    assert "cuInit" not in out.stderr and "absl::InitializeLog" not in out.stderr


def test_compare_resumes_without_redoing_work(compared, data_root):
    cmp_dir, _ = compared
    before = (cmp_dir / "comparison.csv").read_text()
    ledger = (cmp_dir / "paper_s3" / "ledger.jsonl").read_text()
    out = _driver("compare.sh", cmp_dir.parent, data_root, JOB_NAME="cmp", SEEDS="3", ARMS=ARMS,
                  SHARE_WARM_UP="0", WARM_START="1")
    assert "train done" not in out.stdout and "already complete" in out.stdout
    assert (cmp_dir / "comparison.csv").read_text() == before
    assert (cmp_dir / "paper_s3" / "ledger.jsonl").read_text() == ledger


def test_shared_warm_up_equals_own(compared, tmp_path):
    """A shared warm-up round is the one the arm would have trained itself."""
    cmp_dir, _ = compared
    import shutil

    for arm in ("random", "paper"):
        job = tmp_path / f"{arm}_s3"
        shutil.copytree(cmp_dir / f"{arm}_s3", job, ignore=shutil.ignore_patterns("round_*", "ledger.jsonl"))
        config = json.loads((job / "config.json").read_text())
        (job / "config.json").write_text(json.dumps({**config, "job_dir": str(job)}))
    msg = compare.share_warm_up(tmp_path / "random_s3", tmp_path / "paper_s3")
    assert "has not finished" in msg and not (tmp_path / "paper_s3" / "round_00").exists()
    msg = compare.share_warm_up(cmp_dir / "random_s3", tmp_path / "paper_s3")
    assert "shared" in msg
    shared = Experiment.open(tmp_path / "paper_s3")
    own = Experiment.open(cmp_dir / "paper_s3")
    ms, mo = shared.manifest(0), own.manifest(0)
    for stage in ("select", "annotate", "data", "eval"):
        assert ms[stage] == mo[stage]
    assert ms["train"]["final_loss"] == mo["train"]["final_loss"]  # bit-identical training
    assert [r for r in own.ledger.read() if r["round"] == 0] == shared.ledger.read()
    assert not (shared.round_dir(0) / "tfrecord").exists()
    assert "has its own" in compare.share_warm_up(cmp_dir / "random_s3", tmp_path / "paper_s3")


@pytest.mark.parametrize("arms,seeds,message", [
    ("random entropy", "0", "unknown arm(s) entropy"),
    ("random random", "0", "lists an arm twice"),
    ("random", "0 x", "SEEDS must be integers"),
])
def test_compare_refuses_bad_arms_and_seeds(tmp_path, data_root, arms, seeds, message):
    full = {**os.environ, "WORK_DIR": str(tmp_path), "DATA_DIR": str(data_root), "JOB_NAME": "bad",
            "ARMS": arms, "SEEDS": seeds}
    out = subprocess.run(["bash", "bash_files/compare.sh"], cwd=ROOT, env=full, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and message in out.stderr
    assert not (tmp_path / "bad").exists()


def test_drivers_write_nothing_into_the_data_root(compared, data_root, synth_root):
    """Superpixel maps and val TFRecords go to the cache under WORK_DIR, never into DATA_DIR."""
    def files(root):
        return {p.relative_to(root) for p in Path(root).rglob("*")
                if p.is_file() and p.relative_to(root).parts[0] != "tfrecord"}

    assert files(data_root) == files(synth_root)
    work_dir = compared[0].parent
    assert any(work_dir.glob("cache/*/superpixels/*/train/*/*.npz"))
    assert any(work_dir.glob("cache/*/tfrecord/val.meta.json"))
