"""bash_files/paper_check.sh in a tiny form on the CPU (the paper's setting is for a GPU), its
report script, and the stage log every stage runs through when STAGE_LOG is set."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import paper_check  # noqa: E402

from deeplab.experiment import stage_log  # noqa: E402

# Every stage of a round (warm-up: no adaptive superpixels) as paper_check.py names them.
ROUND_STAGES = ("select_regions", "annotate_regions", "build_round_data", "train_round", "eval_round")


def test_stage_log_records_time_memory_and_exit_status(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("import sys, numpy as np\n"
                      "a = np.ones(64 * 2 ** 20, np.uint8)  # 64 MiB, touched\n"
                      "sys.exit(3 if sys.argv[1:] == ['--round', '4'] else 0)\n")
    log = tmp_path / "stages.jsonl"
    out = subprocess.run([sys.executable, "-m", "deeplab.experiment.stage_log", "--log", str(log),
                          "--", str(script), "--round", "4"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 3, out.stderr  # the script's status passes through
    assert stage_log.run_logged(log, [str(script)]) == 0
    with open(log, "a") as f:
        f.write('{"script": "torn')  # a run stopped mid-write leaves no whole record
    first, second = stage_log.read_log(log)
    assert first["script"] == "stage" and first["args"] == ["--round", "4"] and first["rc"] == 3
    assert second["args"] == [] and second["rc"] == 0
    for r in (first, second):
        assert r["max_rss_mb"] >= 64 and 0 < r["cpu_seconds"] and r["seconds"] > 0
    rows = paper_check.stage_rows([dict(first, script="select_regions"), dict(second, script="train_round")],
                                  {"train": 8, "val": 2})
    assert rows[0]["round"] == 4 and rows[0]["images"] == 8
    assert rows[0]["seconds_per_image"] == first["seconds"] / 8
    assert rows[1]["round"] is None and rows[1]["seconds_per_image"] is None  # once per job


def test_same_weights_is_bit_for_bit(tmp_path):
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
    np.savez(tmp_path / "a.npz", **a)
    np.savez(tmp_path / "b.npz", **a)
    assert paper_check.same_weights(tmp_path / "a.npz", tmp_path / "b.npz") == \
        {"identical": True, "max_abs_difference": 0.0, "arrays": 2}
    c = dict(a, w=a["w"] + np.float32(1e-6) * (a["w"] == 5))  # one bit of one value
    np.savez(tmp_path / "c.npz", **c)
    d = paper_check.same_weights(tmp_path / "a.npz", tmp_path / "c.npz")
    assert d["identical"] is False and 0 < d["max_abs_difference"] < 1e-5
    np.savez(tmp_path / "e.npz", w=a["w"])
    assert "different variables" in paper_check.same_weights(tmp_path / "a.npz", tmp_path / "e.npz")["why"]


@pytest.mark.e2e
def test_paper_check_tiny_on_the_cpu(tmp_path):
    env = dict(os.environ, WORK_DIR=str(tmp_path / "work"), PAPER_TRAIN="2", PAPER_VAL="1",
               PAPER_HEIGHT="64", PAPER_WIDTH="128", MODEL_VARIANT="xception_light",
               TRAIN_CROP_SIZE="65", TRAIN_BATCH_SIZE="2", TRAIN_STEPS="2", NUM_SUPERPIXELS="32",
               INFERENCE_IMAGES="1", NUM_WORKERS="1", TQDM_DISABLE="1", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(["bash", "bash_files/paper_check.sh"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    check = tmp_path / "work" / "paper_check"
    report = json.loads((check / "paper_check.json").read_text())
    s = report["setting"]
    assert (s["height"], s["width"], s["images_train"], s["images_val"]) == (64, 128, 2, 1)
    assert (s["model_variant"], s["train_crop_size"], s["train_batch_size"]) == ("xception_light", 65, 2)
    assert (s["superpixel_method"], s["num_superpixels"], s["inference_scale"]) == ("seeds", 32, 0.5)
    assert sorted(report["training"]) == ["0", "1"]  # the warm-up round and one adaptive round
    for t in ("0", "1"):
        tr = report["training"][t]
        assert tr["steps"] == 2 and tr["images_per_second"] > 0
        assert f"training, round {t}: {tr['images_per_second']:.2f} images/s (2 steps" in text
    inf = report["inference"]
    assert inf["images"] == 1 and inf["images_per_second"] > 0 and (inf["height"], inf["width"]) == (64, 128)
    assert "inference: " in text and "at scale 0.5, one per pass" in text
    if not report["device"].startswith("GPU"):
        assert "GPU peak n/a (no GPU)" in text and inf["gpu_peak_bytes"] is None
    # every stage of both rounds is timed, from the log the drivers wrote
    logged = stage_log.read_log(check / "stages.jsonl")
    assert all(r["rc"] == 0 for r in logged)
    seen = {(r["stage"], r["round"]) for r in report["stages"]}
    for t in (0, 1):
        assert all((name, t) in seen for name in ROUND_STAGES), seen
    assert ("gen_adaptive_spx", 1) in seen and ("extract_superpixels", None) in seen
    table = {line.split()[0] for line in text.splitlines() if line.split()[:1]}
    assert {"gen_adaptive_spx", "select_regions", "train_round", "eval_round"} <= table
    assert report["peak_rss_mb"] == max(r["max_rss_mb"] for r in report["stages"]) > 100
    assert f"peak host memory (resident, largest stage): {report['peak_rss_mb']:.0f} MiB" in text
    assert report["same_seed"]["identical"] is True and report["same_seed"]["max_abs_difference"] == 0.0
    assert "same seed, same weights (round 0 trained twice" in text and ": yes, every array bit for bit" in text
    # a folder that is no paper check's is refused, and left as it was
    mine = tmp_path / "work" / "mine"
    (mine / "round_00").mkdir(parents=True)
    out = subprocess.run(["bash", "bash_files/paper_check.sh"], cwd=ROOT, env=dict(env, JOB_NAME="mine"),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "is not a paper check's folder" in out.stderr
    assert (mine / "round_00").is_dir()
    # the report names the folder it lacks
    out = subprocess.run([sys.executable, "scripts/paper_check.py", "--check_dir", str(mine)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and f"{mine / 'main'} holds no job" in out.stderr
    assert "Traceback" not in out.stderr
