"""Folder data sets through the bash drivers: with labels and the oracle (the modes compare.sh's
arms do not run), and without labels, answered on the page the driver serves (HTTP only, no
browser)."""

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from helpers import make_folder_dataset

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.e2e  # both drivers, end to end


def _post(url, path, body):
    """POSTs JSON to the page's API as its script does; returns the decoded reply."""
    req = urllib.request.Request(url + path, method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())



def _driver_env(tmp_path, root, **kw):
    env = dict(os.environ, DATASET="folder", DATA_DIR=str(root), WORK_DIR=str(tmp_path / "work"),
               JOB_NAME="mine", ROUNDS="2", CLICKS_PER_ROUND="20", SUPERPIXEL_METHOD="slic",
               TRAIN_STEPS="3", TRAIN_CROP_SIZE="65", TRAIN_BATCH_SIZE="2", NUM_WORKERS="1",
               TQDM_DISABLE="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.update({k: str(v) for k, v in kw.items()})
    return env


def test_folder_with_labels_through_both_drivers(tmp_path, synth_root):
    root = make_folder_dataset(synth_root, tmp_path / "data", labels=True, splits=True,
                               num_train=4, num_val=2)
    # The modes compare.sh's arms do not run: uncertainty on base regions, sieving, no warm start.
    env = _driver_env(tmp_path, root, REGIONS="base", ACQUISITION="uncertainty", SIEVE=1, WARM_START=0)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    # CACHE_DIR moved between the drivers (allowed): the second builds its val TFRecords again
    # (it used to train, then stop in evaluation: "val TFRecords carry no count").
    moved = dict(env, CACHE_DIR=str(tmp_path / "moved_cache"))
    tables = {}
    for script, script_env in (("warm_up.sh", env), ("adaptive_superpixel.sh", moved)):
        out = subprocess.run(["bash", f"bash_files/{script}"], cwd=ROOT, env=script_env,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        tables[script] = [line for line in out.stdout.splitlines() if line.startswith("round  clicks")]
    # each driver prints the results table once, at its end
    assert len(tables["warm_up.sh"]) == len(tables["adaptive_superpixel.sh"]) == 1
    # run again on the finished job: everything is skipped, and the table comes once, not per driver
    again = subprocess.run(["bash", "-c", "bash bash_files/warm_up.sh && bash bash_files/adaptive_superpixel.sh"],
                           cwd=ROOT, env=moved, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "round 1: train already complete, skipped" in again.stdout
    assert [line for line in again.stdout.splitlines() if line.startswith("round  clicks")] == tables[
        "adaptive_superpixel.sh"]
    assert list((tmp_path / "moved_cache").rglob("val.meta.json"))
    job = tmp_path / "work" / "mine"
    rows = (job / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("round,clicks,miou")
    from deeplab.experiment.job import Job

    exp = Job.open(job)
    for t, line in enumerate(rows[1:]):  # measured on splits/val.txt: the round's eval.json
        ev = json.loads((exp.round_dir(t) / "eval.json").read_text())
        assert float(line.split(",")[2]) == pytest.approx(100 * ev["miou"], abs=0.006)
        assert ev["images"] == 2
    m = exp.manifest(1)
    assert m["select"]["method"] == "uncertainty" and m["data"]["sieve"] is True
    assert m["data"]["noise_before"] is not None and 0 <= m["data"]["noise_before"] <= 1
    scores = [r["score"] for r in json.loads((exp.round_dir(1) / "selection.json").read_text())["regions"]]
    assert scores == sorted(scores, reverse=True)  # taken by descending mean uncertainty
    name = exp.samples[0].name
    assert (exp.load_map(1, name) == exp.load_map(0, name)).all()  # REGIONS=base
    cfg = json.loads((exp.round_dir(1) / "train" / "train_config.json").read_text())
    assert cfg["tf_initial_checkpoint"] is None and cfg["deterministic"] is True
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written into DATA_DIR


def test_unlabelled_folder_round_answered_through_the_page(tmp_path, synth_root):
    """No labels, no split lists: warm_up.sh serves round 0's page, the test answers every
    region by posting to it, and the driver goes on (training; no evaluation, noise n/a)."""
    root = make_folder_dataset(synth_root, tmp_path / "data", labels=False, splits=False,
                               num_train=3, num_val=1)
    env = _driver_env(tmp_path, root, ANNOTATOR="human", ANNOTATE_PORT=0, CLICKS_PER_ROUND=8)
    proc = subprocess.Popen(["bash", "bash_files/warm_up.sh"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        url = None
        while url is None:
            line = proc.stdout.readline()
            assert line, "the driver ended before serving the page:\n" + "".join(lines)
            lines.append(line)
            m = re.search(r"Open (http://127\.0\.0\.1:\d+/) in a browser", line)
            url = m and m.group(1)
        answers = []
        while True:
            q = _post(url, "api/next", {"client": "tester"})["query"]
            if q is None:
                break
            answer = [0, 2, 8, 10, 255][q["index"] % 5]
            req = urllib.request.Request(url + "api/answer", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"client": "tester", "index": q["index"], "answer": answer}).encode())
            with urllib.request.urlopen(req, timeout=10) as r:
                done = json.loads(r.read())["done"]
            answers.append((q["image"], q["region"], answer))
            if done:
                break
        rest, _ = proc.communicate(timeout=600)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = "".join(lines)
    assert proc.returncode == 0, log[-4000:]
    assert len(answers) == 8 and "round 0: every queried region is answered" in log
    job = tmp_path / "work" / "mine"
    from deeplab.experiment.job import Job

    rows = Job.open(job).ledger.read()
    assert [(r["image"], r["region"], r["answer"]) for r in rows] == answers
    assert "no val split" in log and "not evaluated" in log
    table = log[log.index("round  clicks"):]
    assert re.search(r"^\s+0\s+8\s+n/a\s", table.splitlines()[1]) and table.count("n/a") >= 3
    data = json.loads((job / "round_00" / "manifest.json").read_text())["data"]
    assert data["noise_before"] is None and data["labelled_px"] > 0
    assert (job / "round_00" / "train").is_dir() and not (job / "al_curve.png").exists()
