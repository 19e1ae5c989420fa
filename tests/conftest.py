import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
