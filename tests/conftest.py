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
