"""One round's annotation session, independent of HTTP: which queried region each person gets
next (a lease per region, one image's regions in a row), validating and recording answers and
undos in the ledger, the review pass handed to other sessions, and the views a person sees.
`deeplab.annotate.server` puts it on a web page."""

from __future__ import annotations

import collections
import hashlib
import re
import threading
import time

from deeplab import io_utils
from deeplab.active import labels as L
from deeplab.active import review
from deeplab.experiment import ledger, region_maps
from deeplab.experiment.job import Job
from deeplab.experiment.answers import labelled_before, read_selection, round_answers
from deeplab.viz.overlays import PROPAGATED_HATCH, SELF_TRAINED_HATCH
from deeplab.viz.views import render_view

UNCLEAR_KEY = "x"
UNDO_KEY = "z"
# Keyboard shortcuts of the classes, in train-id order ('x' and 'z' are unclear and undo).
CLASS_KEYS = "1234567890qwertyuiopasdfghjklcvbnm"
CLIENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def session_digest(cookie: str) -> str:
    """What the ledger keeps of a browser session's cookie (never the cookie itself)."""
    return hashlib.sha256(cookie.encode()).hexdigest()[:24]


def _identity(session: str | None, client: str) -> set[str]:
    """Who gave an answer, for the review pass: the browser session and the annotator id
    together (a person who reopens the browser has a new session but the same id, and one
    who changes the id keeps the session); a review matching either is theirs."""
    return ({f"client:{client}"} if client else set()) | ({f"session:{session}"} if session else set())


def _undo_key(session: str | None, client: str) -> tuple[str, str]:
    """Whose undo stack an answer is on: its browser session's, or (answers given through
    the Python API without one) its annotator's. The page's undo uses session keys only."""
    return ("session", session) if session else ("client", client)


class Refused(Exception):
    """A request the session turns down; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def implied_dots(sources) -> list:
    """The zoom view's dots of the last round's label sources (None: none): propagated pixels
    and the model's confident pixels, coloured as the answers overlay hatches them."""
    if sources is None:
        return []
    return [(sources == L.SOURCE_PROPAGATED, PROPAGATED_HATCH[0]),
            (sources == L.SOURCE_SELF_TRAINED, SELF_TRAINED_HATCH[0])]


class RoundSession:
    """One round's answering: the queries, the answers in force (from the ledger) and the
    leases. Thread-safe; the ledger is written only here while the round is served."""

    def __init__(self, exp: Job, t: int, lease_secs: float | None = None,
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
        # the annotators (ids) who took part in a browser session: three may settle a disagreement
        self.seen = {r.get("annotator") for r in self.answers.values() if r.get("session")}
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
        # Who is on the page (client -> last request) and who has been told the round is done:
        # the server stays up until every page still polling has heard it.
        self.last_seen: dict[str, float] = {}
        self.told_done: set[str] = set()
        self._views: collections.OrderedDict = collections.OrderedDict()
        self._image: tuple | None = None  # (name, image, region map, labelled, implied) of the last view
        # Earlier rounds' answers (finished, never changed): what is already labelled is shown
        # hatched, since a click names the class of the part it will label (as the oracle does);
        # what the last round labelled without a click is dotted.
        self._before = labelled_before(exp, t)
        self._check_done()

    # ------------------------------------------------------------------ state
    def progress(self) -> dict:
        return {"round": self.t, "asked": len(self.queries), "answered": len(self.answers),
                "clicks": self.clicks, "budget": self.budget, "done": self.done.is_set(),
                "reviews_pending": len(self._reviews_pending())}

    def _progress_for(self, client: str, session: str | None) -> dict:
        """The progress as one page sees it (under the lock): with `undoable`, how many of its
        answers undo can take back now (0 once the round is complete or under review)."""
        out = self.progress()
        reviewing = bool(self.picked) and len(self.answers) == len(self.queries)
        out["undoable"] = 0 if out["done"] or reviewing else len(
            self.stacks.get(_undo_key(session, client), ()))
        self.last_seen[client] = time.monotonic()
        if out["done"]:
            self.told_done.add(client)
        return out

    def pages_not_told(self, within_secs: float = 10.0) -> set[str]:
        """Clients seen in the last `within_secs` that have not heard that the round is done."""
        now = time.monotonic()
        with self.lock:
            return {c for c, seen in self.last_seen.items()
                    if now - seen < within_secs and c not in self.told_done}

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
        out = _identity(first.get("session"), first.get("annotator") or "")
        if k == 2:
            r = self.reviews[i][1]
            out |= _identity(r.get("session"), r.get("annotator") or "")
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

    def _next_review(self, client: str, who: set[str], now: float) -> dict | None:
        """Leases `client` a review it may give (never of its own answer; only in a browser
        session), or None."""
        if not any(w.startswith("session:") for w in who):
            return None
        for key in [k for k, (_, until) in self.review_leases.items() if until <= now]:
            del self.review_leases[key]
        pending = self._reviews_pending()
        mine = [key for key in pending if self.review_leases.get(key, ("",))[0] == client]
        free = [key for key in pending if key not in self.review_leases and not who & self._excluded(*key)]
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
            if session:
                self.seen.add(client)
            if len(self.answers) == len(self.queries) and self.picked:
                query = self._next_review(client, who, now)
                out = self._progress_for(client, session)
                out["held_by_others"] = sum(1 for c, _ in self.review_leases.values() if c != client)
                out["query"] = query
                return out
            mine = [i for i, (c, _) in self.leases.items() if c == client and i not in self.answers]
            i = min(mine, key=self.position.__getitem__) if mine else self._next_free()
            if i is not None:
                for j in [j for j, (c, _) in self.leases.items() if c == client and j != i]:
                    del self.leases[j]
                self.leases[i] = (client, now + self.lease_secs)
            out = self._progress_for(client, session)
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
            row = ledger.make_row(self.t, q, a, annotator=client, source="web", received_at=received,
                                  elapsed_ms=elapsed, session=session or None)
            self.exp.ledger.append([row])  # fsync'd: durable from here on
            self.answers[i] = row
            self.clicks += int(q["cost"])
            self.stacks[_undo_key(session, client)].append(i)
            self.leases.pop(i, None)
            self._check_done()
            return self._progress_for(client, session)

    def _review_answer(self, client, i, a, session, elapsed, received) -> dict:
        """Records a review answer of query i (under the lock): a pending review that this
        session may give and nobody else holds."""
        who = _identity(session, client)
        key = next((key for key in self._reviews_pending() if key[0] == i), None)
        if key is None:
            raise Refused(409, f"region {self.queries[i]['region']} of "
                               f"'{self.queries[i]['image']}' is answered already")
        if not session:
            raise Refused(403, "a review is given on the page (a browser session): open the page")
        if who & self._excluded(*key):
            raise Refused(409, "you answered this region already: another annotator reviews it")
        holder = self.review_leases.get(key)
        if holder is not None and holder[0] != client:
            raise Refused(409, "another annotator holds this review; take the next one")
        q, first = self.queries[i], self.answers[i]
        row = ledger.make_row(self.t, q, a, size=first["size"], cost=0, review=key[1],
                              annotator=client, source="web", received_at=received,
                              elapsed_ms=elapsed, session=session or None)
        self.exp.ledger.append([row])
        self.reviews.setdefault(i, {})[key[1]] = row
        self.review_leases.pop(key, None)
        self._check_done()
        return self._progress_for(client, session)

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
            row = ledger.undo_row(self.t, q, annotator=client, source="web",
                                  received_at=round(time.time(), 3), session=session or None)
            self.exp.ledger.append([row])
            stack.pop()
            self.clicks -= int(self.answers.pop(i)["cost"])
            self._first_open = min(self._first_open, self.position[i])
            self.leases[i] = (client, self.clock() + self.lease_secs)
            out = self._progress_for(client, session)
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
        image, regions, labelled, implied = self._image_and_map(q["image"])
        png = io_utils.encode_png(render_view(image, regions == q["region"], kind, labelled, implied_dots(implied)))
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
        labelled, implied = self._before(name, regions.shape)
        self._image = (name, image, regions, labelled, implied)
        return image, regions, labelled, implied

    def page_info(self) -> dict:
        d = self.exp.descriptor
        classes = [{"id": c, "name": n, "color": colour, "key": CLASS_KEYS[c] if c < len(CLASS_KEYS) else ""}
                   for c, (n, colour) in enumerate(zip(d.class_names, d.hex_colours()))]
        return {"round": self.t, "job": self.exp.job_dir.name, "classes": classes,
                "unclear": {"id": self.ignore, "key": UNCLEAR_KEY}, "undo_key": UNDO_KEY,
                "preselect": self.preselect}


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
