"""The job's append-only ledger of answers (one JSON line per answer, fsynced), its one row
builder (`make_row`), and the checks that find lost, edited or added lines."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

from deeplab.errors import BadInput, Unavailable

LEDGER_FIELDS = ("round", "image", "region", "answer", "size", "score", "cost")


def make_row(t: int, query: dict, answer: int, *, size: int | None = None, cost: int | None = None,
             **optional) -> dict:
    """One ledger row, the only place rows are built: the answer to `query` (a selection entry:
    image, region, score, cost, size) of round t, the fields of LEDGER_FIELDS in order (`size`
    and `cost` default to the query's), then those of `Ledger.OPTIONAL` that are given (None:
    left out)."""
    values = {"round": int(t), "image": query["image"], "region": int(query["region"]),
              "answer": int(answer), "size": int(query["size"] if size is None else size),
              "score": float(query["score"]), "cost": int(query["cost"] if cost is None else cost)}
    return {**{f: values[f] for f in LEDGER_FIELDS}, **_optional(optional)}


def undo_row(t: int, query: dict, **optional) -> dict:
    """The row that takes back the latest earlier answer of `query`'s region in round t."""
    return {"round": int(t), "image": query["image"], "region": int(query["region"]), "undo": True,
            **_optional(optional)}


def _optional(fields: dict) -> dict:
    """The optional fields that are given (None: left out); an unknown one is refused."""
    unknown = sorted(set(fields) - set(Ledger.OPTIONAL))
    if unknown:
        raise BadInput(f"ledger rows have no field {unknown}; optional fields: {Ledger.OPTIONAL}")
    return {k: v for k, v in fields.items() if v is not None}


def row_digests(rows: list[dict]) -> list[str]:
    """A short digest of each ledger row (its fields as written, in canonical JSON): what a
    finished round records of its answers, so an edited line is found and named."""
    return [hashlib.sha256(json.dumps(r, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
            for r in rows]


class LedgerError(BadInput):
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

    OPTIONAL = ("annotator", "source", "session", "elapsed_ms", "received_at", "review",
                "ls_annotation")

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
                           "keep the line with the right answer and delete the other") +
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
                raise BadInput(f"ledger row lacks {missing}: {r}")
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
            end = f.seek(0, os.SEEK_END)
            f.flush()
            data = memoryview("".join(lines).encode("utf-8"))
            try:  # straight to the file (O_APPEND): nothing is left in a buffer to write later
                while data:
                    data = data[os.write(f.fileno(), data):]
                os.fsync(f.fileno())
            except OSError as e:  # a full disk: no part of these rows stays behind
                with contextlib.suppress(OSError):
                    os.ftruncate(f.fileno(), end)
                raise Unavailable(e.errno, f"cannot append to the ledger {self.path} ({e.strerror or e}): "
                                  "none of these answers was recorded; free space and run again") from None
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
