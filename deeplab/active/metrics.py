"""Quality measures of region maps and labels (docs/method.md section 11)."""

from __future__ import annotations

import numpy as np

from deeplab.active import regions as R
from deeplab.errors import BadInput


def asa(regions: np.ndarray, label: np.ndarray, ignore_label: int = 255) -> float:
    """Achievable segmentation accuracy: share of valid pixels that the best single label per
    region gets right."""
    valid = label != ignore_label
    if not valid.any():
        raise BadInput("label has no valid pixel: ASA is undefined")
    hist = R.histograms(regions[valid], label[valid].astype(np.int64), int(label[valid].max()) + 1,
                        R.num_slots(regions))
    return float(hist.max(axis=1).sum() / valid.sum())


def _boundary(m: np.ndarray) -> np.ndarray:
    b = np.zeros(m.shape, bool)
    dx = m[:, 1:] != m[:, :-1]
    dy = m[1:, :] != m[:-1, :]
    b[:, 1:] |= dx
    b[:, :-1] |= dx
    b[1:, :] |= dy
    b[:-1, :] |= dy
    return b


def boundary_recall(regions: np.ndarray, label: np.ndarray, tolerance_px: int = 2) -> float:
    """Share of ground-truth boundary pixels within `tolerance_px` (Chebyshev) of a region
    boundary."""
    from scipy.ndimage import binary_dilation

    gt = _boundary(label)
    if not gt.any():
        return 1.0
    near = binary_dilation(_boundary(regions), structure=np.ones((3, 3), bool),
                           iterations=tolerance_px) if tolerance_px > 0 else _boundary(regions)
    return float((near & gt).sum() / gt.sum())


def label_errors(labels: np.ndarray, ground_truth: np.ndarray, ignore_label: int = 255,
                 where: np.ndarray | None = None) -> tuple[int, int]:
    """(wrong, labelled): labelled pixels (inside `where` if given) and how many of them differ
    from the ground truth. Pixels whose ground truth is ignore count as wrong when labelled."""
    labelled = labels != ignore_label
    if where is not None:
        labelled &= where
    return int((labels[labelled] != ground_truth[labelled]).sum()), int(labelled.sum())


def label_noise(labels: np.ndarray, ground_truth: np.ndarray, ignore_label: int = 255):
    """(share of labelled pixels whose label differs from the ground truth, labelled count)."""
    wrong, n = label_errors(labels, ground_truth, ignore_label)
    return (wrong / n if n else 0.0), n
