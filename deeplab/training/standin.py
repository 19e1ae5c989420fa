"""The ImageNet stand-in: a backbone pretrained once on synthetic street scenes of its own.

The paper starts every round from an ImageNet-pretrained Xception-65. Without network access
and at CPU scale, this module plays that part: it generates street scenes apart from every
pool and val split (their own generator seed), labels them with Cityscapes' 7 categories
(flat, construction, object, nature, sky, human, vehicle: a label space without the target's
19-class distinctions, as ImageNet's has none of Cityscapes'), trains DeepLabv3+ on them, and
keeps the **backbone only**:

  models/standin_{model_variant}_{key}.npz     backbone weights keyed by DeepLab's names
  models/standin_{model_variant}_{key}.json    how it was made, its cost, its own val mIoU

`INIT_CHECKPOINT` loads it the way DeepLab loads its ImageNet checkpoint: every backbone
variable (`xception_65/...`, batch-norm statistics included) is restored; ASPP, image pooling,
decoder and logits are absent from the file and start freshly initialised. The key is a digest
of every setting below, so a changed setting builds another file; training is deterministic
(seeded, deterministic kernels), resumes from its checkpoints, and the `.npz` is written last
(atomically), so a file that exists is complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.datasets.cityscapes_labels import CATEGORY_NAMES, TRAIN_ID_TO_CATEGORY
from deeplab.errors import BadInput
from deeplab.paths import MODELS_DIR

# The generator seed of the stand-in's scenes: the pools use their own (0 by default), and
# rng([seed, split, index]) streams of different seeds never coincide.
STANDIN_SCENE_SEED = 7_000_001


@dataclasses.dataclass(frozen=True)
class StandinConfig:
    model_variant: str = "xception_light"
    num_images: int = 600
    num_val: int = 50  # the stand-in's own val scenes, for its 7-category mIoU
    height: int = 128
    width: int = 256
    scene_seed: int = STANDIN_SCENE_SEED
    steps: int = 1500
    base_learning_rate: float = 0.07
    batch_norm_decay: float = 0.9
    crop_size: int = 129
    batch_size: int = 8
    seed: int = 0

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def validate(self) -> "StandinConfig":
        for name in ("num_images", "num_val", "steps", "crop_size", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise BadInput(f"stand-in: {name} must be a positive integer, got {v!r}")
        if self.base_learning_rate <= 0:
            raise BadInput(f"stand-in: base_learning_rate must be > 0, got {self.base_learning_rate}")
        return self


def weights_path(config: StandinConfig, models_dir: Path | str = MODELS_DIR) -> Path:
    return Path(models_dir) / f"standin_{config.model_variant}_{config.key()}.npz"


def backbone_prefix(model_variant: str) -> str:
    """The checkpoint scope of the backbone's variables (DeepLab's: `xception_65/`)."""
    from deeplab.core import xception

    return xception.backbone_config(model_variant)[0] + "/"


def _to_categories(label: np.ndarray) -> np.ndarray:
    return TRAIN_ID_TO_CATEGORY[label]


def _write_records(root: Path, split: str, out: Path) -> None:
    """TFRecords of a generated split with its labels mapped to the 7 categories."""
    from deeplab.datasets import get_dataset, tfrecord

    d = get_dataset("synthetic", root)
    samples = d.list_split(root, split)
    if tfrecord.meta_matches(out, split, [s.name for s in samples]):
        return
    examples = (tfrecord.make_example(s.name, s.image_path.read_bytes(),
                                      io_utils.encode_png(_to_categories(d.read_label(s))))
                for s in samples)
    tfrecord.write_sharded(examples, len(samples), out, split, num_shards=max(1, len(samples) // 100),
                           names=[s.name for s in samples])


def _intact(out: Path) -> bool:
    """The stand-in's weights are there and read whole; a damaged file is removed (it is made
    again, identically: its training resumes from its checkpoints)."""
    if not out.is_file():
        return False
    from deeplab.training.weights_file import read_weights

    try:
        read_weights(out)
        return True
    except ValueError:
        print(f"stand-in backbone {out} is damaged: building it again", file=sys.stderr)
        out.unlink()
        return False


def build(config: StandinConfig = StandinConfig(), work_dir: Path | str = "work_dirs",
          models_dir: Path | str = MODELS_DIR, progress: bool = True) -> Path:
    """Builds the stand-in backbone unless it exists; returns the `.npz` path.

    Scenes and training state live under `{work_dir}/standin/{key}/` (deleted by nobody: a
    rerun after a kill resumes training there). Progress goes to stderr.
    """
    config.validate()
    out = weights_path(config, models_dir)
    if _intact(out):
        return out
    from deeplab.datasets import synthetic
    from deeplab.model import ModelOptions
    from deeplab.training import checkpoints
    from deeplab.training.evaluate import evaluate
    from deeplab.training.trainer import TrainConfig, load_trained, train

    t0 = time.perf_counter()
    base = Path(work_dir) / "standin" / config.key()
    data = base / "scenes"
    print(f"stand-in backbone: {config.num_images} scenes (seed {config.scene_seed}), "
          f"{config.steps} steps on 7 categories -> {out}", file=sys.stderr)
    synthetic.generate(data, num_train=config.num_images, num_val=config.num_val,
                       height=config.height, width=config.width, seed=config.scene_seed,
                       progress=progress)
    for split in ("train", "val"):
        _write_records(data, split, base / "tfrecord")
    t_data = time.perf_counter() - t0
    n = len(CATEGORY_NAMES)
    options = ModelOptions(num_classes=n, model_variant=config.model_variant,
                           batch_norm_decay=config.batch_norm_decay)
    info = train(TrainConfig(
        train_logdir=str(base / "train"), tfrecord_dir=str(base / "tfrecord"), num_classes=n,
        model=options, training_number_of_steps=config.steps,
        base_learning_rate=config.base_learning_rate,
        train_crop_size=(config.crop_size, config.crop_size), train_batch_size=config.batch_size,
        save_interval_steps=max(100, config.steps // 5), seed=config.seed, deterministic=True,
        progress=progress))
    model, _ = load_trained(base / "train")
    res = evaluate(model, base / "tfrecord", "val", n, progress=progress)
    prefix = backbone_prefix(config.model_variant)
    arrays = {k: np.asarray(v.numpy()) for k, v in checkpoints.tf1_variables(model).items()
              if k.startswith(prefix)}
    seconds = time.perf_counter() - t0
    meta = {"config": dataclasses.asdict(config), "key": config.key(),
            "restored_by_init_checkpoint": f"every backbone variable ({prefix}*, {len(arrays)} "
                                           "arrays, batch-norm statistics included)",
            "initialised_fresh": "image_pooling, aspp*, concat_projection, decoder/*, logits/semantic",
            "categories": list(CATEGORY_NAMES),
            "val_miou_7_categories": round(100 * res["miou"], 2),
            "val_iou_7_categories": {c: None if v is None else round(100 * v, 2)
                                     for c, v in zip(CATEGORY_NAMES, res["per_class_iou"])},
            "seconds": round(seconds, 1), "seconds_data": round(t_data, 1),
            "train_images_per_second": info.get("images_per_second")}
    io_utils.write_json(out.with_suffix(".json"), meta)
    with io_utils.atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    print(f"stand-in backbone written: {out} ({len(arrays)} arrays, {seconds / 60:.1f} min; "
          f"7-category val mIoU {meta['val_miou_7_categories']:.2f})", file=sys.stderr)
    return out
