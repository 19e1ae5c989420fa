"""Quality measures of region maps and labels (algorithms.md section 11)."""

from __future__ import annotations

import numpy as np

from deeplab.active import regions as R


def asa(regions: np.ndarray, label: np.ndarray, ignore_label: int = 255) -> float:
    """Achievable segmentation accuracy: share of valid pixels that the best single label per
    region gets right."""
    valid = label != ignore_label
    if not valid.any():
        raise ValueError("label has no valid pixel: ASA is undefined")
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


def label_noise(labels: np.ndarray, ground_truth: np.ndarray, ignore_label: int = 255):
    """(share of labelled pixels whose label differs from the ground truth, labelled count).
    Pixels whose ground truth is ignore count as wrong when labelled with a class."""
    labelled = labels != ignore_label
    n = int(labelled.sum())
    if n == 0:
        return 0.0, 0
    return float((labels[labelled] != ground_truth[labelled]).sum() / n), n


def size_summary(regions: np.ndarray) -> dict:
    s = R.sizes(regions)
    s = s[s > 0]
    return {"regions": int(len(s)), "mean_px": float(s.mean()), "median_px": float(np.median(s)),
            "max_px": int(s.max())}
