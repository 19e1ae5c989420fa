"""Training labels of one image (docs/method.md sections 7-8), from its answers as arrays:
painting (`paint`, `answer_luts`), the footprint of answered regions (`covered`), the pixels
answers label (`labelled_by`), and a round's labels (`round_labels`): every answer painted
oldest round first (a pixel keeps the first answer it got), then, from round 1 on, each
answer's pixels sieved with the previous round's model in the map it was asked in, over the
pixels that answer owns."""

from __future__ import annotations

import numpy as np

from deeplab.active import regions as R
from deeplab.active import sieving


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
    painted, owner = paint(maps, answers, ignore_label)
    if probs is None:
        return painted, painted
    keep = np.zeros(painted.shape, bool)
    for t, (ids, ans) in answers.items():
        sieved = sieving.sieve_labels(maps[t], ids, ans, probs, knee=knee, min_size_px=min_size_px,
                                      ignore_label=ignore_label, owned=owner == t)
        # A pixel is judged by the answer it carries: the one of the round that owns it.
        keep |= (owner == t) & (sieved != ignore_label)
    return painted, np.where(keep, painted, np.uint8(ignore_label)).astype(np.uint8)


def answer_luts(rows: list[dict]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per round: (region ids, answers) of one image's ledger rows."""
    out: dict[int, tuple[list, list]] = {}
    for r in rows:
        ids, ans = out.setdefault(r["round"], ([], []))
        ids.append(r["region"])
        ans.append(r["answer"])
    return {t: (np.asarray(i, np.int64), np.asarray(a, np.uint8)) for t, (i, a) in sorted(out.items())}


def paint(maps: dict[int, np.ndarray], answers: dict[int, tuple[np.ndarray, np.ndarray]],
          ignore_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Paints answers oldest round first; a pixel keeps the first answer it got; 255 answers
    label nothing.

    Args:
      maps: round -> int [H, W] region map of that round.
      answers: round -> (region ids, answers) asked in that round.

    Returns:
      (labels uint8 [H, W], owner int8 [H, W]: the round whose answer a pixel carries, -1 none).
    """
    shape = next(iter(maps.values())).shape
    labels = np.full(shape, ignore_label, np.uint8)
    owner = np.full(shape, -1, np.int8)
    for t in sorted(answers):
        ids, ans = answers[t]
        regions = maps[t]
        lut = np.full(R.num_slots(regions), ignore_label, np.uint8)
        lut[ids] = ans
        painted = lut[regions]
        take = (labels == ignore_label) & (painted != ignore_label)
        labels[take] = painted[take]
        owner[take] = t
    return labels, owner


def labelled_by(rows: list[dict], load_map, ignore_label: int = 255) -> np.ndarray | None:
    """bool [H, W]: the pixels that one image's answers `rows` label (section 7), with
    `load_map(round)` giving each round's region map; None without rows."""
    if not rows:
        return None
    answers = answer_luts(rows)
    painted, _ = paint({t: load_map(t) for t in answers}, answers, ignore_label)
    return painted != ignore_label


def covered(maps: dict[int, np.ndarray], answers: dict[int, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """bool [H, W]: pixels inside any region answered so far (255 answers included), the
    footprint used for eligibility, so that no area is asked twice."""
    shape = next(iter(maps.values())).shape
    out = np.zeros(shape, bool)
    for t, (ids, _) in answers.items():
        asked = np.zeros(R.num_slots(maps[t]), bool)
        asked[ids] = True
        out |= asked[maps[t]]
    return out
