"""The annotation page: people answer a round's queried regions in a browser (ANNOTATOR=human).

`serve_round(exp, t)` (the answers stage with ANNOTATOR=human, deeplab/annotate/stage.py) serves
round t on a local web page until every queried region is answered, then returns the stage's
figures and the driver goes on. The same
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
  - a malformed request gets a 4xx with a one-line reason, never a 500: numbers are ASCII
    digits, a request's headers and body must arrive within REQUEST_SECS of its first byte
    (408), idle connections close after IDLE_SECS, and at most MAX_CONNECTIONS are served at
    once (the next gets a 503 and is closed). The policy is pure functions of the request
    (`content_length`, `session_of`, `access_refusal`, `parse_json_body`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from deeplab.experiment.locks import round_lock
from deeplab.annotate.session import Refused, RoundSession, session_digest
from deeplab.errors import BadInput, Unavailable
from deeplab.experiment.answers import stage_summary
from deeplab.experiment.job import Job

LOOPBACK = ("127.0.0.1", "localhost", "::1")
VIEW_RE = re.compile(r"^/view/(\d{1,9})/(zoom|whole)\.png$")
MAX_BODY = 4096
SESSION_COOKIE = "annotate_session"
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
IDLE_SECS = 30.0  # a connection that sends nothing this long is closed
REQUEST_SECS = 10.0  # a request's headers and body arrive within this of its first byte
LINGER_MAX_SECS = 6.0  # at most this long for waiting pages (they poll every 2 s) to hear the end
MAX_CONNECTIONS = 256  # more than a browser opens to one site (Chromium: 6 per host, 256 in all)




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


# ---------------------------------------------------------------------------- request policy
# Pure functions of a request's method, path and headers: what the handler below asks before it
# touches the session. Testable without a socket.
DIGITS = re.compile(r"^[0-9]{1,9}$")  # ASCII digits only ("²".isdigit() is True)


def content_length(text: str | None) -> int:
    """The body's length from its Content-Length header (1..MAX_BODY), or Refused (400)."""
    text = (text or "0").strip()
    if not DIGITS.match(text):
        raise Refused(400, f"Content-Length {text[:20]!r} is not a number of bytes")
    length = int(text)
    if not 0 < length <= MAX_BODY:
        raise Refused(400, f"a body of 1..{MAX_BODY} bytes is expected")
    return length


def session_of(cookie_header: str | None) -> str | None:
    """The digest of the browser session's cookie, if the request sent a well-formed one."""
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and SESSION_RE.match(value):
            return session_digest(value)
    return None


def access_refusal(method: str, target: str, headers, token: str | None) -> Refused | None:
    """Why a request may not reach the page (None: it may): a missing or wrong token when one
    is required; off the loopback by Host without one (DNS rebinding); a request a browser
    marks as coming from another site (Fetch Metadata, Origin), except a top-level navigation
    to the page itself. `headers`: a mapping with .get (email.message.Message or dict)."""
    if token is not None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        given = headers.get("X-Token") or query.get("token", [""])[0]
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode()):
            return Refused(403, "a valid token is required (the URL printed at start)")
    else:
        hostname = (headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if hostname not in LOOPBACK:
            return Refused(403, f"host {hostname[:64]!r} is not this machine")
    site = headers.get("Sec-Fetch-Site")
    origin = headers.get("Origin")
    own = "http://" + (headers.get("Host") or "")
    navigation = (method == "GET" and urllib.parse.urlsplit(target).path == "/"
                  and headers.get("Sec-Fetch-Mode") == "navigate"
                  and headers.get("Sec-Fetch-Dest") in ("document", None))
    foreign = (site is not None and site not in ("same-origin", "none")) or (
        origin is not None and origin != own)
    if foreign and not navigation:
        return Refused(403, "requests from another site are refused: open the page itself")
    return None


def parse_json_body(raw: bytes) -> dict:
    """A request body as a JSON object, or Refused (400)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON (or nests too deep)") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return body


# ---------------------------------------------------------------------------- HTTP
class _Page:
    """What the handler serves: the round's session, the page with its policy, the token."""

    def __init__(self, session: RoundSession, token: str | None, idle_secs: float,
                 request_secs: float):
        self.session, self.token = session, token
        self.idle_secs, self.request_secs = idle_secs, request_secs
        self.html = (Path(__file__).with_name("page.html").read_text()
                     .replace("__INFO__", _json_for_html(session.page_info())))
        self.csp = content_security_policy(self.html)


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection of the page's server (`self.server.page`: the _Page). Every refusal is a
    JSON line with a 4xx; a request's headers and body must arrive within REQUEST_SECS of its
    first byte (else 408), and a connection idle for IDLE_SECS is closed."""

    server_version = "annotate"
    sys_version = ""

    def setup(self):
        self.timeout = self.server.page.idle_secs  # idle or slow connections are closed
        super().setup()
        self._expired = False

    def log_message(self, fmt, *args):  # quiet: refusals are answered, not logged
        pass

    # -- the request deadline: from the request's first byte to the end of its body
    def _expire(self):
        self._expired = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)  # a blocked read returns at once

    def handle_one_request(self):
        try:
            if not self.rfile.peek(1):  # the client closed the connection
                self.close_connection = True
                return
        except (TimeoutError, OSError):  # idle for IDLE_SECS
            self.close_connection = True
            return
        timer = threading.Timer(self.server.page.request_secs, self._expire)
        timer.daemon = True
        timer.start()
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        finally:
            timer.cancel()
        if self._expired:
            self.close_connection = True

    def parse_request(self):
        ok = super().parse_request()
        if ok and self._expired:
            self.send_error(408)
            return False
        return ok

    # -- answers
    def _send(self, status: int, body: bytes, ctype: str, cookie: str | None = None) -> None:
        page = self.server.page
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", page.csp)
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        if self.close_connection:
            self.send_header("Connection", "close")
        if cookie:
            self.send_header("Set-Cookie", f"{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; "
                                           "SameSite=Lax")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        # Malformed request lines and headers, and the deadline: a JSON reason like every
        # other refusal, and the connection closed.
        self.close_connection = True
        if self._expired:
            code, message = 408, "the request did not arrive in time: send it again"
        elif code == 501:  # a method no do_* serves: the client's mistake, not the server's
            code, message = 405, "only GET and POST are served"
        elif code == 505:  # a protocol version past 1.x (HTTP/9.9): a malformed request, a 4xx
            code, message = 400, "only HTTP/1.0 and HTTP/1.1 are served"
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # an unparsable request line: answer in 1.0
        if not hasattr(self, "command") or self.command is None:
            self.command = ""
        with contextlib.suppress(OSError):
            self._refuse(code, message or explain or "malformed request")

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _refuse(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _guarded(self, handle) -> None:
        """Runs one request: a refusal is a JSON line; an unexpected error is one line on the
        console and a 500 to the client (a defect of this code, never of the request)."""
        try:
            refusal = access_refusal(self.command, self.path, self.headers, self.server.page.token)
            if refusal is not None:
                raise refusal
            handle(urllib.parse.urlsplit(self.path).path)
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
        if self.headers.get("Transfer-Encoding"):
            raise Refused(400, "send the body with a Content-Length, not a Transfer-Encoding")
        length = content_length(self.headers.get("Content-Length"))
        try:
            raw = self.rfile.read(length)
        except (TimeoutError, OSError):
            raw = b""
            self._expired = True
        if len(raw) < length:
            self.close_connection = True
            if self._expired:
                raise Refused(408, f"the body did not arrive in time ({len(raw)} of {length} "
                                   "bytes): send it again")
            raise Refused(400, f"the body ended after {len(raw)} of {length} bytes")
        return parse_json_body(raw)

    def do_GET(self):
        session = self.server.page.session

        def handle(path):
            if path == "/":
                # A browser session of its own for undo: issued with the page, kept by it.
                cookie = None if session_of(self.headers.get("Cookie")) else secrets.token_urlsafe(24)
                self._send(200, self.server.page.html.encode(), "text/html; charset=utf-8",
                           cookie=cookie)
            elif path in ("/api/next", "/api/answer", "/api/undo"):
                raise Refused(405, f"{path} changes what is handed out: POST it (JSON)")
            elif path == "/api/progress":
                self._json(200, session.progress())
            elif m := VIEW_RE.match(path):
                self._send(200, session.view(int(m.group(1)), m.group(2)), "image/png")
            else:
                raise Refused(404, "not found")

        self._guarded(handle)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        session = self.server.page.session

        def handle(path):
            if path not in ("/api/next", "/api/answer", "/api/undo"):
                raise Refused(404, "not found")
            body = self._body()
            mine = session_of(self.headers.get("Cookie"))
            if path == "/api/next":
                self._json(200, session.next_for(body.get("client"), session=mine))
            elif path == "/api/answer":
                self._json(200, session.answer(body.get("client"), body.get("index"),
                                               body.get("answer"), session=mine,
                                               elapsed_ms=body.get("elapsed_ms")))
            else:
                if mine is None:
                    raise Refused(403, "undo takes back answers of this browser session "
                                       "only: reload the page")
                self._json(200, session.undo(body.get("client"), session=mine))

        self._guarded(handle)


class _Server(http.server.ThreadingHTTPServer):
    """At most `max_connections` connections at once: the next is answered 503 and closed
    (bounded threads and memory whatever a client opens)."""

    daemon_threads = True

    def __init__(self, address, handler, page: _Page, max_connections: int):
        self.page = page
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            body = b'{"error": "too many connections: try again in a moment"}'
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
                                b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        # A browser that drops a view it no longer needs is not an error worth a trace.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def make_server(session: RoundSession, host: str = "127.0.0.1", port: int = 8765,
                token: str | None = None, idle_secs: float = IDLE_SECS,
                request_secs: float = REQUEST_SECS,
                max_connections: int = MAX_CONNECTIONS) -> http.server.ThreadingHTTPServer:
    """The page's HTTP server (not started). A token is required on every request when given;
    serving another address than the loopback without one is refused."""
    if host not in LOOPBACK and not token:
        raise BadInput(f"serving {host} (not this machine only) requires a token")
    page = _Page(session, token, idle_secs, request_secs)
    server_class = type("Server", (_Server,), {
        "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    try:
        return server_class((host, port), Handler, page, max_connections)
    except OSError as e:
        raise Unavailable(f"cannot serve on {host}:{port} ({e.strerror}): another program uses the "
                          "port; set ANNOTATE_PORT (--port) to a free one, or 0 for any") from None


def page_url(host: str, port: int, token: str | None) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve_round(exp: Job, t: int, host: str | None = None, port: int | None = None,
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
            return stage_summary(exp, t, session.queries)
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
            # a page still polling (waiting for others) hears "round complete" before the end
            deadline = time.monotonic() + LINGER_MAX_SECS
            while session.pages_not_told() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            server.shutdown()
            server.server_close()
    print(f"round {t}: every queried region is answered")
    return stage_summary(exp, t, session.queries)
