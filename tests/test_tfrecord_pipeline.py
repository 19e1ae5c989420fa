import numpy as np
import pytest
import tensorflow as tf

from deeplab.datasets import data_generator, get_dataset, tfrecord
from deeplab import io_utils


def test_round_trip_is_exact(synth_root, synth_tfrecords):
    ds = get_dataset("synthetic")
    samples = ds.list_split(synth_root, "train")
    shards = tfrecord.list_shards(synth_tfrecords, "train")
    assert [s.rsplit("/", 1)[1] for s in shards] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    records = list(tfrecord.read_examples(synth_tfrecords, "train"))
    assert [r["name"] for r in records] == [s.name for s in samples]
    for rec, s in zip(records, samples):
        image, label = ds.load(s)
        np.testing.assert_array_equal(rec["image"], image)
        np.testing.assert_array_equal(rec["label"], label)
    # The stored bytes are the PNG encoding of the arrays.
    raw = next(iter(tf.data.TFRecordDataset(shards[0])))
    ex = tf.train.Example.FromString(raw.numpy())
    f = ex.features.feature
    image, label = ds.load(samples[0])
    assert f[tfrecord.IMAGE_ENCODED].bytes_list.value[0] == io_utils.encode_png(image)
    assert f[tfrecord.LABEL_ENCODED].bytes_list.value[0] == io_utils.encode_png(label)
    assert f[tfrecord.IMAGE_HEIGHT].int64_list.value[0] == 64
    assert f[tfrecord.IMAGE_WIDTH].int64_list.value[0] == 128
    assert f[tfrecord.IMAGE_FORMAT].bytes_list.value[0] == b"png"


def test_writer_checks_shapes_and_replaces_old_shards(tmp_path):
    with pytest.raises(ValueError, match="'a'.*4x5.*4x6"):
        tfrecord.make_example("a", np.zeros((4, 5, 3), np.uint8), np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        tfrecord.make_example("a", np.zeros((4, 5, 3), np.float32), None)
    exs = [tfrecord.make_example(str(i), np.full((4, 5, 3), i, np.uint8), np.full((4, 5), i, np.uint8))
           for i in range(5)]
    tfrecord.write_sharded(exs, 5, tmp_path, "train", 3)
    tfrecord.write_sharded(exs, 5, tmp_path, "train", 2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert [r["name"] for r in tfrecord.read_examples(tmp_path, "train")] == list("01234")
    with pytest.raises(FileNotFoundError, match="build_tfrecords"):
        tfrecord.list_shards(tmp_path, "val")


def _colour_coded(h=40, w=56, block=8):
    """An image of constant-colour blocks whose label is a function of the colour."""
    rng = np.random.default_rng(0)
    cls = rng.integers(0, 19, size=(h // block + 1, w // block + 1))
    label = np.kron(cls, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)
    image = np.stack([label * 10 + 5, 250 - label * 10, np.full_like(label, 77)], -1).astype(np.uint8)
    return image, label


def test_augmentation_keeps_image_and_label_aligned():
    image, label = _colour_coded()
    total_consistent = 0
    for i in range(30):
        out_img, out_lab = data_generator.augment(
            tf.constant(image), tf.constant(label[..., None]), tf.constant([5, i]), (33, 33))
        out_img, out_lab = out_img.numpy(), out_lab.numpy()
        assert out_img.shape == (33, 33, 3) and out_lab.shape == (33, 33)
        padded = out_lab == 255
        # Padding: the label is 255 exactly where the image holds the mean pixel.
        np.testing.assert_allclose(out_img[padded], 127.5)
        valid = ~padded
        # Where the colour is exactly a palette colour (block interiors), the label is its class.
        decoded = np.rint((out_img[..., 0] - 5) / 10)
        exact = valid & (np.abs(out_img[..., 0] - (decoded * 10 + 5)) < 1e-3) & \
            (np.abs(out_img[..., 1] - (250 - decoded * 10)) < 1e-3)
        assert exact.sum() > 0.5 * valid.sum()
        mismatch = (decoded[exact] != out_lab[exact]).mean()
        assert mismatch < 0.02, (i, mismatch)
        total_consistent += exact.sum()
    assert total_consistent > 0


def test_augmentation_pads_small_images_with_ignore():
    image = np.full((10, 12, 3), 200, np.uint8)
    label = np.zeros((10, 12, 1), np.uint8)
    img, lab = data_generator.augment(tf.constant(image), tf.constant(label), tf.constant([1, 2]),
                                      (65, 65), min_scale_factor=1.0, max_scale_factor=1.0,
                                      scale_factor_step_size=0.0, flip=False)
    lab = lab.numpy()
    assert (lab[:10, :12] == 0).all() and (lab[10:] == 255).all() and (lab[:, 12:] == 255).all()
    assert (img.numpy()[10:] == 127.5).all()


def test_training_pipeline_is_deterministic_with_seed(synth_tfrecords):
    def first_batches(seed):
        ds = data_generator.build_dataset(synth_tfrecords, "train", batch_size=3, is_training=True,
                                          crop_size=(33, 33), seed=seed, deterministic=True)
        return [b for b in ds.take(3).as_numpy_iterator()]

    a, b, c = first_batches(4), first_batches(4), first_batches(5)
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    ia, la = a[0]
    assert ia.shape == (3, 33, 33, 3) and la.dtype == np.int32
    assert set(np.unique(la)) <= set(range(19)) | {255}


def test_eval_pipeline_is_full_resolution_unaugmented(synth_root, synth_tfrecords):
    ds = get_dataset("synthetic")
    samples = ds.list_split(synth_root, "val")
    pipe = data_generator.build_dataset(synth_tfrecords, "val", batch_size=1, is_training=False)
    batches = list(pipe.as_numpy_iterator())
    assert len(batches) == len(samples)
    image, label = ds.load(samples[0])
    np.testing.assert_array_equal(batches[0]["image"][0], image.astype(np.float32))
    np.testing.assert_array_equal(batches[0]["label"][0], label)


def test_records_carry_the_source_image_bytes_unchanged(synth_root, tmp_path):
    from deeplab.datasets import build_data, get_dataset

    ds = get_dataset("synthetic")
    samples = ds.list_split(synth_root, "val")[:3]
    build_data.build_split(ds, samples, tmp_path, "val", num_shards=2, progress=False)
    raw = tf.data.TFRecordDataset(tfrecord.list_shards(tmp_path, "val"))
    stored = [tf.io.parse_single_example(r, tfrecord.features())[tfrecord.IMAGE_ENCODED].numpy() for r in raw]
    assert stored == [s.image_path.read_bytes() for s in samples]
    assert tfrecord.meta_matches(tmp_path, "val", [s.name for s in samples])
    assert not tfrecord.meta_matches(tmp_path, "val", [s.name for s in samples[:2]])


def test_every_image_kind_is_decoded_one_way_everywhere(tmp_path, synth_root):
    """16-bit grey, 8-bit grey, palette, RGBA, CMYK JPEG and RGB JPEG images: read_image (what
    the superpixels, the page and inference use) gives the RGB they hold, and the TFRecords
    hold those same pixels; what has no RGB meaning is refused with the file name."""
    import json

    from PIL import Image

    from deeplab.experiment import tasks
    from deeplab.viz.views import render_view
    from deeplab.datasets import build_data, get_dataset, tfrecord

    ds = get_dataset("synthetic")
    rgb = ds.read_image(ds.list_split(synth_root, "train")[0])
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    kinds = {
        "grey16": (Image.fromarray(grey.astype(np.uint16) * 257), "png", np.repeat(grey[..., None], 3, 2)),
        "grey8": (Image.fromarray(grey), "png", np.repeat(grey[..., None], 3, 2)),
        "palette": (Image.fromarray(rgb).quantize(64), "png", None),
        "rgba": (Image.fromarray(np.dstack([rgb, np.full(grey.shape, 90, np.uint8)])), "png", rgb),
        "cmyk": (Image.fromarray(rgb).convert("CMYK"), "jpg", None),
        "rgbjpeg": (Image.fromarray(rgb), "jpg", None),
        "rgb": (Image.fromarray(rgb), "png", rgb),
    }
    (root / "labels").mkdir()
    for name, (im, ext, _) in kinds.items():
        im.save(root / "images" / f"{name}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
        Image.fromarray((grey % 19).astype(np.uint8)).save(root / "labels" / f"{name}.png")
    assert Image.open(root / "images" / "grey16.png").mode.startswith("I")
    (root / "classes.json").write_text(json.dumps({"classes": [
        {"name": n, "color": c} for n, c in zip(ds.class_names, ds.hex_colours())]}))
    folder = get_dataset("folder", str(root))
    samples = {s.name: s for s in folder.list_split(root, "train")}
    decoded = {n: folder.read_image(samples[n]) for n in kinds}
    for name, (im, ext, expected) in kinds.items():
        got = decoded[name]
        assert got.dtype == np.uint8 and got.shape == rgb.shape, name
        if expected is None:  # palette / JPEG: Pillow's RGB of the file
            with Image.open(samples[name].image_path) as f:
                expected = np.asarray(f.convert("RGB"))
        np.testing.assert_array_equal(got, expected, err_msg=name)
    assert decoded["grey16"].std() > 10  # not all white
    # the TFRecords hold the same pixels (JPEGs included: TensorFlow's JPEG decoder differs)
    build_data.build_split(folder, list(samples.values()), tmp_path / "rec", "train", num_shards=1,
                           progress=False)
    for ex in tfrecord.read_examples(tmp_path / "rec", "train"):
        np.testing.assert_array_equal(ex["image"], decoded[ex["name"]], err_msg=ex["name"])
    # superpixels and the page's views are made from those pixels
    tasks.extract_base(folder, list(samples.values()), tmp_path / "base", "slic", 128.0, progress=False)
    from deeplab.experiment import region_maps

    m = region_maps.load(region_maps.path(tmp_path / "base", "grey16"))
    assert m.shape == grey.shape and m.max() > 4
    view = render_view(decoded["grey16"], m == 0, "whole")
    assert view.std() > 10
    # no RGB meaning: refused, naming the file
    Image.fromarray(grey.astype(np.float32)).save(root / "images" / "float.tif")
    bad = root / "images" / "float.tif"
    from deeplab.datasets.descriptors import read_rgb

    with pytest.raises(ValueError, match=r"float\.tif has mode F"):
        read_rgb(bad)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        io_utils.write_text(tmp_path / "a.json", "{}\n")
        with io_utils.atomic_path(tmp_path / "b.npz") as tmp:
            np.savez(tmp, x=np.zeros(2))
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    expected = stat.S_IMODE(plain.stat().st_mode)
    assert expected == 0o666 & ~umask
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_image_and_label_of_other_sizes_are_named_by_file(tmp_path, synth_root):

    from PIL import Image

    from deeplab.datasets import build_data

    ds = get_dataset("synthetic")
    sample = ds.list_split(synth_root, "train")[0]
    labels = tmp_path / "labels"
    path = build_data.label_png_path(labels, sample.name)
    path.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(path)
    with pytest.raises(ValueError, match=rf"image is .* but label is 10x12.*image {sample.image_path}.*label {path}"):
        build_data.example_of(ds, sample, labels)
