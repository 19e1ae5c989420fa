"""Active-learning rounds end to end on tiny data: results, budget, no re-asking, resume,
bad settings."""

import csv
import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeplab import cli
from deeplab.experiment import simulated, stages, tasks
from deeplab.experiment.settings import MODEL_VARIANTS, ExperimentConfig
from deeplab.experiment.job import Job
from deeplab.experiment.stages import select_stage
from deeplab.active import labels as L

ROOT = Path(__file__).parents[1]


def _config(job_dir, synth_root, **kw):
    base = dict(job_dir=str(job_dir), dataset="synthetic", dataset_dir=str(synth_root), rounds=2,
                clicks_per_round=60, superpixel_method="slic", superpixel_size_px=64.0,
                train_steps=6, train_crop_size=65, train_batch_size=4, base_learning_rate=0.01,
                seed=3, eps=0.02, num_workers=1)
    base.update(kw)
    return ExperimentConfig(**base)


def _run(job_dir, t, names):
    """Stages of round t in this process, from the registry the scripts use."""
    for s in names:
        assert cli.run_stage(job_dir, t, s, cli.stage_function(s)) == 0


ALL = ("select", "annotate", "data", "train", "eval")


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory, synth_root):
    from deeplab.datasets import build_data

    job = tmp_path_factory.mktemp("job") / "demo"
    config = _config(job, synth_root).validate()
    config.save_or_check()
    exp = Job(config)
    build_data.build_split(exp.descriptor, exp.descriptor.list_split(synth_root, "val"),
                           exp.val_tfrecord_dir, "val", num_shards=2, progress=False)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 64.0, progress=False)
    _run(job, 0, ALL)
    _run(job, 1, ("regions",) + ALL)
    from deeplab.experiment.results import write_results

    write_results(Job.open(job))
    return job


def test_results_csv_has_a_row_per_round(finished_job):
    with open(finished_job / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [0, 1]
    sel = json.loads((finished_job / "round_01" / "selection.json").read_text())["info"]
    assert sel["spent"] == min(60, sel["pool"])  # the whole pool when the budget exceeds it
    assert [int(r["clicks"]) for r in rows] == [60, 60 + sel["spent"]]
    for r in rows:  # the round's eval.json, in %
        ev = json.loads((finished_job / f"round_0{r['round']}" / "eval.json").read_text())
        assert float(r["miou"]) == pytest.approx(100 * ev["miou"], abs=0.006)
        assert "iou_road" in r and "label_noise_before_sieve" in r
        assert r["annotation_seconds"] == r["seconds_per_click_median"] == r["seconds_per_click_road"] == "n/a"
    assert float(rows[0]["sieved_px"]) == 0  # no sieving in the warm-up
    from helpers import MPL_BLUE, colour_mask

    assert colour_mask(finished_job / "al_curve.png", MPL_BLUE).sum() > 50  # the curve is drawn
    assert any((finished_job / "round_01" / "overlays").rglob("*.png"))


def test_results_are_written_again_only_when_they_change(finished_job, tmp_path):
    """record_results on a job whose table is current writes nothing (a resumed driver's cheap
    no-op); a missing curve, or a table that differs, is written again."""
    from deeplab.experiment.results import write_results

    job = tmp_path / "job"
    shutil.copytree(finished_job, job, ignore=shutil.ignore_patterns("round_*"))
    for r in ("round_00", "round_01"):  # the manifests and evals the table is made of
        (job / r).mkdir()
        for name in ("manifest.json", "eval.json", "selection.json"):
            if (finished_job / r / name).is_file():
                shutil.copy(finished_job / r / name, job / r / name)
    config = json.loads((job / "config.json").read_text())
    (job / "config.json").write_text(json.dumps({**config, "job_dir": str(job)}))
    table, curve = job / "results.csv", job / "al_curve.png"
    before = table.read_bytes()
    curve.write_bytes(b"not drawn again")
    write_results(Job.open(job))
    assert table.read_bytes() == before and curve.read_bytes() == b"not drawn again"
    curve.unlink()
    write_results(Job.open(job))
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table.write_bytes(before.replace(b"round", b"stale", 1))
    curve.write_bytes(b"stale")
    write_results(Job.open(job))
    assert table.read_bytes() == before and curve.read_bytes()[:4] == b"\x89PNG"


def test_budget_and_no_region_asked_twice(finished_job):
    exp = Job.open(finished_job)
    rows = exp.ledger.read()
    for t in (0, 1):
        spent = sum(r["cost"] for r in rows if r["round"] == t)
        assert 0 < spent <= exp.config.clicks_per_round
    keys = [(r["round"], r["image"], r["region"]) for r in rows]
    assert len(keys) == len(set(keys))
    # every round-1 region had fewer than half of its pixels covered by round-0 answers
    by_image = exp.ledger.by_image()
    checked = 0
    for name, rs in by_image.items():
        r1 = [r for r in rs if r["round"] == 1]
        if not r1:  # an image without round-1 queries has nothing to check
            continue
        checked += len(r1)

        answers = L.answer_luts([r for r in rs if r["round"] < 1])
        maps = {t: exp.load_map(t, name) for t in answers}

        cov = L.covered(maps, answers) if answers else np.zeros(exp.load_map(1, name).shape, bool)
        m1 = exp.load_map(1, name)
        for r in r1:
            region = m1 == r["region"]
            assert cov[region].sum() < region.sum() / 2
    assert checked == sum(1 for r in rows if r["round"] == 1) > 0  # every round-1 query was checked
    # the round-1 maps are unions of base superpixels
    name = exp.samples[0].name
    base, merged = exp.load_map(0, name), exp.load_map(1, name)
    assert len(set(zip(base.ravel().tolist(), merged.ravel().tolist()))) == base.max() + 1


def test_resume_after_crash_equals_uninterrupted(finished_job, tmp_path):
    exp = Job.open(finished_job)
    ledger = exp.ledger.path.read_text()
    sel = (exp.round_dir(1) / "selection.json").read_text()
    labels = {p: p.read_bytes() for p in (exp.round_dir(1) / "labels").rglob("*.png")}
    results = (finished_job / "results.csv").read_text()
    # Crash after the ledger was written but before the manifest recorded 'annotate', and
    # in the middle of the data stage (some label files gone, TFRecords gone).
    manifest = exp.manifest(1)
    for stage in ("annotate", "data", "train", "eval"):
        manifest.pop(stage)
    (exp.round_dir(1) / "manifest.json").write_text(json.dumps(manifest))
    for p in list(labels)[::2]:
        p.unlink()
    assert not (exp.round_dir(1) / "tfrecord").exists()  # deleted after its evaluation
    _run(finished_job, 1, ("select", "annotate", "data", "train", "eval"))
    assert exp.ledger.path.read_text() == ledger  # no answer appended twice
    assert (exp.round_dir(1) / "selection.json").read_text() == sel
    assert {p: p.read_bytes() for p in (exp.round_dir(1) / "labels").rglob("*.png")} == labels
    from deeplab.experiment.results import write_results

    write_results(exp)
    assert (finished_job / "results.csv").read_text() == results
    # A crash before selection was recorded: selection runs again, identically.
    manifest = exp.manifest(1)
    manifest.pop("select")
    (exp.round_dir(1) / "manifest.json").write_text(json.dumps(manifest))
    _run(finished_job, 1, ("select",))
    assert (exp.round_dir(1) / "selection.json").read_text() == sel


def test_budget_larger_than_pool_takes_the_pool(finished_job, capsys):
    exp = Job.open(finished_job)
    exp.config.clicks_per_round = 10**6
    info = select_stage(exp, 1)
    assert info["exhausted"] and info["spent"] == info["pool"]
    assert "exceeds the eligible pool" in capsys.readouterr().out
    # restore the real selection file for other tests
    exp.config.clicks_per_round = 60
    select_stage(exp, 1)


def test_settings_change_on_resume_is_refused(finished_job, synth_root):
    with pytest.raises(ValueError, match="clicks_per_round"):
        _config(finished_job, synth_root, clicks_per_round=7).save_or_check()
    _config(finished_job, synth_root, rounds=5).save_or_check()  # more rounds is fine
    _config(finished_job, synth_root).save_or_check()
    with pytest.raises(ValueError, match="eps"):  # an adaptive job's merge depends on it
        _config(finished_job, synth_root, eps=0.3).save_or_check()


def test_merge_settings_do_not_bind_a_job_on_other_regions(tmp_path, synth_root):
    """EPS is read by the adaptive merge only: a job on base regions (the random arm an EPS
    ablation shares) resumes under another EPS, but not under another acquisition."""
    job = tmp_path / "base_job"
    job.mkdir()
    _config(job, synth_root, regions="base", acquisition="random").save_or_check()
    _config(job, synth_root, regions="base", acquisition="random", eps=0.3).save_or_check()
    with pytest.raises(ValueError, match="acquisition"):
        _config(job, synth_root, regions="base", acquisition="class_balanced", eps=0.3).save_or_check()


def test_budget_as_a_share_of_base_superpixels(finished_job):
    exp = Job.open(finished_job)
    total = exp.base_regions_total()
    assert total == sum(exp.load_map(0, s.name).max() + 1 for s in exp.samples)
    exp.config.clicks_percent = 2.5
    assert exp.budget_clicks(total) == round(0.025 * total)
    exp.config.clicks_percent = 1e-6
    assert exp.budget_clicks(total) == 1  # never a round without a click


def test_unknown_cost_model_is_refused(synth_root, tmp_path):
    with pytest.raises(ValueError, match="COST_MODEL 'polygon'.*click"):
        _config(tmp_path / "j", synth_root, cost_model="polygon").validate()


def test_model_variant_names_match_backbones():
    from deeplab.core.xception import VARIANTS

    assert set(MODEL_VARIANTS) == set(VARIANTS)


@pytest.mark.parametrize("env,message", [
    ({"ACQUISITION": "entropy"}, "ACQUISITION 'entropy' is unknown"),
    ({"CLICKS_PER_ROUND": "abc"}, "CLICKS_PER_ROUND must be a number of clicks (1000) or a share"),
    ({"CLICKS_PER_ROUND": "0"}, "CLICKS_PER_ROUND must be a number of clicks (1000) or a share"),
    ({"CLICKS_PER_ROUND": "150%"}, "share of the base superpixels in (0, 100] % (0.5%), got '150%'"),
    ({"DETERMINISTIC": "maybe"}, "DETERMINISTIC must be 0 or 1, got 'maybe'"),
    ({"DATASET": "cityscapes", "DATA_DIR": "/nonexistent/cityscapes"}, "/nonexistent/cityscapes"),
    ({"INIT_CHECKPOINT": "/nonexistent/xception.npz"}, "INIT_CHECKPOINT /nonexistent/xception.npz does not exist"),
    ({"NUM_SUPERPIXELS": "100000"}, "NUM_SUPERPIXELS=100000 is more than SEEDS can make"),
    ({"SEED": "-1"}, "SEED must be >= 0 and <= 4294967295, got '-1'"),
    ({"JOB_NAME": "../escaped"}, "is not inside WORK_DIR"),
])
def test_driver_stops_on_bad_settings_before_any_work(tmp_path, synth_root, env, message):
    full = {**os.environ, "WORK_DIR": str(tmp_path), "JOB_NAME": "bad", "DATA_DIR": str(synth_root), **env}
    out = subprocess.run(["bash", "bash_files/warm_up.sh"], cwd=ROOT, env=full, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "bad" / "config.json").exists()
    assert not (tmp_path.parent / "escaped").exists()
    assert not list(Path(synth_root).glob("superpixels")) and not list(tmp_path.glob("*/cache"))


@pytest.mark.e2e
def test_superpixel_scripts_standalone(finished_job, synth_root, tmp_path):
    run = dict(cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = subprocess.run(["python", "scripts/extract_superpixels.py", "--dataset_dir", str(synth_root),
                          "--split", "val", "--method", "seeds", "--num_superpixels", "40",
                          "--output_dir", str(tmp_path / "seeds"), "--num_workers", "2",
                          "--shard", "0/2", "--report"], **run)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.5 < report["asa"] < 1.0 and 20 <= report["regions_per_image"] <= 60
    assert len(list((tmp_path / "seeds" / "synth").glob("*.npz"))) == 7  # 13 images, shard 0 of 2
    out = subprocess.run(["python", "scripts/gen_oracle_spx.py", "--dataset_dir", str(synth_root),
                          "--split", "val", "--output_dir", str(tmp_path / "oracle")], **run)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "oracle" / "synth").glob("*.npz"))) == 13
    exp = Job.open(finished_job)
    out = subprocess.run(["python", "scripts/gen_adaptive_spx.py", "--dataset_dir", str(synth_root),
                          "--checkpoint_dir", str(exp.round_dir(0) / "train"), "--base_dir", str(exp.base_dir),
                          "--output_dir", str(tmp_path / "adaptive"), "--eps", "0.02",
                          "--overlay_dir", str(tmp_path / "ov")], **run)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["images"] == 20
    assert summary["regions_per_image_after"] <= summary["regions_per_image_before"]
    assert any((tmp_path / "ov").rglob("*.png"))
    # the same maps as the experiment's round 1 (same model, eps and base maps)
    for s in exp.samples[:3]:
        with np.load(tmp_path / "adaptive" / f"{s.name}.npz") as a:
            np.testing.assert_array_equal(a["regions"], exp.load_map(1, s.name))


def test_collapse_warning_names_the_cause():
    from deeplab.experiment.stages import collapse_warning

    assert collapse_warning({"regions_per_image_before": 100.0, "regions_per_image_after": 30.0}, 1, 0.1) is None
    msg = collapse_warning({"regions_per_image_before": 100.0, "regions_per_image_after": 6.0}, 2, 0.1)
    assert "round 2" in msg and "6.0 regions per image of 100.0" in msg
    assert "round 1's model is too weak for eps=0.1" in msg and "TRAIN_STEPS" in msg
    assert collapse_warning({"images": 0, "skipped": 5}, 1, 0.1) is None  # resumed, nothing new
    # the boundary: a quarter of the regions left is not a collapse, less is
    assert collapse_warning({"regions_per_image_before": 100.0, "regions_per_image_after": 25.0}, 1, 0.1) is None
    assert collapse_warning({"regions_per_image_before": 100.0, "regions_per_image_after": 24.9}, 1, 0.1)


def test_results_table_is_aligned(finished_job):
    from deeplab.experiment.results import format_results, results_rows

    lines = format_results(results_rows(Job.open(finished_job))).splitlines()
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1
    # cells (separated by two spaces or more) end at the same place in every line
    import re

    ends = [[m.end() for m in re.finditer(r"\S+(?: \S+)*", line)] for line in lines]
    assert len(ends[0]) == 12 and all(e == ends[0] for e in ends)
    assert lines[1].split()[-3:] == ["n/a"] * 3  # simulated answers: no time, never 0


# ---------------------------------------------------------------------------- scale and safety
def _copy_job(finished_job, dest, drop_round=None, **settings):
    """A copy of the finished job under another name and work folder (jobs are folders), with
    its round `drop_round` and later taken back (folders and ledger lines) and new settings."""
    shutil.copytree(finished_job, dest)
    if drop_round is not None:
        for d in dest.glob("round_*"):
            if int(d.name.split("_")[1]) >= drop_round:
                shutil.rmtree(d)
        ledger = dest / "ledger.jsonl"
        keep = [ln for ln in ledger.read_text().splitlines() if json.loads(ln)["round"] < drop_round]
        ledger.write_text("".join(ln + "\n" for ln in keep))
    config = json.loads((dest / "config.json").read_text())
    config.update(settings)
    (dest / "config.json").write_text(json.dumps(config))
    return Job.open(dest)


def _round_outputs(exp, t):
    rows = [r for r in exp.ledger.read() if r["round"] == t]
    labels = {p.relative_to(exp.round_dir(t)).as_posix(): p.read_bytes()
              for p in (exp.round_dir(t) / "labels").rglob("*.png")}
    maps = {s.name: exp.load_map(t, s.name) for s in exp.samples}
    return rows, labels, maps


@pytest.mark.e2e
def test_round_on_two_workers_equals_serial_round(finished_job, tmp_path):
    """Round 1 of a copied job (another name and work folder: the base maps are made again in
    its own cache) on two local processes gives the ledger, region maps and labels of the serial
    run. (On Ray: a two-node cluster below; a local Ray's start in tests/test_executor.py.)"""
    exp = _copy_job(finished_job, tmp_path / "elsewhere" / "renamed", drop_round=1,
                    executor="local", num_workers=2)
    assert exp.base_dir != Job.open(finished_job).base_dir  # its own cache
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 64.0,
                      executor=exp.executor(), progress=False)
    _run(exp.job_dir, 1, ("regions", "select", "annotate", "data"))
    rows, labels, maps = _round_outputs(exp, 1)
    ref_rows, ref_labels, ref_maps = _round_outputs(Job.open(finished_job), 1)
    assert rows == ref_rows and labels == ref_labels
    for name in ref_maps:
        np.testing.assert_array_equal(maps[name], ref_maps[name])
    assert exp.manifest(1)["data"] == Job.open(finished_job).manifest(1)["data"]


def test_job_reached_by_another_path_keeps_its_settings(finished_job, tmp_path, synth_root):
    rel = os.path.relpath(finished_job)
    _config(rel, synth_root).save_or_check()
    _config(finished_job.resolve(), os.path.relpath(synth_root)).save_or_check()
    assert Job.open(rel).config.job_dir == rel


def test_round_tfrecords_are_deleted_after_eval_and_rebuilt_on_need(finished_job, tmp_path):
    from deeplab.experiment.stages import ensure_round_tfrecords
    from deeplab.datasets import tfrecord

    exp = _copy_job(finished_job, tmp_path / "w" / "job")
    for t in (0, 1):
        assert not (exp.round_dir(t) / "tfrecord").exists()
    ensure_round_tfrecords(exp, 1, progress=False)
    names = [r["name"] for r in tfrecord.read_examples(exp.round_dir(1) / "tfrecord", "train")]
    pngs = sorted(p.relative_to(exp.round_dir(1) / "labels").with_suffix("").as_posix()
                  for p in (exp.round_dir(1) / "labels").rglob("*.png"))
    assert sorted(names) == pngs and len(names) == exp.manifest(1)["data"]["images"]


def test_deleted_or_added_ledger_line_stops_the_job(finished_job, tmp_path):
    from deeplab.experiment.ledger import LedgerError
    from deeplab.experiment.results import results_rows

    exp = _copy_job(finished_job, tmp_path / "w" / "job")
    lines = exp.ledger.path.read_text().splitlines(keepends=True)
    n = exp.manifest(1)["annotate"]["answers"]
    exp.ledger.path.write_text("".join(lines[:-1]))  # the last answer deleted
    with pytest.raises(LedgerError, match=rf"{n - 1} answers \({n - 1} clicks\) of round 1.*recorded {n}"):
        results_rows(exp)
    extra = {**json.loads(lines[-1]), "region": 99999}
    exp.ledger.path.write_text("".join(lines) + json.dumps(extra) + "\n")  # an answer added
    with pytest.raises(LedgerError, match="round 1.*Restore ledger.jsonl"):
        exp.ledger.read()
    exp.ledger.path.write_text("".join(lines))
    assert len(exp.ledger.read()) == len(lines)


@pytest.mark.e2e
def test_partial_val_tfrecords_are_refused_and_rebuilt(finished_job, tmp_path, synth_root):
    from deeplab.experiment.stages import eval_stage
    from deeplab.datasets import build_data, tfrecord

    exp = _copy_job(finished_job, tmp_path / "w" / "job")
    val = exp.descriptor.list_split(synth_root, "val")
    # A build stopped part-way (here: a bad label in the last image) leaves shards, no meta.
    data = tmp_path / "data"
    shutil.copytree(synth_root, data, ignore=shutil.ignore_patterns("tfrecord"))
    bad = exp.descriptor.list_split(data, "val")
    from PIL import Image

    Image.fromarray(np.full((64, 128), 77, np.uint8)).save(bad[-1].label_path)
    with pytest.raises(ValueError, match="77"):
        build_data.build_split(exp.descriptor, bad, exp.val_tfrecord_dir, "val", num_shards=3,
                               progress=False)
    assert tfrecord.list_shards(exp.val_tfrecord_dir, "val")  # some shards exist
    with pytest.raises(ValueError, match="carry no count.*build_tfrecords.py --job_dir"):
        eval_stage(exp, 1, progress=False)
    # The driver's build step sees the partial records and rebuilds them.
    out = subprocess.run(["python", "scripts/build_tfrecords.py", "--job_dir", str(exp.job_dir),
                          "--splits", "val", "--skip_existing"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "partial" in out.stdout
    assert tfrecord.meta_matches(exp.val_tfrecord_dir, "val", [s.name for s in val])
    assert eval_stage(exp, 1, progress=False)["miou"] == pytest.approx(
        Job.open(finished_job).manifest(1)["eval"]["miou"])
    # A list that grew: the records no longer cover it.
    with pytest.raises(ValueError, match="hold 13 images.*list has 12"):
        tfrecord.check_meta(exp.val_tfrecord_dir, "val", [s.name for s in val[:12]], fix="rebuild")


def test_edited_ledger_line_stops_the_job_naming_it(finished_job, tmp_path):
    from deeplab.experiment.ledger import LedgerError

    exp = _copy_job(finished_job, tmp_path / "w" / "job")
    lines = exp.ledger.path.read_text().splitlines(keepends=True)
    assert exp.manifest(0)["annotate"]["rows_sha256"]
    k = 3  # a line of round 0 (finished): its class changed, the count and clicks unchanged
    row = json.loads(lines[k - 1])
    assert row["round"] == 0
    for field, value in (("answer", (row["answer"] + 1) % 19), ("score", row["score"] + 0.5),
                         ("region", row["region"] + 1000)):
        edited = lines[:k - 1] + [json.dumps({**row, field: value}) + "\n"] + lines[k:]
        exp.ledger.path.write_text("".join(edited))
        with pytest.raises(LedgerError, match=rf"line {k} \(round 0, region .*the ledger was edited"):
            exp.ledger.read()
    exp.ledger.path.write_text("".join(lines))
    assert len(exp.ledger.read()) == len(lines)


def _folder_job(tmp_path, synth_root, **kw):
    """A folder data set with labels (oracle answers), round 0 selected and answered."""
    from helpers import make_folder_dataset
    from deeplab.experiment import stages

    root = make_folder_dataset(synth_root, tmp_path / "data", labels=True, splits=False,
                               num_train=4, num_val=1)
    config = ExperimentConfig(job_dir=str(tmp_path / "work" / "job"), dataset="folder",
                              dataset_dir=str(root), rounds=2, clicks_per_round=12,
                              superpixel_method="slic", superpixel_size_px=128.0,
                              **{"seed": 1, "num_workers": 1, **kw}).validate()
    config.save_or_check()
    exp = Job(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    for stage, fn in (("select", stages.select_stage), ("annotate", simulated.oracle_round)):
        assert cli.run_stage(exp.job_dir, 0, stage, lambda e, t: fn(e, t, progress=False)) == 0
    return exp, root


def test_answered_image_gone_from_the_data_stops_the_job(tmp_path, synth_root, capsys):
    from deeplab.experiment import stages

    exp, root = _folder_job(tmp_path, synth_root)
    rows = exp.ledger.read()
    gone = rows[0]["image"]
    mine = [r for r in rows if r["image"] == gone]
    for p in list((root / "images").rglob(f"{Path(gone).name}.*")) + [root / "labels" / f"{gone}.png"]:
        p.unlink()
    data = lambda e, t: stages.data_stage(e, t, progress=False)  # noqa: E731
    with pytest.raises(ValueError, match=rf"1 answered images are no longer.*'{gone}'.*"
                                         rf"{len(mine)} answers.*DROP_MISSING_ANSWERED=1"):
        cli.run_stage(exp.job_dir, 0, "data", data)
    assert not exp.done(0, "data")
    # the driver's way: one line, no traceback
    out = subprocess.run([sys.executable, "scripts/build_round_data.py", "--job_dir", str(exp.job_dir),
                          "--round", "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "DROP_MISSING_ANSWERED=1" in out.stderr.strip().splitlines()[-1]
    # explicitly dropped: the job goes on and says what that forfeits
    config = json.loads((exp.job_dir / "config.json").read_text())
    (exp.job_dir / "config.json").write_text(json.dumps({**config, "drop_missing_answered": True}))
    capsys.readouterr()
    assert cli.run_stage(exp.job_dir, 0, "data", data) == 0
    err = capsys.readouterr().err
    assert f"{len(mine)} answers, {sum(r['cost'] for r in mine)} clicks are left out" in err


def test_init_refuses_splits_and_job_folders_that_lose_or_double_work(tmp_path, synth_root, capsys):
    from helpers import load_script, make_folder_dataset

    init = load_script("init_experiment")
    root = make_folder_dataset(synth_root, tmp_path / "data", labels=True, splits=True,
                               num_train=4, num_val=2)
    train_list = (root / "splits" / "train.txt").read_text().split()
    val_list = (root / "splits" / "val.txt").read_text().split()
    work = tmp_path / "work"

    def init_with(job, **flags):
        argv = ["--job_dir", str(job), "--dataset", "folder", "--dataset_dir", str(root),
                "--work_dir", str(work), "--superpixel_method", "slic"]
        for k, v in flags.items():
            argv += [f"--{k}", str(v)]
        code = cli.guarded(init.main, argv)  # as `python scripts/init_experiment.py` runs it
        return code, capsys.readouterr().err

    (root / "splits" / "train.txt").write_text("\n".join(train_list + train_list[:1] * 2) + "\n")
    code, err = init_with(work / "a")
    assert code == 2 and f"more than once (first: '{train_list[0]}'" in err
    (root / "splits" / "train.txt").write_text("\n".join(train_list + val_list[:1]) + "\n")
    code, err = init_with(work / "a")
    assert code == 2 and f"both the train and the val split (first: '{val_list[0]}')" in err
    (root / "splits" / "train.txt").write_text("\n".join(train_list) + "\n")
    code, err = init_with(work / ".." / "x")
    assert code == 2 and "not inside WORK_DIR" in err
    code, err = init_with(root / "inside", work_dir=root)
    assert code == 2 and "inside DATA_DIR" in err
    code, err = init_with(work / "a", seed=-1)
    assert code == 2 and "SEED must be >= 0 and <= 4294967295" in err
    code, err = init_with(work / "a", eval_split="test")  # asked for by name, and absent
    assert code == 2 and "EVAL_SPLIT=test, but" in err and f"{root / 'splits' / 'test.txt'}): add it" in err
    assert not (work / "a").exists() and not (tmp_path / "x").exists() and not (root / "inside").exists()
    assert init_with(work / "a")[0] == 0


def test_regions_stage_resumed_after_its_last_map_records_the_same_figures(finished_job, tmp_path):
    """Killed after every map was written but before the stage was recorded: the rerun writes
    nothing new and records the figures (images, regions per image, ASA, the collapse warning)
    of the uninterrupted stage."""
    from deeplab.experiment import stages

    whole = Job.open(finished_job).manifest(1)["regions"]
    exp = _copy_job(finished_job, tmp_path / "w" / "job", cache_dir=str(finished_job.parent / "cache"))
    manifest = exp.manifest(1)
    del manifest["regions"]
    (exp.round_dir(1) / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.stat().st_mtime_ns for p in (exp.round_dir(1) / "regions").rglob("*.npz")}
    assert cli.run_stage(exp.job_dir, 1, "regions", stages.regions_stage) == 0
    resumed = exp.manifest(1)["regions"]
    assert resumed["resumed"] == len(exp.samples) and whole["resumed"] == 0
    assert {k: v for k, v in resumed.items() if k != "resumed"} == {k: v for k, v in whole.items() if k != "resumed"}
    assert resumed["images"] == len(exp.samples) and resumed["asa_after"] is not None
    after = {p.name: p.stat().st_mtime_ns for p in (exp.round_dir(1) / "regions").rglob("*.npz")}
    assert after == before


def test_annotation_cost_of_a_constructed_round():
    from deeplab.experiment.results import annotation_cost

    names = ["road", "car"]
    rows = [{"answer": 0, "size": 100, "cost": 1, "elapsed_ms": 1000},
            {"answer": 0, "size": 300, "cost": 1, "elapsed_ms": 3000},
            {"answer": 1, "size": 5000, "cost": 1, "elapsed_ms": 8000},
            {"answer": 255, "size": 2000, "cost": 2, "elapsed_ms": 4000},  # 2 s per click
            {"answer": 1, "size": 100, "cost": 1}]  # not timed: left out
    c = annotation_cost(rows, names)
    assert c["annotation_seconds"] == 16.0 and c["timed_answers"] == 4
    assert c["seconds_per_click_median"] == 2.5  # of 1, 3, 8, 2
    assert c["seconds_per_click_p90"] == 6.5  # numpy's linear interpolation: 3 + 0.7 * (8 - 3)
    assert (c["seconds_per_click_road"], c["seconds_per_click_car"], c["seconds_per_click_unclear"]) == (2.0, 8.0, 2.0)
    assert (c["seconds_per_click_px_lt256"], c["seconds_per_click_px_256_1k"],
            c["seconds_per_click_px_1k_4k"], c["seconds_per_click_px_ge4k"]) == (1.0, 3.0, 2.0, 8.0)
    assert set(annotation_cost(rows[-1:], names).values()) == {"n/a"}


def test_review_pass_of_a_noisy_simulated_annotator(tmp_path, synth_root):
    """ORACLE_NOISE=0.3: a review of every answer, a third answer on each disagreement, lowers
    the label noise; review rows cost nothing and are not answers in force."""
    from deeplab.experiment import stages
    from deeplab.active import review

    data = lambda e, t: stages.data_stage(e, t, progress=False)  # noqa: E731
    noise = {}
    for share in (0.0, 1.0):
        exp, _ = _folder_job(tmp_path / f"r{share}", synth_root, oracle_noise=0.3, review_share=share)
        assert cli.run_stage(exp.job_dir, 0, "data", data) == 0
        noise[share] = exp.manifest(0)["data"]["noise_before"]
        if share == 0:
            assert "review" not in exp.manifest(0)["annotate"]
            continue
        first = {(r["image"], r["region"]): r["answer"] for r in exp.ledger.read()}
        reviews = exp.ledger.reviews(0)
        assert len(first) == 12 and set(reviews) == set(first)  # every answer reviewed
        assert all(rv[1]["cost"] == 0 and rv[1]["annotator"] == "oracle-review" for rv in reviews.values())
        third = {k for k, rv in reviews.items() if 2 in rv}
        assert third == {k for k, rv in reviews.items() if rv[1]["answer"] != first[k]}
        rv = exp.manifest(0)["annotate"]["review"]
        s = review.agreement([first[k] for k in sorted(first)], [reviews[k][1]["answer"] for k in sorted(first)], 19)
        assert rv["reviewed"] == 12 and rv["agreement"] == s["agreement"] and rv["kappa"] == s["kappa"]
        assert rv["third_answers"] == len(third) > 0
        assert exp.manifest(0)["annotate"]["clicks"] == 12  # reviews are not clicks
    assert noise[1.0] < noise[0.0] / 2, noise


def test_oracle_and_base_regions_from_a_trained_model(finished_job, tmp_path):
    """REGIONS=oracle: round maps are the ground-truth components (the stored map when the
    driver wrote one), REGIONS=base the base map; statistics from the model's probabilities."""
    from deeplab.active import regions as R
    from deeplab.active import superpixels
    from deeplab.experiment import region_maps
    from deeplab.training.inference import Predictor

    exp = Job.open(finished_job)
    samples = exp.samples[:3]
    predictor = Predictor.from_train_dir(exp.round_dir(0) / "train")
    probs = dict(predictor.stream((s.name, exp.descriptor.read_image(s)) for s in samples))
    for mode in ("oracle", "base"):
        out = tmp_path / mode
        summary = stages.generate_round_regions(exp.descriptor, samples, predictor, exp.base_dir,
                                                out, mode, eps=0.02, progress=False)
        assert summary["images"] == 3 and summary["resumed"] == 0
        for s in samples:
            regions, stats = region_maps.load_with_stats(region_maps.path(out, s.name))
            expected = superpixels.oracle_superpixels(exp.descriptor.read_label(s)) if mode == "oracle" \
                else exp.load_map(0, s.name)
            np.testing.assert_array_equal(regions, expected)
            own = R.region_statistics(probs[s.name], regions)
            np.testing.assert_allclose(stats["uncertainty"], own.uncertainty, rtol=1e-5, atol=1e-6)
    # a stored oracle map (the driver's, from scripts/gen_oracle_spx.py) is used as it is
    stored = tmp_path / "stored"
    fake = np.zeros(exp.load_map(0, samples[0].name).shape, np.int32)
    fake[:, fake.shape[1] // 2:] = 1
    region_maps.save(region_maps.path(stored, samples[0].name), fake)
    stages.generate_round_regions(exp.descriptor, samples[:1], predictor, exp.base_dir,
                                  tmp_path / "from_stored", "oracle", eps=0.02, oracle_dir=stored,
                                  progress=False)
    np.testing.assert_array_equal(region_maps.load(region_maps.path(tmp_path / "from_stored",
                                                                    samples[0].name)), fake)


def test_a_damaged_map_is_named_and_computed_again(finished_job, tmp_path, capsys):
    """A base map or a round map with a flipped byte or cut short: reading it names the file
    and the fix (it used to be a BadZipFile or zlib traceback); the superpixel step rebuilds a
    damaged base map, `gen_adaptive_spx.py --repair` a round map, each equal to the original."""
    from deeplab.experiment import region_maps

    exp = _copy_job(finished_job, tmp_path / "w" / "job")
    base = exp.base_dir  # the copy's own cache: its base maps are made again, identically
    samples = exp.samples
    tasks.extract_base(exp.descriptor, samples, base, "slic", 64.0, progress=False)
    path = region_maps.path(base, samples[1].name)
    original = region_maps.load(path)
    for damage in (lambda b: b[: len(b) // 2], lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:]):
        path.write_bytes(damage(path.read_bytes()))
        with pytest.raises(region_maps.DamagedMap, match=f"region map {path} is damaged.*driver again"):
            region_maps.load(path)
        summary = tasks.extract_base(exp.descriptor, samples, base, "slic", 64.0, progress=False)
        assert summary["rebuilt_damaged"] == 1 and summary["skipped"] == len(samples) - 1
        assert f"rebuilt the damaged base map {path}" in capsys.readouterr().out
        np.testing.assert_array_equal(region_maps.load(path), original)
    name = exp.samples[2].name
    path = exp.map_path(1, name)
    regions, stats = region_maps.load_with_stats(path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(region_maps.DamagedMap, match=f"gen_adaptive_spx.py --job_dir {exp.job_dir} --round 1 --repair"):
        exp.load_map(1, name)
    out = subprocess.run([sys.executable, "scripts/gen_adaptive_spx.py", "--job_dir", str(exp.job_dir),
                          "--round", "1", "--repair"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and f"rebuilt round 1's map {path}" in out.stdout, (out.returncode, out.stdout[-1500:], out.stderr[-600:])
    again, again_stats = region_maps.load_with_stats(path)
    np.testing.assert_array_equal(again, regions)
    for k in stats:  # the model ran on one image, not the stream: equal to float rounding
        np.testing.assert_allclose(again_stats[k], stats[k], rtol=1e-6)


@pytest.mark.e2e
def test_a_round_on_a_two_node_ray_cluster_equals_the_serial_run_and_survives_a_lost_node(
        finished_job, tmp_path, monkeypatch):
    """RAY_ADDRESS at Ray's own two-node test cluster (a head and a second node, one CPU each, on
    the loopback): round 1's per-image stages give the serial run's maps, selection, ledger and
    labels, with the second node removed in the middle of the regions stage and of the labels
    (data) stage (and added again after each): Ray retries the lost node's tasks."""
    import ray  # the [test] extras install Ray: a missing Ray fails, never skips
    from ray.cluster_utils import Cluster

    from deeplab import parallel

    ray.shutdown()  # a local Ray of an earlier test in this process
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        node = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        ref = Job.open(finished_job)
        ref_rows, ref_labels, ref_maps = _round_outputs(ref, 1)
        ref_selection = (ref.round_dir(1) / "selection.json").read_text()

        def round_on_cluster(name, remove_in=()):
            exp = _copy_job(finished_job, tmp_path / name / "job", drop_round=1, executor="ray",
                            num_workers=1)
            tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 64.0, progress=False)
            for stage in ("regions", "select", "annotate", "data"):
                if stage not in remove_in:
                    _run(exp.job_dir, 1, (stage,))
                    continue
                real, seen = parallel.RayExecutor.result, []

                def result(self, handle):  # the second node goes after the stage's third result
                    seen.append(handle)
                    if len(seen) == 3:
                        assert sum(n["Alive"] for n in ray.nodes()) == 2
                        cluster.remove_node(nodes.pop())
                    return real(self, handle)

                with monkeypatch.context() as m:
                    m.setattr(parallel.RayExecutor, "result", result)
                    _run(exp.job_dir, 1, (stage,))
                assert len(seen) > 3 and not nodes, "the node was not removed mid-stage"
                nodes.append(cluster.add_node(num_cpus=1))  # back for the next stage
                cluster.wait_for_nodes()
            rows, labels, maps = _round_outputs(exp, 1)
            assert rows == ref_rows and labels == ref_labels
            assert (exp.round_dir(1) / "selection.json").read_text() == ref_selection
            for n in ref_maps:
                np.testing.assert_array_equal(maps[n], ref_maps[n])
            assert exp.manifest(1)["data"] == ref.manifest(1)["data"]

        nodes = [node]
        # one round: select and annotate on both nodes, regions and data losing one mid-stage
        round_on_cluster("lost_node", remove_in=("regions", "data"))
    finally:
        ray.shutdown()
        cluster.shutdown()


class SceneModel:
    """A model that knows the scene: each pixel's probabilities lean towards its ground-truth class
    (softmax of 3 on that class plus noise fixed by the image), so that round 1's mechanisms have
    a model worth trusting without minutes of training. Only the data stage's plumbing is under
    test here; the mechanisms themselves are tested against literal versions in
    test_implied_labels.py."""

    def __init__(self, exp):
        self.exp = exp
        self.samples = {s.name: s for s in exp.samples}

    def stream(self, images):
        import zlib

        d = self.exp.descriptor
        for name, image in images:
            label = d.read_label(self.samples[name]).astype(np.int64)
            rng = np.random.default_rng(zlib.crc32(name.encode()))
            logits = rng.normal(0, 1.0, label.shape + (d.num_classes,))
            valid = label != d.ignore_label
            logits[valid, label[valid]] += 3.0
            p = np.exp(logits)
            yield name, (p / p.sum(-1, keepdims=True)).astype(np.float32)


def test_propagation_and_self_training_through_the_data_stage(synth_root, tmp_path, monkeypatch):
    """A job with PROPAGATE and SELF_TRAIN, round 1 up to its data stage with a model that knows
    the scene: what the stage records agrees with the source maps, the maps, the ledger and the
    ground truth; it repeats bit for bit; a round cannot run without an earlier round's
    propagation."""
    from deeplab.datasets.descriptors import read_label_png
    from deeplab.errors import CannotContinue
    from deeplab.experiment import region_maps

    job = tmp_path / "job"
    config = _config(job, synth_root, clicks_per_round=40, propagate=True, propagate_eps=0.3,
                     propagate_hops=2, self_train=True, self_train_share=0.3, rounds=3).validate()
    config.save_or_check()
    exp = Job(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 64.0, progress=False)
    _run(job, 0, ("select", "annotate", "data"))
    assert not (exp.round_dir(0) / "label_source").exists()  # round 0 has no model: neither mechanism
    assert exp.manifest(0)["data"]["propagated_px"] == exp.manifest(0)["data"]["self_trained_px"] == 0
    exp.mark(0, "train", {"steps": 0})  # round 0's model: the scene model below
    monkeypatch.setattr(stages, "predictor_for_round", lambda exp, t: SceneModel(exp))
    _run(job, 1, ("regions", "select", "annotate", "data"))
    info = exp.manifest(1)["data"]
    assert info["propagated_px"] > 0 and info["self_trained_px"] > 0
    assert len(info["self_train_thresholds"]) == exp.descriptor.num_classes
    assert all(s is None or s >= 0.3 for s in info["self_train_taken_shares"])

    propagated = json.loads((exp.round_dir(1) / "propagated.json").read_text())
    asked = {(r["image"], r["region"]) for r in exp.ledger.read() if r["round"] == 1}
    counts = {"propagated_px": 0, "self_trained_px": 0, "propagated_wrong": 0, "self_trained_wrong": 0}
    images = 0
    for s in exp.samples:
        png = exp.round_dir(1) / "labels" / f"{s.name}.png"
        if not png.is_file():
            continue
        images += 1
        labels = read_label_png(png)
        source = read_label_png(exp.round_dir(1) / "label_source" / f"{s.name}.png")
        gt = exp.descriptor.read_label(s)
        assert ((labels != 255) == (source != L.SOURCE_NONE)).all()
        row = propagated.get(s.name, {"regions": [], "classes": []})
        assert not {(s.name, r) for r in row["regions"]} & asked  # never a region that was asked
        regions = region_maps.load(exp.map_path(1, s.name))
        lut = np.full(regions.max() + 1, 255, np.uint8)
        lut[row["regions"]] = row["classes"]
        prop = source == L.SOURCE_PROPAGATED
        np.testing.assert_array_equal(labels[prop], lut[regions][prop])
        for key, mask in (("propagated", prop), ("self_trained", source == L.SOURCE_SELF_TRAINED)):
            counts[f"{key}_px"] += int(mask.sum())
            counts[f"{key}_wrong"] += int((mask & (gt != 255) & (labels != gt)).sum())
    assert images == info["images"] == len(exp.samples)  # self-training reaches every image
    for key in ("propagated", "self_trained"):
        assert info[f"{key}_px"] == counts[f"{key}_px"]
        assert info[f"{key}_wrong_share"] == round(counts[f"{key}_wrong"] / counts[f"{key}_px"], 5)
        assert info[f"{key}_share"] == round(counts[f"{key}_px"] / info["labelled_px"], 5)
    assert info["propagated_regions"] == sum(len(r["regions"]) for r in propagated.values())

    # the same stage again writes the same labels and records the same figures
    before = {p.name: p.read_bytes() for p in (exp.round_dir(1) / "labels").rglob("*.png")}
    saved = (exp.round_dir(1) / "propagated.json").read_bytes()
    manifest = json.loads((job / "round_01" / "manifest.json").read_text())
    manifest.pop("data")
    (job / "round_01" / "manifest.json").write_text(json.dumps(manifest))
    _run(job, 1, ("data",))
    assert {p.name: p.read_bytes() for p in (exp.round_dir(1) / "labels").rglob("*.png")} == before
    assert (exp.round_dir(1) / "propagated.json").read_bytes() == saved
    assert Job.open(job).manifest(1)["data"] == info
    # scripts/implied_labels.py measures the same propagation at the job's settings
    from helpers import load_script

    script = load_script("implied_labels")
    rows = script.measure(str(job), 1, [0.3], [2], [0.3], progress=False)
    by = {r["mechanism"]: r for r in rows}
    assert by["propagation"]["px"] == info["propagated_px"]
    assert by["propagation"]["regions"] == info["propagated_regions"]
    assert by["propagation"]["wrong_share"] == pytest.approx(info["propagated_wrong_share"], abs=1e-5)
    assert by["confident pixels"]["px"] >= info["self_trained_px"]  # not kept out of propagated regions
    assert "propagation" in script.format_rows(rows)
    # the annotation page of round 2 dots the labels round 1 implied inside each query's region
    from deeplab import io_utils
    from deeplab.annotate.session import RoundSession, implied_dots
    from deeplab.viz.views import render_view

    exp.mark(1, "train", {"steps": 0})
    _run(job, 2, ("regions", "select"))
    session = RoundSession(Job.open(job), 2)
    dotted = 0
    for i, q in enumerate(session.queries[:8]):
        image, regions, labelled, implied = session._image_and_map(q["image"])
        expected = read_label_png(exp.round_dir(1) / "label_source" / f"{q['image']}.png")
        np.testing.assert_array_equal(implied, expected)
        view = session.view(i, "zoom")
        assert view == io_utils.encode_png(render_view(image, regions == q["region"], "zoom", labelled,
                                                                 implied_dots(implied)))
        inside = (regions == q["region"]) & np.isin(implied, (L.SOURCE_PROPAGATED, L.SOURCE_SELF_TRAINED))
        if labelled is not None:
            inside &= ~labelled
        if inside.any():
            dotted += 1
            assert view != io_utils.encode_png(render_view(image, regions == q["region"], "zoom", labelled))
    assert dotted  # some query's region holds labels an answer would replace
    # Label Studio's tasks carry the same pixels as read-only masks beside the query's
    from deeplab.annotate import label_studio as ls

    ls.export_round(exp, 2, tmp_path / "ls" / "tasks.json", document_root=synth_root)
    masks = collections.Counter()
    earlier = exp.ledger.by_image(upto_round=1)
    for task in json.loads((tmp_path / "ls" / "tasks.json").read_text()):
        d = task["data"]
        name = d["al_image"]
        regions = exp.load_map(2, name)
        region = regions == d["al_region"]
        sources = read_label_png(exp.round_dir(1) / "label_source" / f"{name}.png")
        labelled = np.zeros(regions.shape, bool)
        if name in earlier:
            answers = L.answer_luts(earlier[name])
            labelled = L.paint({r: exp.load_map(r, name) for r in answers}, answers)[0] != 255
        query, *shown = task["predictions"][0]["result"]
        assert query["value"]["brushlabels"] == ["query"] and "readonly" not in query
        got = {r["value"]["brushlabels"][0]: ls.rle_to_mask(r["value"]["rle"], *regions.shape) for r in shown}
        assert len(got) == len(shown) and all(r["readonly"] for r in shown)
        for label, want in (("answered", region & labelled),
                            ("propagated", region & ~labelled & (sources == L.SOURCE_PROPAGATED)),
                            ("confident", region & ~labelled & (sources == L.SOURCE_SELF_TRAINED))):
            assert (label in got) == want.any(), (label, name)
            if want.any():
                masks[label] += 1
                np.testing.assert_array_equal(got[label], want)
    assert masks["propagated"] + masks["confident"], masks
    config = (tmp_path / "ls" / "label_config.xml").read_text()
    assert all(f'<Label value="{m}"' in config for m in ("answered", "propagated", "confident"))
    print("Label Studio masks of round 2:", dict(masks))
    # label sources of another size than the round's map: named once, for the page and Label Studio
    from PIL import Image

    from deeplab.errors import BadInput

    first = session.queries[0]["image"]
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(exp.round_dir(1) / "label_source" / f"{first}.png")
    wrong = rf"label sources .*label_source/{first}.png are \(3, 3\) but round 2's region map of '{first}' is"
    with pytest.raises(BadInput, match=wrong):
        RoundSession(Job.open(job), 2).view(0, "zoom")
    with pytest.raises(BadInput, match=wrong):
        ls.export_round(exp, 2, tmp_path / "ls" / "again.json", document_root=synth_root)
    (exp.round_dir(1) / "propagated.json").unlink()
    with pytest.raises(CannotContinue, match="propagated.json"):
        stages.earlier_propagation(exp, 2)


def test_results_have_the_implied_label_columns(finished_job):
    with open(finished_job / "results.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # both mechanisms off: nothing implied, and the columns say so
        assert (r["propagated_px"], r["self_trained_px"]) == ("0", "0")
        assert r["propagated_share"] == r["self_trained_share"] == "0.0"
