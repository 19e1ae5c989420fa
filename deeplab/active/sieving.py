"""Sieving (docs/method.md section 8): drop the pixels of a large answered region that the
previous round's model finds unlikely under the answer.

Per region: confidences `probs[x, L]` sorted ascending, every `max(1, n // curve_points)`-th value
kept (points y_0..y_k at x = 0..k), knee by Kneedle (S=1, concave, increasing: exactly
`kneed.KneeLocator`), threshold `t = y_knee` (no knee: `t = y_0`, keep all); pixels with
`conf < t` become 255. Gathering, sorting and sub-sampling are vectorised over all answered
regions of an image at once; only the knee search on the ~`curve_points` points of each large region
runs per region, through kneed itself.
"""

from __future__ import annotations

import warnings

import numpy as np

from deeplab.active import regions as R
from deeplab.errors import BadInput


def knee_threshold(y: np.ndarray) -> float:
    """Threshold of one sub-sampled ascending curve: `y[knee]`, or `y[0]` without a knee."""
    from kneed import KneeLocator

    y = np.asarray(y, np.float64)
    if len(y) < 3 or y[-1] <= y[0]:
        return float(y[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        knee = KneeLocator(np.arange(len(y)), y, S=1.0, curve="concave", direction="increasing").knee
    return float(y[0]) if knee is None else float(y[int(knee)])


def sieve_labels(regions: np.ndarray, region_ids: np.ndarray, answers: np.ndarray, probs: np.ndarray, *,
                 curve_points: int = 20, min_size_px: int = 512, ignore_label: int = 255,
                 owned: np.ndarray | None = None, knee: int | None = None) -> np.ndarray:
    """Labels of the answered regions of one map after sieving.

    Args:
      regions: int [H, W] the map the regions were asked in.
      region_ids: int [K] answered regions.
      answers: uint8 [K] their answers (255 labels nothing).
      probs: float [H, W, C] softmax of the previous round's model at the map's size.
      curve_points: the points a region's sorted confidences are sub-sampled to, about (every
        `max(1, n // curve_points)`-th value is kept), on which the knee is searched.
      min_size_px: regions smaller than this keep all their pixels.
      ignore_label: the "unlabelled" value.
      owned: bool [H, W] the pixels these answers label (None: every pixel of the regions).
        A region's curve, its size against `min_size_px` and its threshold are taken over its
        owned pixels only: pixels an earlier answer labels carry that answer and its threshold.
      knee: the former name of `curve_points`, still accepted.

    Returns:
      uint8 [H, W]: the answer on kept pixels of answered regions, `ignore_label` elsewhere.
    """
    regions = R.check_regions(regions)
    probs = R.check_probs(probs, regions.shape)
    region_ids = np.asarray(region_ids, np.int64).ravel()
    answers = np.asarray(answers).ravel()
    if len(region_ids) != len(answers):
        raise BadInput(f"{len(region_ids)} region ids but {len(answers)} answers")
    if knee is not None:
        curve_points = knee
    if curve_points < 1 or min_size_px < 0:
        raise BadInput(f"curve_points must be >= 1 and min_size_px >= 0, got {curve_points}, {min_size_px}")
    n = R.num_slots(regions)
    if len(region_ids) and (region_ids.min() < 0 or region_ids.max() >= n):
        raise BadInput(f"region ids outside 0..{n - 1}")
    if len(np.unique(region_ids)) != len(region_ids):
        raise BadInput("a region is answered twice in one map")
    if not np.isfinite(probs).all():
        raise BadInput("probs hold NaN or infinite values; check the model's output")
    c = probs.shape[2]
    bad = (answers != ignore_label) & (answers >= c)
    if bad.any():
        raise BadInput(f"answers {np.unique(answers[bad]).tolist()} are not classes 0..{c - 1}")
    lut = np.full(n, ignore_label, np.uint8)
    lut[region_ids] = answers
    labels = lut[regions]
    flat_labels = labels.ravel()
    pix = np.flatnonzero(flat_labels != ignore_label)
    if owned is not None:
        if owned.shape != regions.shape:
            raise BadInput(f"owned mask {owned.shape} and region map {regions.shape} sizes disagree")
        pix = pix[owned.ravel()[pix]]
    if not len(pix):
        return labels
    conf = probs.reshape(-1, c)[pix, flat_labels[pix]]
    reg = regions.ravel()[pix]
    size = np.bincount(reg, minlength=n)
    big = size[reg] >= max(min_size_px, 1)
    pix, conf, reg = pix[big], conf[big], reg[big]
    if not len(pix):
        return labels
    # Sort all pixels of large answered regions by (region, confidence) at once.
    order = np.lexsort((conf, reg))
    conf_sorted, reg_sorted, pix_sorted = conf[order], reg[order], pix[order]
    ids, start, counts = np.unique(reg_sorted, return_index=True, return_counts=True)
    step = np.maximum(1, counts // curve_points)
    thresholds = np.empty(len(ids))
    for j in range(len(ids)):  # the knee search itself, on ~curve_points points per region
        curve = conf_sorted[start[j]:start[j] + counts[j]:step[j]]
        thresholds[j] = knee_threshold(curve)
    t_pix = np.repeat(thresholds, counts)
    drop = pix_sorted[conf_sorted < t_pix]
    out = labels.ravel().copy()
    out[drop] = ignore_label
    return out.reshape(labels.shape)
