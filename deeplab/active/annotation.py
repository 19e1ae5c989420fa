"""The simulated annotator (section 6), the append-only ledger of answers, and painting the
training labels from it (section 7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import regions as R

LEDGER_FIELDS = ("round", "image", "region", "answer", "size", "score", "cost")


def oracle_answers(regions: np.ndarray, label: np.ndarray, region_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dominant ground-truth value (255 included, ties: smaller value) and size of each region.

    Args:
      regions: int [H, W] the map the regions were asked in.
      label: uint8 [H, W] ground truth.
      region_ids: int [K] the asked regions.

    Returns:
      (answers uint8 [K], sizes int64 [K]).
    """
    if regions.shape != label.shape:
        raise ValueError(f"region map {regions.shape} and label {label.shape} sizes disagree")
    n = R.num_slots(regions)
    region_ids = np.asarray(region_ids, np.int64)
    if len(region_ids) and (region_ids.min() < 0 or region_ids.max() >= n):
        raise ValueError(f"asked region ids outside 0..{n - 1}")
    hist = R.histograms(regions, label.astype(np.int64), 256, n)[region_ids]
    sizes = hist.sum(axis=1)
    if len(region_ids) and (sizes == 0).any():
        raise ValueError(f"asked regions {region_ids[sizes == 0][:5].tolist()} have no pixels")
    return R.majority(hist).astype(np.uint8), sizes


class LedgerError(ValueError):
    """The ledger disagrees with what the job recorded (lines lost, edited or added)."""


class Ledger:
    """Append-only JSON-lines file of answers; every append rewrites the file atomically as the
    old lines plus the new ones, so a crash never leaves a half line.

    `check(rows)`, when given, runs on every read (the job checks the rows against its round
    manifests) and raises to stop a job whose ledger shrank or grew behind its back.
    """

    def __init__(self, path: Path | str, check=None):
        self.path = Path(path)
        self._check = check

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        rows = []
        for i, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise LedgerError(f"ledger {self.path} line {i} is corrupt ({e}); restore it from backup") from e
        if self._check is not None:
            self._check(rows)
        return rows

    def rounds(self) -> set[int]:
        return {r["round"] for r in self.read()}

    def append(self, rows: list[dict]) -> None:
        for r in rows:
            missing = [f for f in LEDGER_FIELDS if f not in r]
            if missing:
                raise ValueError(f"ledger row lacks {missing}: {r}")
        old = self.path.read_text() if self.path.is_file() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        new = "".join(json.dumps({f: r[f] for f in LEDGER_FIELDS}) + "\n" for r in rows)
        io_utils.write_text(self.path, old + new)

    def by_image(self, upto_round: int | None = None) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in self.read():
            if upto_round is None or r["round"] <= upto_round:
                out.setdefault(r["image"], []).append(r)
        return out


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
