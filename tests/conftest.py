import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Fixtures that run a driver or train rounds end to end (compared: a comparison; finished_job,
# tests/test_experiment.py: two trained rounds): a test that uses one is end to end itself
# (marked e2e, so that `pytest -m "not e2e"` leaves it out).
E2E_FIXTURES = {"compared", "finished_job"}

# The files with the most work first (worker-seconds in a full run on 2 cores, `pytest
# --durations=0`, 2026-12: compare about 510, model_train 280, experiment 180, paper_check 110,
# drivers 100, faults 90, label_studio_live 80; every other file under 30; the order below is an
# earlier measurement's, and any order that starts with compare balances the workers alike).
# pytest-xdist (pytest.ini: --dist loadfile --no-loadscope-reorder) gives each worker one file at
# the start and the next file in this order to a worker about to run out, so the run ends with
# small files on both workers instead of one long file started last on one. A file not named
# here keeps its place after these.
HEAVIEST_FIRST = ("test_compare.py", "test_experiment.py", "test_model_train.py", "test_faults.py",
                  "test_paper_check.py", "test_label_studio_live.py", "test_drivers.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    rank = {name: k for k, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order kept


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny synthetic data set (20 train, 13 val images at 64x128)."""
    from deeplab.datasets import synthetic

    root = tmp_path_factory.mktemp("synth")
    return synthetic.generate(root, num_train=20, num_val=13, height=64, width=128, seed=3)


@pytest.fixture(scope="session")
def synth_tfrecords(synth_root):
    from deeplab.datasets import build_data, get_dataset

    ds = get_dataset("synthetic")
    out = synth_root / "tfrecord"
    for split in ("train", "val"):
        build_data.build_split(ds, ds.list_split(synth_root, split), out, split, num_shards=2,
                               progress=False)
    return out


def make_folder_dataset(src_root, dest, labels=True, splits=True, num_train=6, num_val=3,
                        nested=True, jpeg_every=3):
    """A DATASET=folder data root made of synthetic scenes: images/ (PNG and some JPEG, part of
    them in a sub-folder), labels/ when asked, classes.json with colours, splits/ when asked."""
    import json
    import shutil
    from pathlib import Path

    from PIL import Image

    from deeplab.datasets import get_dataset

    ds = get_dataset("synthetic")
    dest = Path(dest)
    names = {}
    for split, n in (("train", num_train), ("val", num_val)):
        names[split] = []
        for k, s in enumerate(ds.list_split(src_root, split)[:n]):
            name = (f"site{k % 2}/" if nested else "") + f"{split}_{k:03d}"
            image = dest / "images" / name
            image.parent.mkdir(parents=True, exist_ok=True)
            if jpeg_every and k % jpeg_every == jpeg_every - 1:
                Image.open(s.image_path).convert("RGB").save(image.with_suffix(".jpg"), quality=95)
            else:
                shutil.copy(s.image_path, image.with_suffix(".png"))
            if labels:
                lab = dest / "labels" / f"{name}.png"
                lab.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(s.label_path, lab)
            names[split].append(name)
    (dest / "classes.json").write_text(json.dumps({"classes": [
        {"name": n, "color": c} for n, c in zip(ds.class_names, ds.hex_colours())],
        "ignore_label": 255}))
    if splits:
        (dest / "splits").mkdir(exist_ok=True)
        for split in ("train", "val"):
            (dest / "splits" / f"{split}.txt").write_text("\n".join(names[split]) + "\n")
    return dest


# compare.sh on tiny data: two rounds, 5 % of the base superpixels per round, a few steps, and a
# tiny stand-in backbone (compare.sh builds it when missing).
TINY_COMPARE = {"ROUNDS": "2", "CLICKS_PER_ROUND": "5%", "TRAIN_STEPS": "6", "TRAIN_CROP_SIZE": "65",
                "TRAIN_BATCH_SIZE": "4", "BASE_LEARNING_RATE": "0.01", "SUPERPIXEL_METHOD": "slic",
                "NUM_WORKERS": "1", "EPS": "0.02",
                "STANDIN_FLAGS": "--num_images 6 --num_val 2 --steps 3 --height 64 --width 128 "
                                 "--crop_size 65 --batch_size 2"}


@pytest.fixture(scope="session")
def compare_driver():
    """run(work_dir, data_dir, **settings): bash_files/compare.sh with TINY_COMPARE and the given
    settings; fails the test with the output's tail when the driver fails."""
    def run(work_dir, data_dir, **env):
        full = {**os.environ, "WORK_DIR": str(work_dir), "DATA_DIR": str(data_dir), **TINY_COMPARE, **env}
        out = subprocess.run(["bash", "bash_files/compare.sh"], cwd=Path(__file__).parents[1], env=full,
                             capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out
    return run


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, synth_root):
    """A copy of the tiny data set for one module's drivers, so that what they leave in it
    (nothing, checked in test_compare.py) cannot reach the other test modules."""
    root = tmp_path_factory.mktemp("compare_data") / "synth"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("superpixels", "tfrecord"))
    return root


# ---------------------------------------------------------------------------- a human job
def human_job(tmp_path, synth_root, clicks=5, class_names=None, **kw):
    """A folder data set without labels, ANNOTATOR=human, round 0 selected (no model needed).
    `class_names`: the first classes renamed."""
    import json

    from deeplab.experiment import tasks
    from deeplab.experiment.config import ExperimentConfig
    from deeplab.experiment.job import Experiment
    from deeplab.experiment.stages import select_round

    root = make_folder_dataset(synth_root, tmp_path / "data", labels=False, splits=False,
                               num_train=3, num_val=1)
    if class_names:
        classes = json.loads((root / "classes.json").read_text())
        for c, name in zip(classes["classes"], class_names):
            c["name"] = name
        (root / "classes.json").write_text(json.dumps(classes))
    config = ExperimentConfig(job_dir=str(tmp_path / "job"), dataset="folder", dataset_dir=str(root),
                              rounds=2, clicks_per_round=clicks, superpixel_method="slic",
                              superpixel_size_px=128.0,
                              **{"annotator": "human", "seed": 1, "num_workers": 1, **kw}).validate()
    config.save_or_check()
    exp = Experiment(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_round(exp, 0, progress=False))
    return exp


def human_job_from(exp, tmp_path, clicks=40):
    """A new human job on the data root of `exp` (after its images changed)."""
    from deeplab.experiment import tasks
    from deeplab.experiment.config import ExperimentConfig
    from deeplab.experiment.job import Experiment
    from deeplab.experiment.stages import select_round

    config = ExperimentConfig(job_dir=str(tmp_path / "job2"), dataset="folder",
                              dataset_dir=str(exp.data_root), rounds=2, clicks_per_round=clicks,
                              superpixel_method="slic", superpixel_size_px=128.0, annotator="human",
                              seed=1, num_workers=1).validate()
    config.save_or_check()
    new = Experiment(config)
    tasks.extract_base(new.descriptor, new.samples, new.base_dir, "slic", 128.0, progress=False)
    new.mark(0, "select", select_round(new, 0, progress=False))
    return new


# ---------------------------------------------------------------------------- pictures
MPL_BLUE, MPL_ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours


def colour_mask(path, rgb, tol=40):
    """Where a PNG holds colour `rgb` (within `tol`, summed over channels): figures are tested
    by what they draw, not by their size."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return np.abs(image - rgb).sum(-1) < tol


# ---------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Selenium (Debian's chromium and chromium-driver)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("the browser tests need Chromium and its driver: apt-get install chromium "
                    "chromium-driver (bash scripts/install_browser.sh, part of the README's test line)")
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    b = webdriver.Chrome(options=options, service=Service(driver))
    yield b
    b.quit()
