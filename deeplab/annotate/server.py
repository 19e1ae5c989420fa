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
import contextlib
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

from deeplab.annotate.lock import round_lock
from deeplab.annotate.session import Refused, RoundSession, session_digest
from deeplab.experiment.job import Experiment
from deeplab.experiment.stages import answers_summary, review_summary

LOOPBACK = ("127.0.0.1", "localhost", "::1")
VIEW_RE = re.compile(r"^/view/(\d{1,9})/(zoom|whole)\.png$")
MAX_BODY = 4096
SESSION_COOKIE = "annotate_session"
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
IDLE_SECS = 30.0  # a connection that sends nothing this long is closed




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
    page = (Path(__file__).with_name("page.html").read_text()
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


def annotate_stage(exp: Experiment, t: int) -> dict:
    """The answers stage: the page for ANNOTATOR=human, the simulated annotator otherwise."""
    if exp.config.annotator == "human":
        return annotate_round(exp, t)
    from deeplab.experiment import stages

    return stages.annotate_round(exp, t)


def annotate_round(exp: Experiment, t: int, progress: bool = True) -> dict:
    """The answers stage with ANNOTATOR=human (the page on ANNOTATE_HOST:ANNOTATE_PORT)."""
    return serve_round(exp, t, token=os.environ.get("ANNOTATE_TOKEN") or None)
