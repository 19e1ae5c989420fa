import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import TINY_COMPARE

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


# compare.sh on tiny data: two rounds, 5 % of the base superpixels per round, a few steps, and a
# tiny stand-in backbone (compare.sh builds it when missing).


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


# ---------------------------------------------------------------------------- pictures


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
