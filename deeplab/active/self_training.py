"""Confident pixels as training labels (docs/method.md section 13): the previous round's model
labels the pixels it is most sure of, class by class.

A pixel's class is its argmax and its confidence `p` that class's probability. Confidences are
binned by their distance from certainty on a log scale, so that the bins stay fine where a
trained model's confidences crowd (0.99, 0.999, ...): bin `min(floor(-log10(max(1 - p, FLOOR))
* BINS / DECADES), BINS - 1)`, higher = more confident, `FLOOR` = 1e-7 (float32 softmax
saturates there). Over every pixel of the pool, per class `c`: `k_c` is the highest bin such that
at least `share` of the pixels predicted as `c` lie in bins `>= k_c` (class-balanced in the manner
of Zou et al.'s CBST: each class gives the same share of its own predictions, so a frequent class
does not take the others' place). A pixel predicted as `c` becomes a label `c` when its bin is
`>= k_c`; a class the model never predicts labels nothing. Pixels in one bin tie: where more than
`share` of a class's pixels share its top bin (a model saturated at 1.0), all of them are taken,
and the data stage reports the share each class gave. Thresholds are whole bins, so they are
exact: one pass gathers the histograms, a second labels.
"""

from __future__ import annotations

import numpy as np

from deeplab.active import regions as R
from deeplab.errors import BadInput

DECADES = 7  # 1 - p from 1 down to FLOOR
FLOOR = 10.0 ** -DECADES
BINS = 400 * DECADES  # 0.0025 of a decade each


def check_share(share: float) -> None:
    if not np.isfinite(share) or not 0 < share <= 1:
        raise BadInput(f"SELF_TRAIN_SHARE must lie in (0, 1], got {share}")


def _class_and_bin(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arg, best, _ = R.top2(probs)
    R.check_top2(best)
    return arg.astype(np.int64), confidence_bin(best)


def confidence_bin(p: np.ndarray) -> np.ndarray:
    """int64: the bin of confidences `p` (higher = more confident)."""
    d = np.maximum(1.0 - np.asarray(p, np.float64), FLOOR)
    return np.minimum(np.floor(-np.log10(d) * (BINS / DECADES)), BINS - 1).astype(np.int64)


def confidence_histogram(probs: np.ndarray) -> np.ndarray:
    """int64 [C, BINS]: one image's pixels per (argmax class, confidence bin); these add over
    the pool."""
    probs = R.check_probs(probs)
    c = probs.shape[2]
    arg, b = _class_and_bin(probs)
    return np.bincount((arg * BINS + b).ravel(), minlength=c * BINS).reshape(c, BINS)


def class_thresholds(hist: np.ndarray, share: float) -> np.ndarray:
    """int64 [C]: `k_c` per class from the pool's histogram; BINS for a class never predicted."""
    check_share(share)
    hist = np.asarray(hist, np.int64)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # above[c, k]: pixels of c in bins >= k
    total = above[:, 0]
    ok = above >= share * total[:, None]
    # the highest k with ok (ok is true from 0 up to k_c, then false)
    k = BINS - 1 - np.argmax(ok[:, ::-1], axis=1)
    return np.where(total > 0, k, BINS).astype(np.int64)


def confident_labels(probs: np.ndarray, thresholds: np.ndarray, ignore_label: int = 255) -> np.ndarray:
    """uint8 [H, W]: the argmax class where its confidence bin reaches the class's threshold,
    `ignore_label` elsewhere."""
    probs = R.check_probs(probs)
    thresholds = np.asarray(thresholds, np.int64)
    if thresholds.shape != (probs.shape[2],):
        raise BadInput(f"{len(thresholds)} thresholds for {probs.shape[2]} classes")
    arg, b = _class_and_bin(probs)
    return np.where(b >= thresholds[arg], arg, ignore_label).astype(np.uint8)


def thresholds_as_confidence(thresholds: np.ndarray) -> list[float | None]:
    """The thresholds as the lowest confidence their bin holds; None where nothing is taken."""
    return [None if k >= BINS else float(1.0 - 10.0 ** (-int(k) * DECADES / BINS)) for k in thresholds]


def taken_shares(hist: np.ndarray, thresholds: np.ndarray) -> list[float | None]:
    """Per class: the share of its predicted pixels that the thresholds take (>= share, more
    where the top bins tie); None for a class never predicted."""
    hist = np.asarray(hist, np.int64)
    total = hist.sum(axis=1)
    return [None if n == 0 else round(float(hist[c, k:].sum() / n), 4)
            for c, (n, k) in enumerate(zip(total, thresholds))]
