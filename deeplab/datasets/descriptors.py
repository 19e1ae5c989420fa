"""Data-set descriptors: class count, ignore label, folder layout and split lists.

Split lists always come from files: `image_list/{split}.txt` in the Cityscapes layout (one
`city/name` stem per line, e.g. `aachen/aachen_000000_000019`, or the bare name as the original
code writes it, `aachen_000000_000019`, whose city is the name's prefix before the first `_`) and
`ImageSets/Segmentation/{split}.txt` in the PASCAL VOC layout. Nothing here knows how many
images a split has.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.datasets import cityscapes_labels
from deeplab.paths import DATASETS_DIR

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One listed image of a split.

    Attributes:
      name: unique name inside the split (`city/stem` or the VOC id); used as the TFRecord
        `image/filename` and to name per-image files (superpixel maps, label PNGs).
      image_path: the RGB image.
      label_path: the ground-truth label file.
      label_kind: `train_ids` (values 0..C-1, 255) or `cityscapes_label_ids` (converted with
        the official Cityscapes table when read).
    """

    name: str
    image_path: Path
    label_path: Path
    label_kind: str = "train_ids"


@dataclasses.dataclass(frozen=True)
class DatasetDescriptor:
    """What the code needs to know about a data set, by name."""

    name: str
    num_classes: int
    ignore_label: int
    layout: str  # "cityscapes" or "voc"
    class_names: tuple[str, ...]
    default_dir: str  # sub-folder of datasets/

    def default_root(self) -> Path:
        return DATASETS_DIR / self.default_dir

    # ------------------------------------------------------------------ split lists
    def list_file(self, root: Path | str, split: str) -> Path:
        root = Path(root)
        if self.layout == "cityscapes":
            return root / "image_list" / f"{split}.txt"
        return root / "ImageSets" / "Segmentation" / f"{split}.txt"

    def list_split(self, root: Path | str, split: str) -> list[Sample]:
        """Returns the samples listed for `split`, checking that every listed file exists.

        Raises:
          FileNotFoundError: the list file, or a listed image or label, is missing.
          ValueError: the list is empty.
        """
        root = Path(root)
        list_path = self.list_file(root, split)
        if not list_path.is_file():
            hint = (
                "write it with `python scripts/make_image_list.py --dataset_dir "
                f"{root} --split {split}`"
                if self.layout == "cityscapes"
                else "it is part of the VOC devkit (ImageSets/Segmentation)"
            )
            raise FileNotFoundError(f"split list {list_path} does not exist: {hint}")
        names = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
        if not names:
            raise ValueError(
                f"split list {list_path} is empty: list one image per line for split '{split}'"
            )
        samples = [self._sample(root, split, n) for n in names]
        for s in samples:
            if not s.image_path.is_file():
                raise FileNotFoundError(
                    f"image for '{s.name}' listed in {list_path} is missing: {s.image_path}"
                )
            if not s.label_path.is_file():
                raise FileNotFoundError(
                    f"label for '{s.name}' listed in {list_path} is missing: {s.label_path}"
                )
        return samples

    def _sample(self, root: Path, split: str, name: str) -> Sample:
        if self.layout == "voc":
            return Sample(
                name,
                root / "JPEGImages" / f"{name}.jpg",
                root / "SegmentationClassRaw" / f"{name}.png",
            )
        name = name.removesuffix(".png").removesuffix("_leftImg8bit")
        city_stem = Path(name)
        if city_stem.parent == Path(".") and "_" in name:  # bare name: the city is its prefix
            city_stem = Path(name.split("_", 1)[0]) / name
        image = root / "leftImg8bit" / split / city_stem.parent / f"{city_stem.name}_leftImg8bit.png"
        gt_dir = root / "gtFine" / split / city_stem.parent
        train_ids = gt_dir / f"{city_stem.name}_gtFine_labelTrainIds.png"
        if train_ids.is_file():
            return Sample(name, image, train_ids, "train_ids")
        label_ids = gt_dir / f"{city_stem.name}_gtFine_labelIds.png"
        if label_ids.is_file():
            return Sample(name, image, label_ids, "cityscapes_label_ids")
        return Sample(name, image, train_ids, "train_ids")  # reported missing by list_split

    # ------------------------------------------------------------------ reading
    def read_image(self, sample: Sample) -> np.ndarray:
        """uint8 [H, W, 3] RGB."""
        return read_rgb(sample.image_path)

    def read_label(self, sample: Sample) -> np.ndarray:
        """uint8 [H, W] train ids 0..C-1, 255 = ignore; checked."""
        label = read_label_png(sample.label_path)
        if sample.label_kind == "cityscapes_label_ids":
            label = cityscapes_labels.label_ids_to_train_ids(label)
        check_label_values(label, self.num_classes, self.ignore_label, sample.label_path)
        return label

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Reads and checks one (image, label) pair."""
        image = self.read_image(sample)
        label = self.read_label(sample)
        if image.shape[:2] != label.shape:
            raise ValueError(
                f"image {sample.image_path} is {image.shape[0]}x{image.shape[1]} but label "
                f"{sample.label_path} is {label.shape[0]}x{label.shape[1]}: they must match"
            )
        return image, label


def read_rgb(path: Path | str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise ValueError(f"image {path} cannot be decoded ({e}); replace the file") from e


def read_label_png(path: Path | str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label {path} does not exist")
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise ValueError(
                    f"label {path} has mode {im.mode}; expected a single-channel 8-bit PNG "
                    "(mode L or P) holding class ids"
                )
            return np.asarray(im, dtype=np.uint8)
    except OSError as e:
        raise ValueError(f"label {path} cannot be decoded ({e}); replace the file") from e


def check_label_values(label: np.ndarray, num_classes: int, ignore_label: int, where) -> None:
    """Raises ValueError naming `where` if `label` holds values outside 0..C-1 and ignore."""
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_label)]
    if bad.size:
        raise ValueError(
            f"label {where} holds values {bad.tolist()[:10]} outside 0..{num_classes - 1} and "
            f"{ignore_label} (ignore): convert it to train ids first"
        )


DATASETS = {
    "cityscapes": DatasetDescriptor(
        "cityscapes", 19, 255, "cityscapes", cityscapes_labels.TRAIN_CLASS_NAMES, "cityscapes"
    ),
    "pascal_voc_seg": DatasetDescriptor(
        "pascal_voc_seg", 21, 255, "voc", VOC_CLASS_NAMES, "pascal_voc_seg/VOCdevkit/VOC2012"
    ),
    # The embedded street scenes: Cityscapes layout and classes (deeplab.datasets.synthetic).
    "synthetic": DatasetDescriptor(
        "synthetic", 19, 255, "cityscapes", cityscapes_labels.TRAIN_CLASS_NAMES, "synthetic"
    ),
}


def get_dataset(name: str) -> DatasetDescriptor:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown data set '{name}'; valid names: {', '.join(sorted(DATASETS))}"
        ) from None
