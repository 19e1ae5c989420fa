"""The annotation page: people answer a round's queried regions in a browser (ANNOTATOR=human).

`annotate_round(exp, t)` (the answers stage) serves round t on a local web page until every
queried region is answered, then returns the stage's figures and the driver goes on. The same
page is `python scripts/annotate_web.py --job_dir ... --round t`.

What it guarantees:
  - every answer is validated (a queried region of the round, a known class or "unclear",
    not answered yet, not held by someone else) and appended to the job's ledger with an fsync
    before the browser hears "saved"; undo appends a retraction (the ledger stays append-only);
  - the state lives in the ledger: a reloaded page, or a restarted server, continues with the
    next unanswered region;
  - two people on the same round never get the same region: a region is handed out with a lease
    (LEASE_SECS) and only one process serves a round (a lock file);
  - it binds 127.0.0.1 by default; any other address requires a token, printed at start and
    checked on every request; it serves the page, JSON and views drawn from the job's own images
    (addressed by query number), never a file named by the request;
  - no other site can frame it (`X-Frame-Options: DENY`, CSP `frame-ancestors 'none'`; no
    inline script but the page's own, by hash), drive it or starve it: a request the browser
    marks as coming from elsewhere (`Sec-Fetch-Site` other than same-origin, or an `Origin`
    that is not the page's) is refused with 403, except a top-level navigation to the page;
    no GET changes state (a region is handed out by a POST);
  - undo takes back only answers given in the same browser session: the page's session is an
    HttpOnly cookie the server issues, and the ledger keeps its digest with each answer;
  - a malformed request gets a 400 with a one-line reason; idle connections time out.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import fcntl
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import annotation, region_maps, review
from deeplab.active.experiment import Experiment
from deeplab.active.rounds import answers_summary, read_selection, review_summary, round_answers

LOOPBACK = ("127.0.0.1", "localhost", "::1")
UNCLEAR_KEY = "x"
UNDO_KEY = "z"
# Keyboard shortcuts of the classes, in train-id order ('x' and 'z' are unclear and undo).
CLASS_KEYS = "1234567890qwertyuiopasdfghjklcvbnm"
CLIENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
VIEW_RE = re.compile(r"^/view/(\d{1,9})/(zoom|whole)\.png$")
MAX_BODY = 4096
SESSION_COOKIE = "annotate_session"
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
IDLE_SECS = 30.0  # a connection that sends nothing this long is closed


def session_digest(cookie: str) -> str:
    """What the ledger keeps of a browser session's cookie (never the cookie itself)."""
    return hashlib.sha256(cookie.encode()).hexdigest()[:24]


def _identity(session: str | None, client: str) -> str:
    """Who gave an answer, for the review pass: the browser session, else the client id."""
    return f"session:{session}" if session else f"client:{client}"


def _undo_key(session: str | None, client: str) -> tuple[str, str]:
    """Whose undo stack an answer is on: its browser session's, or (answers given through
    the Python API without one) its annotator's. The page's undo uses session keys only."""
    return ("session", session) if session else ("client", client)


class Refused(Exception):
    """A request the session turns down; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RoundSession:
    """One round's answering: the queries, the answers in force (from the ledger) and the
    leases. Thread-safe; the ledger is written only here while the round is served."""

    def __init__(self, exp: Experiment, t: int, lease_secs: float | None = None,
                 preselect: bool | None = None, clock=time.monotonic):
        self.exp, self.t = exp, t
        self.queries = read_selection(exp, t)
        self.index = {(q["image"], q["region"]): i for i, q in enumerate(self.queries)}
        self.budget = int(exp.manifest(t)["select"]["budget"])
        self.lease_secs = float(exp.config.lease_secs if lease_secs is None else lease_secs)
        self.preselect = bool(exp.config.preselect if preselect is None else preselect) and t > 0
        self.ignore = exp.descriptor.ignore_label
        self.num_classes = exp.descriptor.num_classes
        self.clock = clock
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.leases: dict[int, tuple[str, float]] = {}
        self.samples = {s.name: s for s in exp.samples}
        self.answers: dict[int, dict] = {}
        # Undo stacks survive a restart: each browser session's answers in force, in ledger
        # order (answers imported from Label Studio or given by the oracle are on none).
        self.stacks: dict[tuple, list[int]] = collections.defaultdict(list)
        for key, row in round_answers(exp, t, self.queries).items():
            self.answers[self.index[key]] = row
            if row.get("source") == "web" and (row.get("session") or row.get("annotator")):
                self.stacks[_undo_key(row.get("session"), row.get("annotator"))].append(self.index[key])
        self.clicks = sum(int(r["cost"]) for r in self.answers.values())
        # The review pass (REVIEW_SHARE): once every region is answered, a seeded share of them
        # is asked again of another browser session, and on a disagreement a third one.
        c = exp.config
        self.picked = sorted(review.review_subset(len(self.queries), float(c.review_share), c.seed, t)
                             .tolist()) if c.review_share else []
        self.reviews: dict[int, dict[int, dict]] = {
            self.index[key]: rv for key, rv in exp.ledger.reviews(t).items() if key in self.index}
        self.review_leases: dict[tuple[int, int], tuple[str, float]] = {}
        self.seen = {_identity(r.get("session"), r.get("annotator") or "") for r in self.answers.values()}
        # Hand-out order: one image's queried regions one after another, images in the order
        # of their best score (the selection's order within an image), so a person stays on an
        # image instead of jumping between images at every click.
        self.order = handout_order(self.queries)
        self.position = {i: k for k, i in enumerate(self.order)}
        per_image = collections.Counter(q["image"] for q in self.queries)
        seen: collections.Counter = collections.Counter()
        self.in_image: dict[int, tuple[int, int]] = {}
        for i in self.order:
            seen[self.queries[i]["image"]] += 1
            self.in_image[i] = (seen[self.queries[i]["image"]], per_image[self.queries[i]["image"]])
        self._first_open = 0  # no query before this position of the order is unanswered
        self._views: collections.OrderedDict = collections.OrderedDict()
        self._image: tuple | None = None  # (name, image, region map, labelled) of the last view drawn
        # Earlier rounds' answers (finished, never changed): what is already labelled is shown
        # hatched, since a click names the class of the part it will label (as the oracle does).
        self._earlier = exp.answers_by_image(upto_round=t - 1) if t > 0 else {}
        self._check_done()

    # ------------------------------------------------------------------ state
    def progress(self) -> dict:
        return {"round": self.t, "asked": len(self.queries), "answered": len(self.answers),
                "clicks": self.clicks, "budget": self.budget, "done": self.done.is_set(),
                "reviews_pending": len(self._reviews_pending())}

    def _reviews_pending(self) -> list[tuple[int, int]]:
        """(query, review number) still to answer: every picked region's review once all are
        answered, and a third answer where the review disagreed while at least three browser
        sessions have taken part (with fewer, the disagreement is labelled unclear)."""
        if not self.picked or len(self.answers) < len(self.queries):
            return []
        out = []
        for i in self.picked:
            rv = self.reviews.get(i, {})
            if 1 not in rv:
                out.append((i, 1))
            elif rv[1]["answer"] != self.answers[i]["answer"] and 2 not in rv and len(self.seen) >= 3:
                out.append((i, 2))
        return out

    def _excluded(self, i: int, k: int) -> set[str]:
        """Who may not give review k of query i: whoever answered it before."""
        first = self.answers[i]
        out = {_identity(first.get("session"), first.get("annotator") or "")}
        if k == 2:
            r = self.reviews[i][1]
            out.add(_identity(r.get("session"), r.get("annotator") or ""))
        return out

    def _check_done(self) -> None:
        if len(self.answers) == len(self.queries) and not self._reviews_pending():
            self.done.set()

    def _next_free(self) -> int | None:
        """The first query of the hand-out order neither answered nor leased (skips at most
        the leased and the answered ones past the first unanswered one, not the whole round)."""
        n, order = len(self.order), self.order
        while self._first_open < n and order[self._first_open] in self.answers:
            self._first_open += 1
        k = self._first_open
        while k < n and (order[k] in self.answers or order[k] in self.leases):
            k += 1
        return order[k] if k < n else None

    def _expire(self, now: float) -> None:
        for i in [i for i, (_, until) in self.leases.items() if until <= now]:
            del self.leases[i]

    def _query(self, i: int) -> dict:
        q = self.queries[i]
        k, n = self.in_image[i]
        out = {"index": i, "image": q["image"], "region": q["region"], "size": q["size"],
               "cost": q["cost"], "suggestion": None, "in_image": k, "of_image": n}
        if self.preselect:
            _, stats = region_maps.load_with_stats(self.exp.map_path(self.t, q["image"]))
            out["suggestion"] = int(stats["dominant_class"][q["region"]])
        return out

    def _next_review(self, client: str, who: str, now: float) -> dict | None:
        """Leases `client` a review it may give (never of its own answer), or None."""
        for key in [k for k, (_, until) in self.review_leases.items() if until <= now]:
            del self.review_leases[key]
        pending = self._reviews_pending()
        mine = [key for key in pending if self.review_leases.get(key, ("",))[0] == client]
        free = [key for key in pending if key not in self.review_leases and who not in self._excluded(*key)]
        key = (mine or free or [None])[0]
        if key is None:
            return None
        for other in [o for o, (c, _) in self.review_leases.items() if c == client and o != key]:
            del self.review_leases[other]
        self.review_leases[key] = (client, now + self.lease_secs)
        return {**self._query(key[0]), "review": key[1]}

    def next_for(self, client: str, session: str | None = None) -> dict:
        """The region `client` should answer now (leased to them), or None with the progress.
        In the review pass, a region someone else answered (another browser session)."""
        _check_client(client)
        who = _identity(session, client)
        with self.lock:
            now = self.clock()
            self._expire(now)
            self.seen.add(who)
            if len(self.answers) == len(self.queries) and self.picked:
                query = self._next_review(client, who, now)
                out = self.progress()
                out["held_by_others"] = sum(1 for c, _ in self.review_leases.values() if c != client)
                out["query"] = query
                return out
            mine = [i for i, (c, _) in self.leases.items() if c == client and i not in self.answers]
            i = min(mine, key=self.position.__getitem__) if mine else self._next_free()
            if i is not None:
                for j in [j for j, (c, _) in self.leases.items() if c == client and j != i]:
                    del self.leases[j]
                self.leases[i] = (client, now + self.lease_secs)
            out = self.progress()
            out["held_by_others"] = sum(1 for c, _ in self.leases.values() if c != client)
        out["query"] = None if i is None else self._query(i)
        return out

    def answer(self, client: str, index, answer, session: str | None = None,
               elapsed_ms=None) -> dict:
        """Validates and records one answer (durable before this returns). `session`: the
        digest of the browser session giving it (`session_digest`), which alone can undo it.
        `elapsed_ms`: the time from the region being shown to the answer, measured by the page;
        kept with the server's receive time (`received_at`, Unix seconds)."""
        _check_client(client)
        i = _int_field(index, "index")
        a = _int_field(answer, "answer")
        elapsed = _elapsed_field(elapsed_ms)
        received = round(time.time(), 3)
        if not 0 <= i < len(self.queries):
            raise Refused(404, f"query {i} does not exist in round {self.t} "
                               f"({len(self.queries)} regions were asked)")
        if not (0 <= a < self.num_classes or a == self.ignore):
            raise Refused(400, f"answer {a} is not a class (0..{self.num_classes - 1}) or "
                               f"{self.ignore} (unclear)")
        with self.lock:
            now = self.clock()
            self._expire(now)
            if i in self.answers:
                return self._review_answer(client, i, a, session, elapsed, received)
            holder = self.leases.get(i)
            if holder is not None and holder[0] != client:
                raise Refused(409, "another annotator holds this region; take the next one")
            q = self.queries[i]
            row = {"round": self.t, "image": q["image"], "region": q["region"], "answer": a,
                   "size": q["size"], "score": q["score"], "cost": q["cost"],
                   "annotator": client, "source": "web", "received_at": received}
            if elapsed is not None:
                row["elapsed_ms"] = elapsed
            if session:
                row["session"] = session
            self.exp.ledger.append([row])  # fsync'd: durable from here on
            self.answers[i] = row
            self.clicks += int(q["cost"])
            self.stacks[_undo_key(session, client)].append(i)
            self.leases.pop(i, None)
            self._check_done()
            return self.progress()

    def _review_answer(self, client, i, a, session, elapsed, received) -> dict:
        """Records a review answer of query i (under the lock): a pending review that this
        session may give and nobody else holds."""
        who = _identity(session, client)
        key = next((key for key in self._reviews_pending() if key[0] == i), None)
        if key is None:
            raise Refused(409, f"region {self.queries[i]['region']} of "
                               f"'{self.queries[i]['image']}' is answered already")
        if who in self._excluded(*key):
            raise Refused(409, "you answered this region already: another annotator reviews it")
        holder = self.review_leases.get(key)
        if holder is not None and holder[0] != client:
            raise Refused(409, "another annotator holds this review; take the next one")
        q, first = self.queries[i], self.answers[i]
        row = {"round": self.t, "image": q["image"], "region": q["region"], "answer": a,
               "size": first["size"], "score": q["score"], "cost": 0, "review": key[1],
               "annotator": client, "source": "web", "received_at": received}
        if elapsed is not None:
            row["elapsed_ms"] = elapsed
        if session:
            row["session"] = session
        self.exp.ledger.append([row])
        self.reviews.setdefault(i, {})[key[1]] = row
        self.review_leases.pop(key, None)
        self._check_done()
        return self.progress()

    def undo(self, client: str, session: str | None = None) -> dict:
        """Takes back the last answer of the round given in browser session `session` (through
        the Python API without one: `client`'s answers given without a session) and hands that
        region back to them."""
        _check_client(client)
        with self.lock:
            if self.done.is_set():
                raise Refused(409, "the round is complete: its answers are final")
            if self.picked and len(self.answers) == len(self.queries):
                raise Refused(409, "the round's answers are being reviewed: they are final")
            stack = self.stacks.get(_undo_key(session, client))
            if not stack:
                raise Refused(409, "nothing to undo: no answer of this round was given in this "
                                   "browser session")
            i = stack[-1]
            q = self.queries[i]
            row = {"round": self.t, "image": q["image"], "region": q["region"],
                   "undo": True, "annotator": client, "source": "web",
                   "received_at": round(time.time(), 3)}
            if session:
                row["session"] = session
            self.exp.ledger.append([row])
            stack.pop()
            self.clicks -= int(self.answers.pop(i)["cost"])
            self._first_open = min(self._first_open, self.position[i])
            self.leases[i] = (client, self.clock() + self.lease_secs)
            out = self.progress()
        out["undone"] = i
        return out

    # ------------------------------------------------------------------ views
    def view(self, i: int, kind: str) -> bytes:
        """PNG of query i: `zoom` (its context, enlarged, outside dimmed) or `whole` (the image
        with the region outlined and boxed)."""
        if not 0 <= i < len(self.queries):
            raise Refused(404, f"query {i} does not exist")
        with self.lock:
            cached = self._views.get((i, kind))
        if cached is not None:
            return cached
        q = self.queries[i]
        image, regions, labelled = self._image_and_map(q["image"])
        png = io_utils.encode_png(render_view(image, regions == q["region"], kind, labelled))
        with self.lock:
            self._views[(i, kind)] = png
            while len(self._views) > 64:
                self._views.popitem(last=False)
        return png

    def _image_and_map(self, name: str):
        """The image and its round map, decoded once for the views drawn from it in a row."""
        last = self._image
        if last is not None and last[0] == name:
            return last[1:]
        image = self.exp.descriptor.read_image(self.samples[name])
        regions = region_maps.load(self.exp.map_path(self.t, name))
        if regions.shape != image.shape[:2]:
            raise Refused(500, f"region map of '{name}' is {regions.shape} but the image is "
                               f"{image.shape[:2]}")
        labelled = annotation.labelled_by(self._earlier.get(name), lambda r: self.exp.load_map(r, name),
                                          self.ignore)
        self._image = (name, image, regions, labelled)
        return image, regions, labelled

    def page_info(self) -> dict:
        d = self.exp.descriptor
        classes = [{"id": c, "name": n, "color": colour, "key": CLASS_KEYS[c] if c < len(CLASS_KEYS) else ""}
                   for c, (n, colour) in enumerate(zip(d.class_names, d.hex_colours()))]
        return {"round": self.t, "job": self.exp.job_dir.name, "classes": classes,
                "unclear": {"id": self.ignore, "key": UNCLEAR_KEY}, "undo_key": UNDO_KEY,
                "preselect": self.preselect}


def render_view(image: np.ndarray, mask: np.ndarray, kind: str,
                labelled: np.ndarray | None = None) -> np.ndarray:
    """uint8 [h, w, 3]: the region outlined, in its context (`zoom`) or on the whole image.
    `labelled` (bool [H, W]): pixels an earlier answer labels, hatched inside the region in
    the zoom view."""
    import cv2

    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if kind == "zoom":
        side = max(48, int(2.5 * max(y1 - y0, x1 - x0)))
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        top, left = max(0, min(h - side, cy - side // 2)), max(0, min(w - side, cx - side // 2))
        crop = (slice(top, min(h, top + side)), slice(left, min(w, left + side)))
        img, m = image[crop], mask[crop]
        scale = max(1, 480 // max(img.shape[:2]))
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        m = cv2.resize(m.astype(np.uint8), None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_NEAREST).astype(bool)
        out = img.astype(np.float32)
        out[~m] = 0.45 * out[~m] + 0.55 * 40  # dim what is outside the region
        if labelled is not None:
            done = cv2.resize(labelled[crop].astype(np.uint8), None, fx=scale, fy=scale,
                              interpolation=cv2.INTER_NEAREST).astype(bool) & m
            yy, xx = np.indices(done.shape)
            stripes = done & (((yy + xx) // 3) % 3 == 0)
            out[stripes] = 0.35 * out[stripes] + 0.65 * 255  # hatched: already labelled
        out = out.astype(np.uint8)
        _outline(out, m, 2)
        return out
    scale = 720 / w  # reduced (area) or enlarged (nearest, crisp) to 720 px wide
    size = (720, max(1, round(h * scale)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    _outline(out, m, 1)  # a region under a pixel of the reduced image: its box still shows it
    pad = 6
    bx0, by0 = int(x0 * scale) - pad, int(y0 * scale) - pad
    bx1, by1 = int(np.ceil(x1 * scale)) + pad, int(np.ceil(y1 * scale)) + pad
    cv2.rectangle(out, (bx0, by0), (bx1, by1), (0, 255, 255), 2)
    return out


def _outline(out: np.ndarray, mask: np.ndarray, width: int) -> None:
    import cv2

    if not mask.any():
        return
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    outer = cv2.dilate(m, kernel, iterations=width + 1).astype(bool) & ~mask
    inner = outer & ~cv2.dilate(m, kernel, iterations=width).astype(bool)
    out[outer] = (255, 230, 0)
    out[inner] = (0, 0, 0)


def _check_client(client) -> None:
    if not isinstance(client, str) or not CLIENT_RE.match(client):
        raise Refused(400, "client must be 1-64 letters, digits, '.', '_' or '-'")


def _int_field(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(400, f"{name} must be an integer, got {str(value)[:40]!r}")
    return value


# An answer that took longer than this is a person who walked away, not a measurement.
MAX_ELAPSED_MS = 24 * 3600 * 1000


def _elapsed_field(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= MAX_ELAPSED_MS):
        raise Refused(400, f"elapsed_ms must be a number of milliseconds in 0..{MAX_ELAPSED_MS}, "
                           f"got {str(value)[:40]!r}")
    return int(round(value))


def handout_order(queries: list[dict]) -> list[int]:
    """Query indices grouped by image: images in the order of their best score (ties: the
    image asked first), each image's queries in selection order."""
    best: dict[str, tuple[float, int]] = {}
    for i, q in enumerate(queries):
        b = best.get(q["image"])
        if b is None or q["score"] > b[0]:
            best[q["image"]] = (q["score"], b[1] if b else i)
    return sorted(range(len(queries)),
                  key=lambda i: (-best[queries[i]["image"]][0], best[queries[i]["image"]][1], i))


def _json_for_html(obj) -> str:
    """JSON that can sit inside a <script> data block whatever its strings hold (a class
    named `<!--<script>` or `</script>` cannot end or change the block)."""
    return (json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(page: str) -> str:
    """The page's policy: its own inline script and style (by hash) and nothing else inline;
    images and requests to itself only; no frame may hold it."""
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    return ("default-src 'none'; script-src " + " ".join(map(_csp_hash, scripts)) +
            "; style-src " + " ".join(map(_csp_hash, styles)) +
            "; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


# ---------------------------------------------------------------------------- HTTP
def make_server(session: RoundSession, host: str = "127.0.0.1", port: int = 8765,
                token: str | None = None,
                idle_secs: float = IDLE_SECS) -> http.server.ThreadingHTTPServer:
    """The page's HTTP server (not started). A token is required on every request when given;
    serving another address than the loopback without one is refused."""
    if host not in LOOPBACK and not token:
        raise ValueError(f"serving {host} (not this machine only) requires a token")
    page = (Path(__file__).with_name("annotate_page.html").read_text()
            .replace("__INFO__", _json_for_html(session.page_info())))
    csp = content_security_policy(page)

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "annotate"
        sys_version = ""
        timeout = idle_secs  # idle or slow connections are closed, not kept as threads

        def log_message(self, fmt, *args):  # one quiet line per refused request only
            pass

        def _send(self, status: int, body: bytes, ctype: str, cookie: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy", csp)
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            if cookie:
                self.send_header("Set-Cookie", f"{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; "
                                               "SameSite=Lax")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def send_error(self, code, message=None, explain=None):
            # Malformed request lines and headers: a JSON reason like every other refusal.
            self.close_connection = True
            if self.request_version == "HTTP/0.9":  # an unparsable request line: answer in 1.0
                self.request_version = "HTTP/1.0"
            with contextlib.suppress(OSError):
                self._refuse(code, message or explain or "malformed request")

        def _session(self) -> str | None:
            """The digest of this browser session's cookie, if it sent a well-formed one."""
            for part in (self.headers.get("Cookie") or "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == SESSION_COOKIE and SESSION_RE.match(value):
                    return session_digest(value)
            return None

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _refuse(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def _allowed(self, query: dict) -> bool:
            if token is not None:
                given = self.headers.get("X-Token") or query.get("token", [""])[0]
                if not hmac.compare_digest(given.encode(), token.encode()):
                    self._refuse(403, "a valid token is required (the URL printed at start)")
                    return False
            else:  # loopback only: refuse pages of other sites that reach it by DNS tricks
                hostname = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
                if hostname not in LOOPBACK:
                    self._refuse(403, f"host '{hostname}' is not this machine")
                    return False
            # Fetch Metadata resource isolation: what a browser says comes from another site
            # (another origin: another host, port or scheme) is refused, except a top-level
            # navigation to the page itself.
            site = self.headers.get("Sec-Fetch-Site")
            origin = self.headers.get("Origin")
            own = "http://" + (self.headers.get("Host") or "")
            navigation = (self.command == "GET" and urllib.parse.urlsplit(self.path).path == "/"
                          and self.headers.get("Sec-Fetch-Mode") == "navigate"
                          and self.headers.get("Sec-Fetch-Dest") in ("document", None))
            foreign = (site is not None and site not in ("same-origin", "none")) or (
                origin is not None and origin != own)
            if foreign and not navigation:
                self._refuse(403, "requests from another site are refused: open the page itself")
                return False
            return True

        def _guarded(self, handle) -> None:
            """Runs one request's handler: a refusal or an unexpected error is one JSON line
            to the client and one line on the console, never a dropped connection."""
            try:
                handle()
            except Refused as e:
                self._refuse(e.status, str(e))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as e:  # noqa: BLE001 - reported, the server goes on
                print(f"annotation page: {self.command} {self.path[:80]} failed: "
                      f"{type(e).__name__}: {e}", file=sys.stderr)
                self._refuse(500, f"internal error ({type(e).__name__}: {e})")

        def _body(self) -> dict:
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                raise Refused(415, "post JSON (Content-Type: application/json)")
            text = self.headers.get("Content-Length") or "0"
            if not text.strip().isdigit():
                raise Refused(400, f"Content-Length {text[:20]!r} is not a number of bytes")
            length = int(text)
            if not 0 < length <= MAX_BODY:
                raise Refused(400, f"a body of 1..{MAX_BODY} bytes is expected")
            raw = self.rfile.read(length)
            if len(raw) < length:
                raise Refused(400, f"the body ended after {len(raw)} of {length} bytes")
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise Refused(400, "the body is not JSON (or nests too deep)") from None
            if not isinstance(body, dict):
                raise Refused(400, "the body must be a JSON object")
            return body

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if not self._allowed(query):
                return

            def handle():
                if url.path == "/":
                    # A browser session of its own for undo: issued with the page, kept by it.
                    cookie = None if self._session() else secrets.token_urlsafe(24)
                    self._send(200, page.encode(), "text/html; charset=utf-8", cookie=cookie)
                elif url.path in ("/api/next", "/api/answer", "/api/undo"):
                    raise Refused(405, f"{url.path} changes what is handed out: POST it (JSON)")
                elif url.path == "/api/progress":
                    self._json(200, session.progress())
                elif m := VIEW_RE.match(url.path):
                    self._send(200, session.view(int(m.group(1)), m.group(2)), "image/png")
                else:
                    raise Refused(404, "not found")

            self._guarded(handle)

        def do_HEAD(self):
            self.do_GET()

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            if not self._allowed(urllib.parse.parse_qs(url.query)):
                return

            def handle():
                body = self._body()
                if url.path == "/api/next":
                    self._json(200, session.next_for(body.get("client"), session=self._session()))
                elif url.path == "/api/answer":
                    self._json(200, session.answer(body.get("client"), body.get("index"),
                                                   body.get("answer"), session=self._session(),
                                                   elapsed_ms=body.get("elapsed_ms")))
                elif url.path == "/api/undo":
                    mine = self._session()
                    if mine is None:
                        raise Refused(403, "undo takes back answers of this browser session "
                                           "only: reload the page")
                    self._json(200, session.undo(body.get("client"), session=mine))
                else:
                    raise Refused(404, "not found")

            self._guarded(handle)

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A browser that drops a view it no longer needs is not an error worth a trace.
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        return Server((host, port), Handler)
    except OSError as e:
        raise OSError(f"cannot serve on {host}:{port} ({e.strerror}): another program uses the "
                      "port; set ANNOTATE_PORT (--port) to a free one, or 0 for any") from None


@contextlib.contextmanager
def round_lock(exp: Experiment, t: int):
    """Only one process serves a round (two would hand the same region to two people)."""
    path = exp.round_dir(t) / "annotate.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise RuntimeError(f"round {t} of {exp.job_dir} is being served already ({other}); "
                               "open that page instead") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)


def page_url(host: str, port: int, token: str | None) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve_round(exp: Experiment, t: int, host: str | None = None, port: int | None = None,
                token: str | None = None, preselect: bool | None = None,
                lease_secs: float | None = None, ready=None, linger_secs: float = 1.0) -> dict:
    """Serves round t until every queried region is answered; returns the stage's figures.
    `ready(url)`, if given, is called once the page is up (the tests use it)."""
    c = exp.config
    host = c.annotate_host if host is None else host
    port = c.annotate_port if port is None else port
    if host not in LOOPBACK and not token:
        token = secrets.token_urlsafe(18)
    with round_lock(exp, t):
        session = RoundSession(exp, t, lease_secs, preselect)
        if session.done.is_set():
            return _summary(exp, t, session.queries)
        server = make_server(session, host, port, token)
        url = page_url(host, server.server_address[1], token)
        p = session.progress()
        print(f"round {t}: {p['asked'] - p['answered']} of {p['asked']} queried regions to answer "
              f"({p['budget']} clicks). Open {url} in a browser; every answer is saved when it is "
              f"given, and this stage goes on when the last one is in (Ctrl-C stops; run it "
              "again to continue).", flush=True)
        if host not in LOOPBACK:
            print(f"serving {host} for other machines: the token {token} is required on every "
                  "request (it is in the URL above)", flush=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                  daemon=True)
        thread.start()
        try:
            if ready is not None:
                ready(url)
            last = -1
            while not session.done.wait(timeout=2.0):
                n = session.progress()["answered"]
                if n != last and sys.stdout.isatty():
                    print(f"\r  answered {n} of {p['asked']}", end="", flush=True)
                last = n
            time.sleep(linger_secs)  # the last answer's reply reaches the browser
        finally:
            server.shutdown()
            server.server_close()
    print(f"round {t}: every queried region is answered")
    return _summary(exp, t, session.queries)


def _summary(exp: Experiment, t: int, queries: list[dict]) -> dict:
    """The answers stage's figures, with the review pass's when REVIEW_SHARE is set."""
    out = answers_summary(exp, t, queries)
    if exp.config.review_share:
        out["review"] = review_summary(exp, t, queries)
    return out


def annotate_round(exp: Experiment, t: int, progress: bool = True) -> dict:
    """The answers stage with ANNOTATOR=human (the page on ANNOTATE_HOST:ANNOTATE_PORT)."""
    return serve_round(exp, t, token=os.environ.get("ANNOTATE_TOKEN") or None)
