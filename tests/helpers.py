"""Helpers the test files import (`from helpers import ...`); the fixtures live in
conftest.py. pytest puts tests/ on sys.path (rootdir conftest), so both import alike."""


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


TINY_COMPARE = {"ROUNDS": "2", "CLICKS_PER_ROUND": "5%", "TRAIN_STEPS": "6", "TRAIN_CROP_SIZE": "65",
                "TRAIN_BATCH_SIZE": "4", "BASE_LEARNING_RATE": "0.01", "SUPERPIXEL_METHOD": "slic",
                "NUM_WORKERS": "1", "EPS": "0.02",
                "STANDIN_FLAGS": "--num_images 6 --num_val 2 --steps 3 --height 64 --width 128 "
                                 "--crop_size 65 --batch_size 2"}


def human_job(tmp_path, synth_root, clicks=5, class_names=None, **kw):
    """A folder data set without labels, ANNOTATOR=human, round 0 selected (no model needed).
    `class_names`: the first classes renamed."""
    import json

    from deeplab.experiment import tasks
    from deeplab.experiment.settings import ExperimentConfig
    from deeplab.experiment.job import Job
    from deeplab.experiment.stages import select_stage

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
    exp = Job(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_stage(exp, 0, progress=False))
    return exp


def human_job_from(exp, tmp_path, clicks=40):
    """A new human job on the data root of `exp` (after its images changed)."""
    from deeplab.experiment import tasks
    from deeplab.experiment.settings import ExperimentConfig
    from deeplab.experiment.job import Job
    from deeplab.experiment.stages import select_stage

    config = ExperimentConfig(job_dir=str(tmp_path / "job2"), dataset="folder",
                              dataset_dir=str(exp.data_root), rounds=2, clicks_per_round=clicks,
                              superpixel_method="slic", superpixel_size_px=128.0, annotator="human",
                              seed=1, num_workers=1).validate()
    config.save_or_check()
    new = Job(config)
    tasks.extract_base(new.descriptor, new.samples, new.base_dir, "slic", 128.0, progress=False)
    new.mark(0, "select", select_stage(new, 0, progress=False))
    return new


MPL_BLUE, MPL_ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours


def colour_mask(path, rgb, tol=40):
    """Where a PNG holds colour `rgb` (within `tol`, summed over channels): figures are tested
    by what they draw, not by their size."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return np.abs(image - rgb).sum(-1) < tol


def ledger_row(i, t=0, image="a", answer=1):
    """One answer as the ledger stores it: region i of `image` in round t."""
    return {"round": t, "image": image, "region": i, "answer": answer, "size": 10, "score": 0.5,
            "cost": 1}


def load_script(name: str):
    """scripts/{name}.py as a module (its main() runs in this process)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
