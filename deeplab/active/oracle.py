"""The simulated annotator (docs/method.md section 6): a click answers the dominant
ground-truth class of the asked region, over the pixels the click will label."""

from __future__ import annotations

import numpy as np

from deeplab.active import regions as R
from deeplab.errors import BadInput


def oracle_answers(regions: np.ndarray, label: np.ndarray, region_ids: np.ndarray,
                   unlabelled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dominant ground-truth value (255 included, ties: smaller value) and size of each region.

    The answer names what the click will label: with `unlabelled`, the dominant value among the
    region's pixels that no earlier answer labels (only those are painted, section 7), as a
    careful annotator shown the region and what is already labelled would answer; a region all
    of whose pixels are labelled (never eligible) is answered over all of them.

    Args:
      regions: int [H, W] the map the regions were asked in.
      label: uint8 [H, W] ground truth.
      region_ids: int [K] the asked regions.
      unlabelled: bool [H, W] pixels without an earlier answer (None: every pixel).

    Returns:
      (answers uint8 [K], sizes int64 [K]: the regions' whole sizes).
    """
    if regions.shape != label.shape:
        raise BadInput(f"region map {regions.shape} and label {label.shape} sizes disagree")
    if unlabelled is not None and unlabelled.shape != label.shape:
        raise BadInput(f"unlabelled mask {unlabelled.shape} and label {label.shape} sizes disagree")
    n = R.num_slots(regions)
    region_ids = np.asarray(region_ids, np.int64)
    if len(region_ids) and (region_ids.min() < 0 or region_ids.max() >= n):
        raise BadInput(f"asked region ids outside 0..{n - 1}")
    hist = R.histograms(regions, label.astype(np.int64), 256, n)[region_ids]
    sizes = hist.sum(axis=1)
    if len(region_ids) and (sizes == 0).any():
        raise BadInput(f"asked regions {region_ids[sizes == 0][:5].tolist()} have no pixels")
    if unlabelled is not None:
        # Pixels with an earlier answer get the value 256, a bin that is then dropped.
        code = np.where(unlabelled, label.astype(np.int64), 256)
        open_hist = R.histograms(regions, code, 257, n)[region_ids][:, :256]
        has_open = open_hist.sum(axis=1) > 0
        hist = np.where(has_open[:, None], open_hist, hist)
    return R.majority(hist).astype(np.uint8), sizes
