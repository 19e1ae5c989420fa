"""Cityscapes label id -> train id table.

An exact copy of the `id` -> `trainId` columns of the official table in
`cityscapesscripts/helpers/labels.py` (github.com/mcordts/cityscapesScripts). We copy the
34 rows instead of depending on `cityscapesscripts`, which pulls in pyquaternion, coloredlogs
and a Qt viewer for one table. `trainId` 255 and -1 (license plate) both mean "ignore".
"""

import numpy as np

# (id, name, trainId) exactly as in cityscapesscripts' `labels` list.
LABELS = (
    (0, "unlabeled", 255),
    (1, "ego vehicle", 255),
    (2, "rectification border", 255),
    (3, "out of roi", 255),
    (4, "static", 255),
    (5, "dynamic", 255),
    (6, "ground", 255),
    (7, "road", 0),
    (8, "sidewalk", 1),
    (9, "parking", 255),
    (10, "rail track", 255),
    (11, "building", 2),
    (12, "wall", 3),
    (13, "fence", 4),
    (14, "guard rail", 255),
    (15, "bridge", 255),
    (16, "tunnel", 255),
    (17, "pole", 5),
    (18, "polegroup", 255),
    (19, "traffic light", 6),
    (20, "traffic sign", 7),
    (21, "vegetation", 8),
    (22, "terrain", 9),
    (23, "sky", 10),
    (24, "person", 11),
    (25, "rider", 12),
    (26, "car", 13),
    (27, "truck", 14),
    (28, "bus", 15),
    (29, "caravan", 255),
    (30, "trailer", 255),
    (31, "train", 16),
    (32, "motorcycle", 17),
    (33, "bicycle", 18),
    (-1, "license plate", -1),
)

TRAIN_CLASS_NAMES = tuple(
    name for _, name, tid in sorted(LABELS, key=lambda r: r[2]) if 0 <= tid < 255
)

# Lookup table for uint8 label ids; ids not in the table map to 255.
ID_TO_TRAIN_ID = np.full(256, 255, dtype=np.uint8)
for _id, _name, _tid in LABELS:
    if _id >= 0:
        ID_TO_TRAIN_ID[_id] = _tid if 0 <= _tid < 255 else 255


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Maps a Cityscapes `*_gtFine_labelIds.png` array to train ids.

    Args:
      label_ids: uint8 [H, W] Cityscapes label ids.

    Returns:
      uint8 [H, W] train ids 0..18, 255 = ignore.
    """
    return ID_TO_TRAIN_ID[np.asarray(label_ids, dtype=np.uint8)]

# Colours (RGB) of the 19 train ids, in train-id order, as in cityscapesscripts' `labels` list;
# used to draw label maps.
TRAIN_ID_COLOURS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# Cityscapes' 7 categories (the `category` column of cityscapesscripts' table, void left out),
# and the category of each train id: a coarser label space without the 19 classes'
# distinctions (the stand-in backbone of deeplab/training/standin.py is pretrained on it).
CATEGORY_NAMES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
_CATEGORY_OF_TRAIN_NAME = {
    "road": 0, "sidewalk": 0, "building": 1, "wall": 1, "fence": 1, "pole": 2,
    "traffic light": 2, "traffic sign": 2, "vegetation": 3, "terrain": 3, "sky": 4,
    "person": 5, "rider": 5, "car": 6, "truck": 6, "bus": 6, "train": 6, "motorcycle": 6,
    "bicycle": 6,
}
# uint8 lookup table: train id -> category id; 255 (ignore) and unknown values stay 255.
TRAIN_ID_TO_CATEGORY = np.full(256, 255, dtype=np.uint8)
for _tid, _name in enumerate(TRAIN_CLASS_NAMES):
    TRAIN_ID_TO_CATEGORY[_tid] = _CATEGORY_OF_TRAIN_NAME[_name]
