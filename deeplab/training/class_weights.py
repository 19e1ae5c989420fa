"""Per-class loss weights from a round's training labels (CLASS_WEIGHTS).

`median_frequency` is the weighting SegNet trained CamVid with (Eigen and Fergus, ICCV 2015):
a class's frequency is its labelled pixels over the labelled pixels of the images it appears
in, and its weight is the median of the frequencies (over the classes present) divided by its
own, so a class half as frequent as the median counts twice. `sqrt_median_frequency` takes the
square root of those weights (a milder push). Only the labels a round trains on are counted
(the answers and their sieving, never the ground truth of unlabelled pixels), so the weights are
what an annotator's labels support. A class without a labelled pixel gets weight 1 (no pixel
uses it). No TensorFlow here.
"""

from __future__ import annotations

import numpy as np

from deeplab.errors import BadInput

WEIGHTINGS = ("none", "median_frequency", "sqrt_median_frequency")


def label_counts(label: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(class_px, image_px), int64 [C] each, of one label map (uint8 [H, W], ignore >= C):
    labelled pixels of each class, and for each class present the image's labelled pixels."""
    label = np.asarray(label)
    valid = label[label < num_classes]
    class_px = np.bincount(valid.ravel(), minlength=num_classes)[:num_classes].astype(np.int64)
    image_px = np.where(class_px > 0, valid.size, 0).astype(np.int64)
    return class_px, image_px


def weights(class_px: np.ndarray, image_px: np.ndarray, mode: str) -> tuple[float, ...] | None:
    """The loss weight of every class (None for `none`), from label_counts summed over images."""
    if mode not in WEIGHTINGS:
        raise BadInput(f"CLASS_WEIGHTS '{mode}' is unknown; valid: {', '.join(WEIGHTINGS)}")
    if mode == "none":
        return None
    class_px, image_px = np.asarray(class_px, np.float64), np.asarray(image_px, np.float64)
    present = class_px > 0
    if not present.any():
        raise BadInput("CLASS_WEIGHTS: the round's labels hold no labelled pixel")
    freq = np.where(present, class_px / np.maximum(image_px, 1), 0.0)
    w = np.where(present, np.median(freq[present]) / np.where(present, freq, 1.0), 1.0)
    if mode == "sqrt_median_frequency":
        w = np.sqrt(w)
    return tuple(float(v) for v in w)
