import hashlib

import numpy as np
import pytest
from PIL import Image

from deeplab.datasets import get_dataset, synthetic
from deeplab.datasets.cityscapes_labels import label_ids_to_train_ids


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.png")):
        h.update(f.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic_per_seed(tmp_path):
    a = synthetic.generate(tmp_path / "a", num_train=3, num_val=1, height=48, width=96, seed=7)
    b = synthetic.generate(tmp_path / "b", num_train=3, num_val=1, height=48, width=96, seed=7)
    c = synthetic.generate(tmp_path / "c", num_train=3, num_val=1, height=48, width=96, seed=8)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_generator_is_idempotent_and_regenerates_on_new_params(tmp_path):
    root = synthetic.generate(tmp_path, num_train=2, num_val=1, height=48, width=96)
    f = root / "image_list" / "train.txt"
    mtime = f.stat().st_mtime_ns
    synthetic.generate(tmp_path, num_train=2, num_val=1, height=48, width=96)
    assert f.stat().st_mtime_ns == mtime
    synthetic.generate(tmp_path, num_train=4, num_val=1, height=48, width=96)
    assert len(f.read_text().split()) == 4


def test_split_covers_all_classes_long_tailed(synth_root):
    ds = get_dataset("synthetic")
    counts = np.zeros(256, np.int64)
    for s in ds.list_split(synth_root, "val"):
        _, label = ds.load(s)
        counts += np.bincount(label.ravel(), minlength=256)
    assert (counts[:19] > 0).all(), f"missing classes {np.flatnonzero(counts[:19] == 0)}"
    assert counts[19:].sum() == 0
    share = counts[:19] / counts.sum()
    road, building, sky, rider, train = share[[0, 2, 10, 12, 16]]
    assert min(road, building, sky) > 0.08
    assert max(rider, train) < 0.02


def _asa(regions, label):
    hist = np.bincount(regions.ravel() * 256 + label.ravel(), minlength=(regions.max() + 1) * 256)
    hist = hist.reshape(-1, 256)[:, :255]
    return hist.max(1).sum() / hist.sum()


def test_scenes_are_hard_for_superpixels(synth_root):
    from skimage.segmentation import slic

    ds = get_dataset("synthetic")
    asa = []
    for s in ds.list_split(synth_root, "train")[:8]:
        image, label = ds.load(s)
        asa.append(_asa(slic(image, n_segments=32, start_label=0), label))
    assert np.mean(asa) < 0.95, asa


def test_missing_image_is_named(synth_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    victim = root / "leftImg8bit" / "val" / "synth" / "synth_000002_leftImg8bit.png"
    victim.unlink()
    with pytest.raises(FileNotFoundError, match="synth_000002"):
        get_dataset("synthetic").list_split(root, "val")


def test_empty_split_list(tmp_path):
    (tmp_path / "image_list").mkdir()
    (tmp_path / "image_list" / "train.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        get_dataset("cityscapes").list_split(tmp_path, "train")


def test_missing_split_list_names_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_image_list"):
        get_dataset("cityscapes").list_split(tmp_path, "train")


def _write_city(root, split, stem, image, label, kind):
    (root / "leftImg8bit" / split / "x").mkdir(parents=True, exist_ok=True)
    (root / "gtFine" / split / "x").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "leftImg8bit" / split / "x" / f"{stem}_leftImg8bit.png")
    Image.fromarray(label).save(root / "gtFine" / split / "x" / f"{stem}_gtFine_{kind}.png")


def test_label_values_out_of_range(tmp_path):
    label = np.zeros((8, 8), np.uint8)
    label[2, 3] = 19
    _write_city(tmp_path, "train", "a", np.zeros((8, 8, 3), np.uint8), label, "labelTrainIds")
    (tmp_path / "image_list").mkdir()
    (tmp_path / "image_list" / "train.txt").write_text("x/a\n")
    ds = get_dataset("cityscapes")
    (s,) = ds.list_split(tmp_path, "train")
    with pytest.raises(ValueError, match=r"a_gtFine_labelTrainIds.png.*\[19\]"):
        ds.load(s)


def test_image_label_size_mismatch(tmp_path):
    _write_city(tmp_path, "train", "a", np.zeros((8, 9, 3), np.uint8), np.zeros((8, 8), np.uint8),
                "labelTrainIds")
    (tmp_path / "image_list").mkdir()
    (tmp_path / "image_list" / "train.txt").write_text("x/a\n")
    ds = get_dataset("cityscapes")
    (s,) = ds.list_split(tmp_path, "train")
    for read in (ds.load, ds.read_label):  # named as soon as the label is read
        with pytest.raises(ValueError, match=r"a_gtFine_labelTrainIds.png is 8x8 px but its image .*a_leftImg8bit.png is 9x8"):
            read(s)


def test_cityscapes_label_ids_are_converted(tmp_path):
    ids = np.array([[7, 8, 11, 0], [26, 33, 23, 9]], np.uint8)
    _write_city(tmp_path, "val", "b", np.zeros((2, 4, 3), np.uint8), ids, "labelIds")
    (tmp_path / "image_list").mkdir()
    (tmp_path / "image_list" / "val.txt").write_text("x/b\n")
    ds = get_dataset("cityscapes")
    (s,) = ds.list_split(tmp_path, "val")
    assert s.label_kind == "cityscapes_label_ids"
    _, label = ds.load(s)
    np.testing.assert_array_equal(label, [[0, 1, 2, 255], [13, 18, 10, 255]])
    # Every train id 0..18 is reached exactly once.
    table = label_ids_to_train_ids(np.arange(34, dtype=np.uint8))
    assert sorted(table[table != 255].tolist()) == list(range(19))


def test_voc_layout(tmp_path):
    root = tmp_path
    (root / "JPEGImages").mkdir()
    (root / "SegmentationClassRaw").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    Image.fromarray(np.full((5, 6, 3), 90, np.uint8)).save(root / "JPEGImages" / "2007_1.jpg")
    Image.fromarray(np.full((5, 6), 20, np.uint8)).save(root / "SegmentationClassRaw" / "2007_1.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_1\n")
    ds = get_dataset("pascal_voc_seg")
    (s,) = ds.list_split(root, "train")
    image, label = ds.load(s)
    assert image.shape == (5, 6, 3) and label.max() == 20


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="cityscapes.*pascal_voc_seg.*synthetic"):
        get_dataset("kitti")


def test_bare_name_lists_as_the_original_writes_them(synth_root, tmp_path):
    """`image_list/train.txt` with `aachen_000000_000019` (the city is the name's prefix)."""
    import shutil

    root = tmp_path / "bare"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("tfrecord", "superpixels"))
    ds = get_dataset("synthetic")
    nested = ds.list_split(synth_root, "val")
    (root / "image_list" / "val.txt").write_text("".join(s.name.split("/")[-1] + "\n" for s in nested))
    bare = ds.list_split(root, "val")
    assert [s.name for s in bare] == [s.name.split("/")[-1] for s in nested]
    assert [s.image_path.relative_to(root) for s in bare] == \
        [s.image_path.relative_to(synth_root) for s in nested]
    assert [s.label_path.relative_to(root) for s in bare] == \
        [s.label_path.relative_to(synth_root) for s in nested]
