"""bash_files/compare.sh end to end on tiny data, in one work folder: first the default mode,
with one run of the reference and two arms, random (REGIONS=base, SIEVE=0) and merge_bound
(REGIONS=adaptive merged by the reference's model, class_balanced, SIEVE=1), WARM_START=1,
merge_bound sharing random's warm-up round, and P5's numerics jobs (both arms, every round,
oneDNN flipped); merge_bound is added by a second run, which leaves the finished arms alone
(resume). Then the budget map (arms paper then random) on the same reference, at 5 % and then
again with 10 % added (resume again): identical labels give identical weights across processes,
and a shared warm-up round is the one the arm trains itself. (ACQUISITION=uncertainty with
REGIONS=base, SIEVE=1 and WARM_START=0 runs through both drivers in tests/test_drivers.py;
REGIONS=oracle and the paper's own merge in tests/test_experiment.py; the map's tables and
crossover on made-up rows below.)"""

import csv
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deeplab.experiment import budget_map, compare
from deeplab.experiment.job import Job
from deeplab.experiment.results import iou_column
from deeplab.active import labels as L

ROOT = Path(__file__).parents[1]
ARMS = "full random merge_bound"
AL_ARMS = ("random", "merge_bound")
SETTINGS = {"JOB_NAME": "cmp", "SEEDS": "3", "ARMS": ARMS, "WARM_START": "1",
            "NUMERICS_ARMS": "random merge_bound"}
MAP_SETTINGS = {"JOB_NAME": "cmp", "SEEDS": "3", "ARMS": "full paper random", "BUDGETS": "10% 5%",
                "WARM_START": "1"}


def _section(stdout: str, header: str) -> str:
    """The part of a driver's output under one "=== ..." header (up to the next one)."""
    assert header in stdout, header
    return stdout.split(header, 1)[1].split("\n===", 1)[0]


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "job.lock"}


@pytest.fixture(scope="module")
def compared(tmp_path_factory, data_root, compare_driver):
    """(comparison folder, output of the run that added merge_bound, output of the first run,
    {job: its files after the first run})."""
    tmp = tmp_path_factory.mktemp("compare")
    models = str(tmp / "models")
    first = compare_driver(tmp, data_root, **dict(SETTINGS, ARMS="full random"), STANDIN_DIR=models)
    cmp_dir = tmp / "cmp"
    before = {job: _files(cmp_dir / job) for job in ("full_s3", "random_s3", "numerics_onednn0/random_s3")}
    out = compare_driver(tmp, data_root, **SETTINGS, STANDIN_DIR=models)
    return cmp_dir, out, first, before


@pytest.fixture(scope="module")
def budget_mapped(compared, data_root, compare_driver):
    """The budget map in the same work folder, after the default mode: it finds the reference
    (and the stand-in) there. Its first arm, paper, trains each budget's warm-up round. A first
    run maps 5 %; a second adds 10 % (BUDGETS="10% 5%": it finds 5 % done). Returns (folder,
    first run's output, second run's output, {the first run's budget_map.csv and 5 % folder})."""
    cmp_dir = compared[0]
    models = str(cmp_dir.parent / "models")
    first = compare_driver(cmp_dir.parent, data_root, **dict(MAP_SETTINGS, BUDGETS="5%"), STANDIN_DIR=models)
    before = {"csv": (cmp_dir / "budget_map.csv").read_text(), "5%": _files(cmp_dir / "budget_5pct")}
    # the second run with the arms of a seed side by side (PARALLEL_ARMS): each arm's output in
    # its log, the same jobs
    added = compare_driver(cmp_dir.parent, data_root, **MAP_SETTINGS, STANDIN_DIR=models, PARALLEL_ARMS="2")
    return cmp_dir, first, added, before


def _arm_output(out, cmp_dir: Path, budget_folder: str, arm: str) -> str:
    """What one arm of a budget printed in a run: its part of the driver's output, and with
    PARALLEL_ARMS its log (which a resumed run appends to)."""
    part = _section(out.stdout, f"=== cmp: {budget_folder}, arm {arm}, seed 3")
    log = cmp_dir / "logs" / budget_folder / f"{arm}_s3.log"
    return part + (log.read_text() if log.is_file() else "")


def test_compare_writes_csv_png_md(compared):
    cmp_dir = compared[0]
    with open(cmp_dir / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["arm", "seed", "round", "clicks", "miou"]
    assert "iou_road" in rows[0] and "label_noise_after_sieve" in rows[0]
    full = [r for r in rows if r["arm"] == "full"]
    assert len(full) == 1 and full[0]["round"] == ""
    base_total = Job.open(cmp_dir / "random_s3").base_regions_total()
    assert int(full[0]["clicks"]) == base_total  # every base superpixel asked once
    budget = round(0.05 * base_total)
    for arm in AL_ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        assert [r["round"] for r in mine] == ["0", "1"] and all(r["seed"] == "3" for r in mine)
        assert int(mine[0]["clicks"]) == budget
        assert budget < int(mine[1]["clicks"]) <= 2 * budget
        for r in mine:  # each round's eval.json, in %
            ev = json.loads((cmp_dir / f"{arm}_s3" / f"round_0{r['round']}" / "eval.json").read_text())
            assert float(r["miou"]) == pytest.approx(100 * ev["miou"], abs=0.006)
    md = (cmp_dir / "comparison.md").read_text()
    # what every figure is measured on: the evaluation split and its images, from the jobs
    val_images = json.loads((cmp_dir / "random_s3" / "round_00" / "eval.json").read_text())["images"]
    assert f"\n\nEvery mIoU is on the val split ({val_images} images).\n" in md and val_images > 0
    for arm in AL_ARMS:
        assert f"| {arm} |" in md
    assert "Fully supervised reference" in md and "% of the reference" in md
    from helpers import MPL_BLUE, MPL_ORANGE, colour_mask

    assert colour_mask(cmp_dir / "comparison.png", MPL_BLUE).sum() > 100  # the first arm's line
    assert colour_mask(cmp_dir / "comparison.png", MPL_ORANGE).sum() > 100  # the second's
    # the setting's properties, each with a verdict; P5 from the numerics jobs (oneDNN off):
    # the arms of NUMERICS_ARMS again, every round, and the sign of their paired difference
    verdicts = {}
    for pid in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {pid} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        verdicts[pid] = (cells[2], cells[3])
    # each verdict follows from the figure printed beside it
    def figure(pid, pattern):
        m = re.search(pattern, verdicts[pid][0])
        assert m, verdicts[pid]
        return float(m.group(1))

    def says(pid, ok):
        assert verdicts[pid][1] == ("PASS" if ok else "FAIL"), (pid, verdicts[pid])

    says("P1", figure("P1", r"= ([\d.]+) %") >= 60)
    says("P2", figure("P2", r"^(-?[\d.]+)$") >= 8)
    says("P3", figure("P3", r"= ([\d.]+) %") <= 1)
    assert figure("P3", r"= ([\d.]+) %") == pytest.approx(100 * budget / base_total, abs=0.01)
    classes = figure("P7", r"of (\d+)$")  # 60 % of the data set's classes, rounded up
    says("P7", figure("P7", r"^(\d+) of") >= math.ceil(0.6 * classes))
    says("P8", figure("P8", r"^([\d.]+) min") <= 150)
    p5 = verdicts["P5"][0]
    assert "merge_bound - random r1:" in p5 and "(oneDNN 1, 1 seeds) vs" in p5
    # kept: the paired difference has the same sign under both numerics
    m = re.search(r"r1: ([+-][\d.]+) \(oneDNN 1, 1 seeds\) vs ([+-][\d.]+) \(oneDNN 0, 1\) (kept|FLIPPED)", p5)
    assert m, p5
    main, flipped = float(m.group(1)), float(m.group(2))
    if min(abs(main), abs(flipped)) >= 0.01:  # signs readable from the printed figures
        assert m.group(3) == ("kept" if (main > 0) == (flipped > 0) else "FLIPPED"), p5
    says("P5", m.group(3) == "kept")
    p9 = next(ln for ln in md.splitlines() if ln.startswith("| P9 |"))
    assert "road" in p9 and "% (" in p9  # the frequent classes by the reference's val pixels
    for arm in AL_ARMS:
        job = Job.open(cmp_dir / "numerics_onednn0" / f"{arm}_s3")
        assert job.done(1, "eval") and job.config.rounds == 2
    assert not (cmp_dir / "numerics_onednn0" / "full_s3").exists()
    assert "| merge_bound - random |" in md and "of 1)" in md
    lines = (cmp_dir / "wall_clock.txt").read_text().split()
    assert len(lines) >= 2 and int(lines[1]) >= int(lines[0])


def test_every_round_starts_from_the_stand_in_backbone(compared):
    """compare.sh built the stand-in (backbone only) and every arm's rounds load it."""
    cmp_dir, _, out, _ = compared
    built = sorted((cmp_dir.parent / "models").glob("standin_xception_light_*.npz"))
    assert len(built) == 1
    with np.load(built[0]) as z:
        keys = list(z.files)
    assert keys and all(k.startswith("xception_65/") for k in keys)  # no ASPP, decoder, logits
    meta = json.loads(built[0].with_suffix(".json").read_text())
    assert meta["categories"][0] == "flat" and len(meta["categories"]) == 7
    for arm in ("full",) + AL_ARMS:
        exp = Job.open(cmp_dir / f"{arm}_s3")
        assert exp.config.init_checkpoint == str(built[0])
    cfg = json.loads((cmp_dir / "full_s3" / "round_00" / "train" / "train_config.json").read_text())
    assert cfg["tf_initial_checkpoint"] == str(built[0])
    assert f"initial checkpoint {built[0]}: loaded {len(keys)} variables" in out.stdout


def test_arms_run_their_modes(compared):
    cmp_dir = compared[0]
    for arm in AL_ARMS:
        exp = Job.open(cmp_dir / f"{arm}_s3")
        regions, acq, sieve, propagate, self_train = compare.ARMS[arm]
        c = exp.config
        assert (c.regions, c.acquisition, int(c.sieve), c.warm_start) == (regions, acq, sieve, True)
        assert (int(c.propagate), int(c.self_train)) == (propagate, self_train)
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
        else:  # unions of base superpixels
            assert regions == "adaptive"
            assert len(set(zip(base.ravel().tolist(), merged.ravel().tolist()))) == base.max() + 1
        # the collapse warning is given exactly when the merge left under a quarter of the regions
        r = m["regions"]
        collapsed = regions == "adaptive" and r["regions_per_image_after"] < 0.25 * r["regions_per_image_before"]
        assert ("warning" in r) == collapsed


def test_merge_bound_merges_with_the_reference_model(compared):
    """merge_bound: round 1's adaptive map is the merge by the reference's probabilities, its
    statistics (what the score reads) the previous round's model's."""
    from deeplab.active import adaptive
    from deeplab.experiment import region_maps
    from deeplab.active import regions as R
    from deeplab.training.inference import Predictor

    cmp_dir = compared[0]
    exp = Job.open(cmp_dir / "merge_bound_s3")
    assert Path(exp.config.merge_model) == cmp_dir / "full_s3" / "round_00" / "train"
    sample = exp.samples[0]
    # the pipeline's first batch (4 images in order), so the floats are computed alike
    batch = [(s.name, exp.descriptor.read_image(s)) for s in exp.samples[:4]]
    ref_probs = next(Predictor.from_train_dir(exp.config.merge_model).stream(batch))[1]
    own_probs = next(Predictor.from_train_dir(exp.round_dir(0) / "train").stream(batch))[1]
    base = exp.load_map(0, sample.name)
    regions, stats = region_maps.load_with_stats(exp.map_path(1, sample.name))
    expected = adaptive.adaptive_superpixels(ref_probs, base, exp.config.eps).regions
    np.testing.assert_array_equal(regions, expected)
    own = R.region_statistics(own_probs, regions)
    np.testing.assert_allclose(stats["uncertainty"], own.uncertainty, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stats["dominant_class"], own.dominant_class)


def test_identical_labels_give_identical_weights_across_processes(budget_mapped):
    """The warm-up round of random (default mode) and of paper at the same budget (the budget
    map, another process): the same labels, the same weights to the last bit, the same scores."""
    cmp_dir, out, _, _ = budget_mapped
    ref = Job.open(cmp_dir / "random_s3")
    other = Job.open(cmp_dir / "budget_5pct" / "paper_s3")
    assert ref.config.clicks_per_round == other.config.clicks_per_round
    assert "paper_s3: warm-up round shared" not in out.stdout  # trained, not copied
    with np.load(ref.round_dir(0) / "train" / "final_weights.npz") as a, \
            np.load(other.round_dir(0) / "train" / "final_weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            assert a[k].tobytes() == b[k].tobytes(), k
    assert [r for r in other.ledger.read() if r["round"] == 0] == [r for r in ref.ledger.read() if r["round"] == 0]
    assert json.loads((other.round_dir(0) / "eval.json").read_text()) == \
        json.loads((ref.round_dir(0) / "eval.json").read_text())


def test_collapse_warning_reaches_the_output(compared):
    """The driver prints the regions stage's collapse warning exactly when its manifest has one
    (when it is given: tests/test_experiment.py)."""
    cmp_dir, out, _, _ = compared
    m = Job.open(cmp_dir / "merge_bound_s3").manifest(1)["regions"]
    assert ("warning" in m) == ("WARNING: round 1: the adaptive merge left" in out.stderr)
    assert ("warning" in m) == ("too weak for eps=0.02" in out.stderr)
    # TensorFlow's start-up notices are kept out of the drivers' output
    assert "cuInit" not in out.stderr and "absl::InitializeLog" not in out.stderr


def test_an_arm_added_later_leaves_the_finished_ones_alone(compared):
    """The second run (merge_bound added to ARMS) resumes: the reference, random and its numerics
    job are found complete, nothing of theirs is trained or written again, and the report
    covers both arms."""
    cmp_dir, out, first, before = compared
    assert "train done" in first.stdout
    for header in ("=== cmp: reference, seed 3", "=== cmp: arm random, seed 3",
                   "=== cmp: numerics_onednn0, arm random, seed 3"):
        part = _section(out.stdout, header)
        assert "already complete" in part and "train done" not in part, header
    assert "train done" in _section(out.stdout, "=== cmp: arm merge_bound, seed 3")
    for job, files in before.items():
        assert _files(cmp_dir / job) == files, job
    with open(cmp_dir / "comparison.csv") as f:
        assert {r["arm"] for r in csv.DictReader(f)} == {"full", "random", "merge_bound"}


def test_shared_warm_up_equals_own(budget_mapped, tmp_path):
    """A shared warm-up round is the one the arm would have trained itself: random at 5 % in the
    budget map (shared from paper) against random in the default mode (trained by its process);
    and share_warm_up leaves alone a job whose source has not finished or which has its own."""
    cmp_dir, out, _, _ = budget_mapped
    shared = Job.open(cmp_dir / "budget_5pct" / "random_s3")
    own = Job.open(cmp_dir / "random_s3")
    assert f"{shared.job_dir}: warm-up round shared from {cmp_dir / 'budget_5pct' / 'paper_s3'}" in out.stdout
    ms, mo = shared.manifest(0), own.manifest(0)
    for stage in ("select", "annotate", "data", "eval"):
        assert ms[stage] == mo[stage]
    assert ms["train"]["final_loss"] == mo["train"]["final_loss"]  # bit-identical training
    assert [r for r in own.ledger.read() if r["round"] == 0] == \
        [r for r in shared.ledger.read() if r["round"] == 0]
    assert not (shared.round_dir(0) / "tfrecord").exists()
    import shutil

    for arm in AL_ARMS:
        job = tmp_path / f"{arm}_s3"
        shutil.copytree(cmp_dir / f"{arm}_s3", job, ignore=shutil.ignore_patterns("round_*", "ledger.jsonl"))
        config = json.loads((job / "config.json").read_text())
        (job / "config.json").write_text(json.dumps({**config, "job_dir": str(job)}))
    msg = compare.share_warm_up(tmp_path / "random_s3", tmp_path / "merge_bound_s3")
    assert "has not finished" in msg and not (tmp_path / "merge_bound_s3" / "round_00").exists()
    assert "shared" in compare.share_warm_up(cmp_dir / "random_s3", tmp_path / "merge_bound_s3")
    assert "has its own" in compare.share_warm_up(cmp_dir / "random_s3", tmp_path / "merge_bound_s3")


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


def _row(arm, seed, t, clicks, miou, **extra):
    return {"arm": arm, "seed": seed, "round": t, "clicks": clicks, "miou": miou,
            "labelled_px": extra.get("px", ""), "label_noise_after_sieve": extra.get("noise", ""),
            **{k: v for k, v in extra.items() if k not in ("px", "noise")}}


def test_paired_differences_by_seed():
    rows = []
    for seed, (r0, p1, r1) in enumerate([(20.0, 25.0, 22.0), (18.0, 21.0, 22.0), (22.0, 26.0, 23.0)]):
        rows += [_row("random", seed, 0, 10, r0), _row("paper", seed, 0, 10, r0),
                 _row("random", seed, 1, 20, r1), _row("paper", seed, 1, 20, p1)]
    d = {(x["pair"], x["round"]): x for x in compare.paired_differences(rows)}
    assert d[("paper - random", 0)]["mean"] == 0 and d[("paper - random", 0)]["positive"] == 0
    x = d[("paper - random", 1)]
    diffs = np.array([3.0, -1.0, 3.0])
    assert x["mean"] == pytest.approx(diffs.mean())
    assert x["se"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    assert (x["positive"], x["negative"], x["seeds"]) == (2, 1, 3)
    assert ("paper - class_balanced", 1) not in d  # an arm that did not run


def test_classes_learnt_is_a_share_of_the_data_sets_classes():
    """P7 asks 60 % of the classes, rounded up: 12 of 19 as before, 7 of CamVid's 11 (never a
    count that a data set with fewer classes cannot reach)."""
    for count, need in ((19, 12), (11, 7), (14, 9), (5, 3)):
        names = [f"c{i}" for i in range(count)]
        for learnt in (need - 1, need):
            iou = {iou_column(n): (30.0 if i < learnt else 0.5) for i, n in enumerate(names)}
            pid, text, figure, ok = compare._classes_learnt([_row("full", 0, "", 1, 40.0, **iou)], names)
            assert figure == f"{learnt} of {count}" and ok == (learnt == need), (count, learnt)
            assert f">= {need} classes" in text


def test_properties_on_constructed_rows():
    names = [f"c{i}" for i in range(14)]
    iou = {iou_column(n): (50.0 if i < 12 else 0.5) for i, n in enumerate(names)}
    rows = [_row("full", s, "", 1000, 40.0 + s, **iou) for s in range(3)]
    for s in range(3):
        rows += [_row("random", s, 0, 10, 30.0 + s, px=500, noise=0.02),
                 _row("random", s, 1, 20, 32.0 + s, px=900, noise=0.03),
                 _row("paper", s, 0, 10, 30.0 + s, px=500, noise=0.02),
                 _row("paper", s, 1, 20, 30.5 - s, px=1200, noise=0.05)]
    summary = compare.summarize(rows)
    # seed 0 again with oneDNN off: paper - random at round 1 is +1.0 there, -3.5 in the main run
    numerics = [dict(_row(arm, 0, t, 10 * (t + 1), m), onednn="0") for arm, t, m in
                (("random", 0, 31.5), ("paper", 0, 31.5), ("random", 1, 31.0), ("paper", 1, 32.0))]
    props = {p["id"]: p for p in compare.properties(rows, summary, names, 1000, numerics, (140.0, 2),
                                                    frequent=[0, 1, 2, 3, 4])}
    assert props["P1"]["pass"] and "31.00 / 41.00" in props["P1"]["figure"]  # 75.6 %
    assert props["P2"]["pass"] and props["P2"]["figure"] == "10.00"
    assert props["P3"]["pass"] and "10 of 1000 = 1.00 %" in props["P3"]["figure"]
    # paper: round 1 mean 29.5 < round 0 mean 31 - s.e. 0.577
    assert not props["P4"]["pass"] and "paper round 1" in props["P4"]["figure"]
    assert not props["P5"]["pass"]
    assert ("paper - random r1: -3.50 (oneDNN 1, 3 seeds) vs +1.00 (oneDNN 0, 1) FLIPPED"
            in props["P5"]["figure"])
    # the warm-up rows carry no IoU here: P9 says what it needs
    assert props["P9"]["pass"] is None and "needs" in props["P9"]["figure"]
    assert props["P6"]["pass"] and "0.58 vs 2.50" in props["P6"]["figure"]  # std 1 over 3 seeds
    assert props["P7"]["figure"] == "12 of 14" and props["P7"]["pass"]
    assert props["P8"]["pass"] and "2 runs" in props["P8"]["figure"]
    md = compare.format_markdown(summary, rows, names, list(props.values()))
    assert "| P4 |" in md and "FAIL" in md and "## Paired differences" in md
    assert "| paper | 1 | 60.0 | 0.0500 |" in md  # 1200 px / 20 clicks


def test_p9_compares_the_warm_up_with_the_reference_in_the_frequent_classes():
    names = ["a", "b", "c"]
    ref = {iou_column("a"): 80.0, iou_column("b"): 60.0, iou_column("c"): 10.0}
    rows = [_row("full", s, "", 1000, 50.0, **ref) for s in (0, 1)]
    for s, (a, b) in enumerate([(70.0, 40.0), (74.0, 44.0)]):  # means 72 and 42: 114 of 140
        rows.append(_row("random", s, 0, 10, 30.0, **{iou_column("a"): a, iou_column("b"): b,
                                                       iou_column("c"): 0.0}))
    pid, _, figure, ok = compare.frequent_property(rows, names, [0, 1])
    assert (pid, ok) == ("P9", True) and figure.startswith("81.4 % (a 72.0/80.0, b 42.0/60.0)")
    _, _, figure, ok = compare.frequent_property(rows, names, [1])  # 42 of 60: 70 %
    assert not ok and figure.startswith("70.0 %")


def test_page_views_of_a_later_round_hatch_earlier_answers(compared, tmp_path):
    """The annotation page of round 1 draws each query with what round 0 labelled hatched."""
    from deeplab import io_utils
    from deeplab.annotate.session import RoundSession
    from deeplab.viz.views import render_view

    cmp_dir = compared[0]
    exp = Job.open(cmp_dir / "merge_bound_s3")
    session = RoundSession(exp, 1)
    earlier = exp.ledger.by_image(upto_round=0)
    checked = {"hatched": 0, "beside": 0, "plain": 0}
    for i, q in enumerate(session.queries):
        regions = exp.load_map(1, q["image"])
        labelled = None
        if q["image"] in earlier:
            answers = L.answer_luts(earlier[q["image"]])
            painted, _ = L.paint({0: exp.load_map(0, q["image"])}, answers)
            labelled = painted != 255
        kind = "plain" if labelled is None else \
            "hatched" if (labelled & (regions == q["region"])).any() else "beside"
        if checked[kind] >= 2:
            continue
        checked[kind] += 1
        image = exp.descriptor.read_image(session.samples[q["image"]])
        expected = io_utils.encode_png(render_view(image, regions == q["region"], "zoom", labelled))
        assert session.view(i, "zoom") == expected, (i, kind)
    # some query's image carries round 0's answers (the hatching itself: test_annotation.py)
    assert checked["hatched"] + checked["beside"], checked
    # Label Studio's tasks show the same pixels as the read-only mask "answered"
    from deeplab.annotate import label_studio as ls

    out = tmp_path / "tasks.json"
    ls.export_round(exp, 1, out, document_root=exp.data_root, only_unanswered=False)
    answered = 0
    for task in json.loads(out.read_text()):
        d = task["data"]
        regions = exp.load_map(1, d["al_image"])
        want = np.zeros(regions.shape, bool)
        if d["al_image"] in earlier:
            answers = L.answer_luts(earlier[d["al_image"]])
            want = L.paint({0: exp.load_map(0, d["al_image"])}, answers)[0] != 255
        want &= regions == d["al_region"]
        got = [r for r in task["predictions"][0]["result"] if r["value"]["brushlabels"] == ["answered"]]
        assert len(got) == int(want.any())
        if got:
            answered += 1
            assert got[0]["readonly"]
            np.testing.assert_array_equal(ls.rle_to_mask(got[0]["value"]["rle"], *regions.shape), want)
    assert answered >= checked["hatched"] > 0, (answered, checked)  # every hatched view's query among them


def test_arms_at_equal_predicted_seconds():
    rows = []
    for s in range(2):
        rows += [dict(_row("random", s, 0, 10, 30.0 + s), predicted_seconds=100.0 + s),
                 dict(_row("random", s, 1, 20, 32.0 + s), predicted_seconds=200.0 + s),
                 dict(_row("paper", s, 1, 20, 33.0), predicted_seconds=300.0)]
    md = compare.format_markdown(compare.summarize(rows), rows, [])
    assert "At equal effort (COST_MODEL=measured)" in md
    assert "| random | 1 | 200 | 32.50 |" in md and "| paper | 1 | 300 | 33.00 |" in md
    clicks_only = [dict(r, predicted_seconds="n/a") for r in rows]
    assert "At equal effort" not in compare.format_markdown(compare.summarize(clicks_only), clicks_only, [])


@pytest.mark.parametrize("text,expected", [("500", (500, 0.0)), ("0.3%", (0, 0.3)), (" 10% ", (0, 10.0))])
def test_parse_budget(text, expected):
    assert compare.parse_budget(text) == expected


@pytest.mark.parametrize("budgets,message", [
    (["0%"], "'0%' is not a per-round budget"), (["-1"], "'-1' is not"), (["1e-9"], "'1e-9' is not"),
    (["101%"], "'101%' is not"), (["nan%"], "'nan%' is not"), (["1%", "1.0%"], "lists a budget twice"),
])
def test_bad_budgets_refused(budgets, message):
    with pytest.raises(ValueError, match=message):
        compare.check_budgets(budgets)


def _map_point(budget, diffs, images=100, pool=10_000):
    """A budget point whose paper - random differences per seed are `diffs` (last round 1)."""
    rows = []
    for s, d in enumerate(diffs):
        for arm, m1 in (("random", 30.0), ("class_balanced", 30.0), ("paper", 30.0 + d)):
            rows += [dict(_row(arm, s, 0, 10, 25.0), clicks_per_image=0.1),
                     dict(_row(arm, s, 1, 20, m1), clicks_per_image=0.2)]
    return {"budget": budget, "folder": Path("."), "seeds": list(range(len(diffs))),
            "images": images, "pool_base": pool, "rows": rows}


def test_crossover_is_the_smallest_budget_where_paper_pays():
    from deeplab.experiment import budget_map

    small = _map_point("0.3%", [1.0, -0.5, 2.0])  # signs disagree
    noisy = _map_point("1%", [0.1, 5.0, 0.2])  # all positive, mean 1.77 < 2 s.e. (2 x 1.62)
    pays = _map_point("3%", [2.0, 2.5, 3.0])  # 2.5 > 2 x 0.29
    large = _map_point("10%", [4.0, 4.0, 5.0])
    assert budget_map._per_round(pays) == pytest.approx(3.0)  # 300 of 10,000 over 100 images
    assert not budget_map.pays(budget_map.last_round_differences(noisy)[budget_map.CROSSOVER_PAIR])
    assert budget_map.crossover([small, noisy, pays, large])["budget"] == "3%"
    assert budget_map.crossover([small, noisy]) is None
    one_seed = _map_point("10%", [9.0])
    assert budget_map.crossover([one_seed]) is None  # a single seed never decides it
    table = "\n".join(budget_map.map_table([small, pays], ["full", "random", "class_balanced", "paper"], 40.0))
    assert "+2.50 +/- 0.29 (3/0 of 3) **pays**" in table
    assert "+0.83 +/- 0.73 (2/1 of 3) |" in table
    assert "adaptive" not in table  # a pair is a column only where the map ran both arms
    for p in (small, pays):  # adaptive: 1 point above random in every seed
        p["rows"] += [dict(r, arm="adaptive", miou=r["miou"] + (1.0 if r["round"] else 0.0))
                      for r in p["rows"] if r["arm"] == "random"]
    head, _, first = budget_map.map_table([small, pays], ["full", "random", "class_balanced", "adaptive",
                                                          "paper"], 40.0)[:3]
    assert head.endswith("| paper − class_balanced | adaptive − random |")
    assert first.endswith("| +1.00 +/- 0.00 (3/0 of 3) **pays** |")


def test_warm_up_frequent_share_and_class_change():
    from deeplab.experiment import budget_map

    names = ["a", "b", "c"]
    ref = [dict(_row("full", s, "", 100, 40.0), iou_a=80.0, iou_b=40.0, iou_c=10.0) for s in (0, 1)]
    point = {"rows": [], "seeds": [0, 1]}
    for s in (0, 1):
        point["rows"] += [dict(_row("random", s, 0, 10, 20.0), iou_a=60.0, iou_b=20.0, iou_c=0.0),
                          dict(_row("random", s, 1, 20, 25.0), iou_a=70.0, iou_b=30.0 + s, iou_c=2.0)]
    warm = compare.iou_matrix(point["rows"], "random", 0, names)
    refm = compare.iou_matrix(ref, "full", "", names)
    assert compare.frequent_share(warm, refm, [0, 1]) == pytest.approx(80 / 120)
    lines = budget_map.class_change_table(point, ["random"], names, [0, 1], ref)
    assert "| random | 1 | 40.00 -> 50.25 (+10.25) | 0.00 -> 2.00 (+2.00) |" in lines
    assert any("a 60.0 of 80.0, b 20.0 of 40.0; 66.7 % of the reference" in ln for ln in lines)


# ---------------------------------------------------------------------------- the budget map
def test_budget_map_runs_each_budget_and_shares_the_reference(budget_mapped):
    cmp_dir, first, out, _ = budget_mapped
    # the reference is the default mode's, in the map's own folder: found done, not run again,
    # and not once per budget
    for run in (first, out):
        assert run.stdout.count("=== cmp: reference, seed 3") == 1
        ref_part = _section(run.stdout, "=== cmp: reference, seed 3")
        assert "already complete" in ref_part and "train done" not in ref_part
    assert (cmp_dir / "full_s3" / "round_00" / "eval.json").is_file()
    assert not any(cmp_dir.glob("budget_*/full_s*"))
    with open(cmp_dir / "budget_map.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:7] == list(budget_map.FIELDS)
    assert list(rows[0])[-1] == "labelled_px" and "iou_road" in rows[0]
    for budget, share in (("10%", 0.10), ("5%", 0.05)):
        folder = cmp_dir / compare.budget_folder(budget)
        assert (folder / "comparison.md").is_file()
        for arm in ("random", "paper"):
            exp = Job.open(folder / f"{arm}_s3")
            assert exp.config.clicks_percent == pytest.approx(100 * share)
            mine = [r for r in rows if r["budget"] == budget and r["arm"] == arm]
            assert [r["round"] for r in mine] == ["0", "1"]
            assert int(mine[0]["clicks"]) == round(share * exp.base_regions_total())
            for r in mine:
                assert float(r["clicks_per_image"]) == pytest.approx(int(r["clicks"]) / len(exp.samples), abs=1e-4)
                ev = json.loads((exp.round_dir(int(r["round"])) / "eval.json").read_text())
                assert float(r["miou"]) == pytest.approx(100 * ev["miou"], abs=0.006)
        # the arms of one budget share its warm-up round
        rows0 = [[r for r in Job.open(folder / f"{a}_s3").ledger.read() if r["round"] == 0]
                 for a in ("random", "paper")]
        assert rows0[0] == rows0[1]
    ref = [r for r in rows if r["arm"] == "full"]
    assert len(ref) == 1 and ref[0]["budget"] == "all"
    md = (cmp_dir / "budget_map.md").read_text()
    assert "## Crossover" in md and "### 5% per round" in md and "### 10% per round" in md
    images = json.loads((cmp_dir / "budget_5pct" / "paper_s3" / "round_00" / "eval.json").read_text())["images"]
    assert f"seed(s). Every mIoU is on the val split ({images} images).\n" in md
    assert md.index("### 5% per round") < md.index("### 10% per round")  # by clicks per image
    assert "Frequent classes: the 5 with the most ground-truth pixels" in md


def test_budget_map_plot_draws_both_panels(budget_mapped):
    """The two panels' contents, read back from the figure: one line per arm on the left, one
    per pair on the right."""
    from PIL import Image

    cmp_dir = budget_mapped[0]
    image = np.asarray(Image.open(cmp_dir / "budget_map.png").convert("RGB"))
    h, w, _ = image.shape
    assert w > 1.8 * h  # two panels side by side
    left, right = image[:, : w // 2], image[:, w // 2:]

    def pixels(panel, rgb):
        return (np.abs(panel.astype(int) - rgb).sum(-1) < 40).sum()

    # matplotlib's first two colours, blue and orange: the arms paper and random on the left;
    # on the right the one pair both arms form (paper - random), so blue only
    blue, orange = (31, 119, 180), (255, 127, 14)
    assert pixels(left, blue) > 50 and pixels(left, orange) > 50
    assert pixels(right, blue) > 50 and pixels(right, orange) == 0


def test_a_budget_added_later_leaves_the_mapped_ones_alone(budget_mapped):
    """The second run (10 % added, listed first) resumes: 5 % is found complete and nothing of
    it is written again; the map keeps the first run's rows and adds the new budget's."""
    cmp_dir, _, out, before = budget_mapped
    for arm in ("paper", "random"):
        part = _arm_output(out, cmp_dir, "budget_5pct", arm)
        assert "already complete" in part and "train done" not in part, arm
        assert "train done" in _arm_output(out, cmp_dir, "budget_10pct", arm)
    assert _files(cmp_dir / "budget_5pct") == before["5%"]
    with open(cmp_dir / "budget_map.csv") as f:
        rows = list(csv.DictReader(f))
    old = list(csv.DictReader(before["csv"].splitlines()))
    assert {r["budget"] for r in old} == {"5%", "all"} and all(r in rows for r in old)
    assert {r["budget"] for r in rows} == {"5%", "10%", "all"}


def test_the_map_script_archives_the_finished_budgets_and_restores_them_elsewhere(budget_mapped, tmp_path):
    """docs/benchmark_budget/run.sh with RUN=0 (how the CamVid map's pages are drawn from a map
    still running) archives the reference's and every finished budget's small files, draws the
    map from the archive alone and copies each budget's report; run where the map's folder is
    missing, it restores the archive, and the jobs and the map drawn from it are the same."""
    import tarfile

    cmp_dir = budget_mapped[0]
    out_dir = tmp_path / "pages"

    def run(work_dir):
        env = {**os.environ, "RUN": "0", "WORK_DIR": str(work_dir), "MAP_NAME": cmp_dir.name,
               "OUT_DIR": str(out_dir), "BUDGETS": MAP_SETTINGS["BUDGETS"], "ARMS": MAP_SETTINGS["ARMS"]}
        done = subprocess.run(["bash", "docs/benchmark_budget/run.sh"], cwd=Path(__file__).parents[1],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run(cmp_dir.parent)
    with tarfile.open(out_dir / "results.tar.gz") as tar:
        names = tar.getnames()
    for job in ("full_s3", "budget_5pct/paper_s3", "budget_10pct/random_s3"):
        assert f"{job}/config.json" in names and f"{job}/round_00/eval.json" in names, job
    assert "budget_5pct/comparison.md" in names and "budget_10pct/paper_s3/ledger.jsonl" in names
    assert "budget_5pct/paper_s3/round_01/train/train_done.json" in names
    heavy = r"/(probs|maps|labels|ckpt|tfrecord)/|\.(png|npy|npz|tfrecord|index)$|\.data-\d+-of-\d+$"
    assert not [n for n in names if re.search(heavy, n)]  # no weights, maps or pictures
    assert (out_dir / "budget_map.csv").read_text() == (cmp_dir / "budget_map.csv").read_text()
    assert not re.search(r"tmp\.\w{6}", (out_dir / "budget_map.md").read_text())  # not the copy's folder
    for b in ("budget_5pct", "budget_10pct"):
        assert (out_dir / b / "comparison.csv").read_text() == (cmp_dir / b / "comparison.csv").read_text()
    elsewhere = tmp_path / "elsewhere"
    run(elsewhere)
    for job in ("budget_5pct/paper_s3", "budget_10pct/random_s3"):
        assert (elsewhere / cmp_dir.name / job / "results.csv").read_bytes() == \
            (cmp_dir / job / "results.csv").read_bytes()
    assert (out_dir / "budget_map.csv").read_text() == (cmp_dir / "budget_map.csv").read_text()


def test_parallel_arms_run_in_the_background_after_the_shared_warm_up(budget_mapped):
    """PARALLEL_ARMS=2 (the second map run): at 10 % the first arm's warm-up round is trained in
    the foreground before the other arm copies it; then both arms run at once, each into its own
    log, and the driver reports each as it finishes; the first run (serial) wrote no logs."""
    cmp_dir, first, out, _ = budget_mapped
    assert "running in the background" not in first.stdout
    paper = _section(out.stdout, "=== cmp: budget_10pct, arm paper, seed 3")
    random = _section(out.stdout, "=== cmp: budget_10pct, arm random, seed 3")
    assert "round 0: train done" in paper  # the shared warm-up, in the foreground
    assert "warm-up round shared from" in random and "train done" not in random
    for arm in ("paper", "random"):
        log = cmp_dir / "logs" / "budget_10pct" / f"{arm}_s3.log"
        assert f"its output: {log}" in out.stdout
        assert f"=== cmp: finished, {log}" in out.stdout
        text = log.read_text()
        assert "round 1: train done" in text and "round 0: train done" not in text
        exp = Job.open(cmp_dir / "budget_10pct" / f"{arm}_s3")
        assert (exp.round_dir(1) / "eval.json").is_file()


def test_parallel_arms_refuses_a_bad_count(tmp_path, data_root):
    full = {**os.environ, "WORK_DIR": str(tmp_path), "DATA_DIR": str(data_root), "PARALLEL_ARMS": "two"}
    out = subprocess.run(["bash", "bash_files/compare.sh"], cwd=ROOT, env=full, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and "PARALLEL_ARMS must be a whole number" in out.stderr
    assert not (tmp_path / "compare").exists()


def test_the_drivers_stderr_filter_keeps_progress_redraws_and_drops_tensorflow_notices(capfd):
    """What the comparison passes of a script's stderr: every byte but TensorFlow's start-up
    notices, a progress bar's carriage-return redraws as they come (not turned into new lines),
    a last line without its end too."""
    import os

    from deeplab.experiment import compare_driver

    r, w = os.pipe()
    os.write(w, b"train:  10%\rtrain:  20%\r\nE0000 cuda_platform.cc:51] failed call to cuInit: UNKNOWN\n"
                b"round 0: eval done\nlast")
    os.close(w)
    compare_driver._pass_stderr(r)
    os.close(r)
    assert capfd.readouterr().err == "train:  10%\rtrain:  20%\r\nround 0: eval done\nlast"
