"""The simulated annotator (section 6), the append-only ledger of answers, and painting the
training labels from it (section 7)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from deeplab.active import regions as R

LEDGER_FIELDS = ("round", "image", "region", "answer", "size", "score", "cost")


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
        raise ValueError(f"region map {regions.shape} and label {label.shape} sizes disagree")
    if unlabelled is not None and unlabelled.shape != label.shape:
        raise ValueError(f"unlabelled mask {unlabelled.shape} and label {label.shape} sizes disagree")
    n = R.num_slots(regions)
    region_ids = np.asarray(region_ids, np.int64)
    if len(region_ids) and (region_ids.min() < 0 or region_ids.max() >= n):
        raise ValueError(f"asked region ids outside 0..{n - 1}")
    hist = R.histograms(regions, label.astype(np.int64), 256, n)[region_ids]
    sizes = hist.sum(axis=1)
    if len(region_ids) and (sizes == 0).any():
        raise ValueError(f"asked regions {region_ids[sizes == 0][:5].tolist()} have no pixels")
    if unlabelled is not None:
        # Pixels with an earlier answer get the value 256, a bin that is then dropped.
        code = np.where(unlabelled, label.astype(np.int64), 256)
        open_hist = R.histograms(regions, code, 257, n)[region_ids][:, :256]
        has_open = open_hist.sum(axis=1) > 0
        hist = np.where(has_open[:, None], open_hist, hist)
    return R.majority(hist).astype(np.uint8), sizes


def row_digests(rows: list[dict]) -> list[str]:
    """A short digest of each ledger row (its fields as written, in canonical JSON): what a
    finished round records of its answers, so an edited line is found and named."""
    return [hashlib.sha256(json.dumps(r, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
            for r in rows]


class LedgerError(ValueError):
    """The ledger disagrees with what the job recorded (lines lost, edited or added)."""


class Ledger:
    """Append-only JSON-lines file of answers, durable line by line.

    `append` writes the new lines at the end of the file and fsyncs it before returning, so an
    answer is on disk when it is acknowledged, whatever the number of lines already there. A crash
    in the middle of a write leaves at most a torn last line (no final newline): `read` reports it
    on stderr and drops it, and the next `append` cuts it off first, keeping its bytes in
    `ledger.jsonl.torn` for inspection. A complete line that is not JSON is never dropped: it
    stops the job (`LedgerError`).

    A row `{"round", "image", "region", "undo": true}` takes back the latest earlier answer of
    that region (the web page's undo); `read` returns the answers in force. Optional fields:
    `annotator` (who answered), `source` (`oracle`, `web`, `label_studio`), `session` (the
    digest of the browser session that gave a web answer: only it can undo the answer),
    `elapsed_ms` (a person's time from the region shown to the answer: the page's measurement,
    or Label Studio's `lead_time`), `received_at` (Unix seconds the server received it),
    `review` (1: a review pass's second answer, 2: its third; `cost` 0): review rows are not
    answers in force (`read` leaves them out; `reviews` returns them).

    `check(rows)`, when given, runs on every read (the job checks the rows against its round
    manifests) and raises to stop a job whose ledger shrank or grew behind its back.
    """

    OPTIONAL = ("annotator", "source", "session", "elapsed_ms", "received_at", "review")

    def __init__(self, path: Path | str, check=None):
        self.path = Path(path)
        self._check = check
        self._reported: int | None = None

    # ------------------------------------------------------------------ reading
    def _complete_text(self) -> str:
        """The file's text up to its last newline; reports a torn tail after it."""
        if not self.path.is_file():
            return ""
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            self._report_torn(data[cut:], len(data))
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError as e:
            raise LedgerError(f"ledger {self.path} is not UTF-8 text ({e}); restore it from backup") from e

    def _report_torn(self, torn: bytes, file_size: int) -> None:
        """Says once per torn state of the file that its last line is dropped."""
        if self._reported != file_size:
            self._reported = file_size
            print(f"WARNING: ledger {self.path}: its last line is torn (a crash while it was "
                  f"written): dropped {torn[:80]!r} ({len(torn)} bytes); that answer was never "
                  "acknowledged, so its round's answers stage asks that region again (the bytes "
                  f"are kept in {self.path.name}.torn at the next write)", file=sys.stderr)

    def raw(self, lines: list[int] | None = None) -> list[dict]:
        """Every complete line, retractions included, in file order (`lines`, if given, gets
        each row's line number)."""
        rows = []
        for i, line in enumerate(self._complete_text().split("\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise LedgerError(f"ledger {self.path} line {i} is corrupt ({e}); restore it from backup") from e
            if not isinstance(row, dict) or not all(
                    f in row for f in (("round", "image", "region") if row.get("undo") else LEDGER_FIELDS)):
                raise LedgerError(f"ledger {self.path} line {i} is not an answer ({line[:80]!r}); "
                                  "restore it from backup")
            rows.append(row)
            if lines is not None:
                lines.append(i)
        return rows

    def read(self) -> list[dict]:
        """The answers in force, oldest first (undone answers removed)."""
        rows: list[dict | None] = []
        latest: dict[tuple, int] = {}
        raw_lines: list[int] = []
        where: list[int] = []
        for row, n in zip(self.raw(raw_lines), raw_lines):
            if row.get("review"):
                continue  # a review pass's answer: see `reviews`
            key = (row["round"], row["image"], row["region"])
            if row.get("undo"):
                i = latest.pop(key, None)
                if i is None:
                    raise LedgerError(f"ledger {self.path}: an undo of region {key[2]} of "
                                      f"'{key[1]}' (round {key[0]}) follows no answer of it")
                rows[i] = None
            else:
                if key in latest:  # answered twice without an undo between: a copied line
                    first = where[latest[key]]
                    same = rows[latest[key]] == row
                    raise LedgerError(
                        f"ledger {self.path} line {n} answers region {key[2]} of '{key[1]}' (round "
                        f"{key[0]}) again, after line {first}, with no undo between: "
                        + ("the line is a duplicate; delete line " + str(n) if same else
                           f"keep the line with the right answer and delete the other") +
                        " (nothing else needs to change)")
                latest[key] = len(rows)
                rows.append(row)
                where.append(n)
        lines = [n for r, n in zip(rows, where) if r is not None]
        rows = [r for r in rows if r is not None]
        if self._check is not None:
            self._check(rows, lines)
        return rows

    def reviews(self, t: int) -> dict[tuple[str, int], dict[int, dict]]:
        """Round t's review answers by (image, region) and review number (1, 2)."""
        return self.reviews_by_round().get(t, {})

    def reviews_by_round(self) -> dict[int, dict[tuple[str, int], dict[int, dict]]]:
        """Every round's review answers (`reviews`), from one read of the file."""
        out: dict[int, dict[tuple[str, int], dict[int, dict]]] = {}
        for row in self.raw():
            if row.get("review"):
                out.setdefault(row["round"], {}).setdefault(
                    (row["image"], row["region"]), {})[int(row["review"])] = row
        return out

    def rounds(self) -> set[int]:
        return {r["round"] for r in self.read()}

    # ------------------------------------------------------------------ writing
    def append(self, rows: list[dict]) -> None:
        """Appends answers (or undo rows) and fsyncs; returns when they are on disk."""
        lines = []
        for r in rows:
            fields = ("round", "image", "region", "undo") if r.get("undo") else LEDGER_FIELDS
            missing = [f for f in fields if f not in r]
            if missing:
                raise ValueError(f"ledger row lacks {missing}: {r}")
            lines.append(json.dumps({f: r[f] for f in fields + self.OPTIONAL if f in r}) + "\n")
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with open(self.path, "ab+") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(max(0, size - 65536))
                tail = f.read()
                cut = tail.rfind(b"\n") + 1
                if cut < len(tail):  # a torn last line: keep its bytes aside, then cut it off
                    torn = tail[cut:]
                    self._report_torn(torn, size)
                    with open(self.path.with_name(self.path.name + ".torn"), "ab") as keep:
                        keep.write(torn + b"\n")
                        keep.flush()
                        os.fsync(keep.fileno())
                    f.truncate(size - len(torn))
            f.write("".join(lines).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        if created:  # the new file's name is durable too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

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
