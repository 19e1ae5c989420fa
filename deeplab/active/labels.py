"""Training labels of one image for a round (algorithms.md sections 7-8): every answer painted
oldest round first (a pixel keeps the first answer it got), then, from round 1 on, each
answer's pixels sieved with the previous round's model in the map it was asked in, over the
pixels that answer owns."""

from __future__ import annotations

import numpy as np

from deeplab.active import annotation, sieving


def round_labels(maps: dict[int, np.ndarray], answers: dict[int, tuple[np.ndarray, np.ndarray]],
                 probs: np.ndarray | None = None, *, knee: int = 20, min_size_px: int = 512,
                 ignore_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(painted, labels) uint8 [H, W] of one image.

    Args:
      maps: round -> int [H, W] region map that round asked in.
      answers: round -> (region ids, answers) of that round for this image.
      probs: float [H, W, C] softmax of the previous round's model; None: no sieving.
      knee, min_size_px: sieving's settings (section 8).

    Returns:
      painted: every answer painted (section 7); labels: `painted` with the pixels that sieving
      drops from the answer they carry set to `ignore_label` (equal to `painted` without probs).
    """
    painted, owner = annotation.paint(maps, answers, ignore_label)
    if probs is None:
        return painted, painted
    keep = np.zeros(painted.shape, bool)
    for t, (ids, ans) in answers.items():
        sieved = sieving.sieve_labels(maps[t], ids, ans, probs, knee=knee, min_size_px=min_size_px,
                                      ignore_label=ignore_label, owned=owner == t)
        # A pixel is judged by the answer it carries: the one of the round that owns it.
        keep |= (owner == t) & (sieved != ignore_label)
    return painted, np.where(keep, painted, np.uint8(ignore_label)).astype(np.uint8)
