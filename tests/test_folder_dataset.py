"""Folder data sets (a group's own images): layout, classes.json, errors naming the file."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_folder_dataset

from deeplab.datasets import get_dataset

ROOT = Path(__file__).parents[1]


# ---------------------------------------------------------------------------- folder data sets
def test_folder_dataset_layout(tmp_path, synth_root):
    root = make_folder_dataset(synth_root, tmp_path / "f", labels=True, splits=True, num_train=5, num_val=2)
    ds = get_dataset("folder", root)
    assert ds.num_classes == 19 and ds.class_names[0] == "road" and ds.palette().shape == (19, 3)
    train = ds.list_split(root, "train")
    assert [s.name for s in train] == ["site0/train_000", "site1/train_001", "site0/train_002",
                                       "site1/train_003", "site0/train_004"]
    assert train[2].image_path.suffix == ".jpg" and all(s.label_path is not None for s in train)
    image, label = ds.load(train[2])
    assert image.shape[:2] == label.shape and image.dtype == np.uint8
    assert ds.has_split(root, "val") and len(ds.list_split(root, "val")) == 2
    # Without split lists: every image in the train pool, no val split.
    bare = make_folder_dataset(synth_root, tmp_path / "g", labels=False, splits=False, num_train=3, num_val=2)
    ds = get_dataset("folder", bare)
    assert len(ds.list_split(bare, "train")) == 5 and not ds.has_split(bare, "val")
    assert all(s.label_path is None for s in ds.list_split(bare, "train"))
    with pytest.raises(FileNotFoundError, match="has no label"):
        ds.read_label(ds.list_split(bare, "train")[0])


@pytest.mark.parametrize("spec, message", [
    (["road", "road"], "distinct"),
    ([], "non-empty list"),
    ({"classes": ["a", "b"], "ignore_label": 1}, "ignore_label 1 must be"),
    ({"classes": [{"name": "a", "color": "#12345"}]}, "colour '#12345'"),
    ({"classes": [{"name": "a", "color": "#123456"}, {"name": "b"}]}, "every class or for none"),
])
def test_bad_classes_json_is_refused(tmp_path, spec, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "classes.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message):
        get_dataset("folder", tmp_path)


def test_folder_errors_name_the_file(tmp_path, synth_root):
    with pytest.raises(ValueError, match="needs DATA_DIR"):
        get_dataset("folder")
    with pytest.raises(FileNotFoundError, match="images"):
        get_dataset("folder", tmp_path)
    root = make_folder_dataset(synth_root, tmp_path / "f", labels=False, splits=False, num_train=2, num_val=0)
    (root / "images" / "site0" / "train_000.jpg").write_bytes((root / "images" / "site0" / "train_000.png").read_bytes())
    with pytest.raises(ValueError, match="two images have the name 'site0/train_000'"):
        get_dataset("folder", root).list_split(root, "train")
    (root / "images" / "site0" / "train_000.jpg").unlink()
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("nowhere/img\n")
    with pytest.raises(FileNotFoundError, match="'nowhere/img'"):
        get_dataset("folder", root).list_split(root, "val")


def test_init_refuses_the_oracle_without_labels(tmp_path, synth_root, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import init_experiment

    root = make_folder_dataset(synth_root, tmp_path / "f", labels=False, splits=False, num_train=2, num_val=0)
    args = ["--job_dir", str(tmp_path / "job"), "--dataset", "folder", "--dataset_dir", str(root)]
    from deeplab import cli

    assert cli.guarded(init_experiment.main, args) == 2  # as the script runs it
    err = capsys.readouterr().err
    assert "have no label" in err and "ANNOTATOR=human" in err
    assert init_experiment.main(args + ["--annotator", "human"]) == 0
    assert "rounds are not evaluated" in capsys.readouterr().out


def test_an_evaluation_image_in_the_train_pool_is_refused(tmp_path, synth_root):
    """An image listed in train and in the evaluation split (val, or EVAL_SPLIT's) would be
    evaluated on its own labels: the job refuses it, naming the image and both lists."""
    from deeplab.errors import BadInput
    from deeplab.experiment.job import Job
    from deeplab.experiment.settings import ExperimentConfig

    root = make_folder_dataset(synth_root, tmp_path / "f", labels=True, splits=True, num_train=3, num_val=2,
                               nested=False)
    train = (root / "splits" / "train.txt").read_text().split()

    def job(split):
        return Job(ExperimentConfig(job_dir=str(tmp_path / f"job_{split}"), dataset="folder",
                                    dataset_dir=str(root), eval_split=split).validate())

    job("val").check_splits()  # apart: accepted
    (root / "splits" / "val.txt").write_text(f"val_000\n{train[1]}\n")
    with pytest.raises(BadInput, match=rf"1 images are in both the train and the val split \(first: '{train[1]}'\).*"
                                       r"train.txt and .*val.txt"):
        job("val").check_splits()
    (root / "splits" / "test.txt").write_text("val_001\n")
    job("test").check_splits()  # the test split is apart from train
    (root / "splits" / "test.txt").write_text(f"{train[0]}\n")
    with pytest.raises(BadInput, match=rf"in both the train and the test split \(first: '{train[0]}'\).*test.txt"):
        job("test").check_splits()
