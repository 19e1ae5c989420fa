"""Training labels of one image (docs/method.md sections 7-8), from its answers as arrays:
painting (`paint`, `answer_luts`), the footprint of answered regions (`covered`), the pixels
answers label (`labelled_by`), and a round's labels (`round_labels`): every answer painted
oldest round first (a pixel keeps the first answer it got), then, from round 1 on, each
answer's pixels sieved with the previous round's model in the map it was asked in, over the
pixels that answer owns. `training_labels` adds what the answers imply beyond their regions:
propagated regions (section 12) and confident pixels (section 13), each marked in a source map.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deeplab.active import regions as R
from deeplab.active import sieving
from deeplab.errors import BadInput


def round_labels(maps: dict[int, np.ndarray], answers: dict[int, tuple[np.ndarray, np.ndarray]],
                 probs: np.ndarray | None = None, *, curve_points: int = 20, min_size_px: int = 512,
                 ignore_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(painted, labels) uint8 [H, W] of one image.

    Args:
      maps: round -> int [H, W] region map that round asked in.
      answers: round -> (region ids, answers) of that round for this image.
      probs: float [H, W, C] softmax of the previous round's model; None: no sieving.
      curve_points, min_size_px: sieving's settings (section 8).

    Returns:
      painted: every answer painted (section 7); labels: `painted` with the pixels that sieving
      drops from the answer they carry set to `ignore_label` (equal to `painted` without probs).
    """
    painted, owner = paint(maps, answers, ignore_label)
    if probs is None:
        return painted, painted
    keep = _sieved(maps, answers, owner, probs, curve_points, min_size_px, ignore_label)
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


# Where a training label comes from (the source map beside each round's label PNG).
SOURCE_NONE, SOURCE_ANSWER, SOURCE_PROPAGATED, SOURCE_SELF_TRAINED = 0, 1, 2, 3


@dataclasses.dataclass
class TrainingLabels:
    """One image's training labels of a round.

    Attributes:
      painted: uint8 [H, W] every label before sieving (answers, then propagated regions, then
        confident pixels; ignore = unlabelled).
      labels: uint8 [H, W] `painted` after sieving: what the round trains on.
      source: uint8 [H, W] where each pixel of `painted` comes from (SOURCE_*; SOURCE_NONE where
        unlabelled).
    """

    painted: np.ndarray
    labels: np.ndarray
    source: np.ndarray


def _sieved(maps, rows, owner, probs, curve_points, min_size_px, ignore_label) -> np.ndarray:
    """bool [H, W]: the pixels of `rows` (round -> (ids, classes)) that sieving keeps. A pixel is
    judged by the label it carries: that of the round that owns it, in that round's map."""
    keep = np.zeros(owner.shape, bool)
    for t, (ids, ans) in rows.items():
        sieved = sieving.sieve_labels(maps[t], ids, ans, probs, curve_points=curve_points, min_size_px=min_size_px,
                                      ignore_label=ignore_label, owned=owner == t)
        keep |= (owner == t) & (sieved != ignore_label)
    return keep


def training_labels(maps: dict[int, np.ndarray], answers: dict[int, tuple[np.ndarray, np.ndarray]],
                    probs: np.ndarray | None = None, *, curve_points: int = 20, min_size_px: int = 512,
                    ignore_label: int = 255,
                    propagated: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                    confident: np.ndarray | None = None) -> TrainingLabels:
    """A round's labels of one image from its answers and, when given, what they imply.

    Args:
      maps: round -> int [H, W] region map of that round (every round of `answers` and
        `propagated`).
      answers: round -> (region ids, answers), as in round_labels.
      probs: the previous round's softmax: sieving (None: none).
      propagated: round -> (region ids, classes) that the round's answers propagated to in its
        map. They label only pixels outside every answered region (255 answers included: no
        region's pixels are given a class the annotator was asked for and did not give), oldest
        round first, and are sieved as answers are, over the pixels they own.
      confident: uint8 [H, W] the previous model's confident pixels (ignore elsewhere). They label
        only pixels outside every answered and propagated region, and are not sieved (they are
        the model's own most confident predictions).
    """
    if maps:
        painted, labels = round_labels(maps, answers, probs, curve_points=curve_points, min_size_px=min_size_px,
                                       ignore_label=ignore_label)
    elif confident is not None:  # an image no answer reached: only the model's labels
        painted = labels = np.full(confident.shape, ignore_label, np.uint8)
    else:
        raise BadInput("training_labels needs region maps or confident labels")
    source = np.where(painted != ignore_label, SOURCE_ANSWER, SOURCE_NONE).astype(np.uint8)
    keep = labels != ignore_label
    free = ~covered(maps, answers) if answers else np.ones(painted.shape, bool)
    if propagated:
        prop, prop_owner = paint(maps, propagated, ignore_label)
        take = free & (prop != ignore_label)
        painted = np.where(take, prop, painted).astype(np.uint8)
        source[take] = SOURCE_PROPAGATED
        prop_owner = np.where(take, prop_owner, -1).astype(np.int8)
        if probs is not None:
            keep |= _sieved(maps, propagated, prop_owner, probs, curve_points, min_size_px, ignore_label)
        else:
            keep |= take
        free &= ~covered(maps, propagated)
    if confident is not None:
        if confident.shape != painted.shape:
            raise BadInput(f"confident labels {confident.shape} and region maps {painted.shape} disagree")
        take = free & (confident != ignore_label)
        painted = np.where(take, confident, painted).astype(np.uint8)
        source[take] = SOURCE_SELF_TRAINED
        keep |= take
    labels = np.where(keep, painted, np.uint8(ignore_label)).astype(np.uint8)
    return TrainingLabels(painted, labels, source)
