"""The annotation page's HTTP server: tokens, no path from the request, other sites refused,
malformed requests, browser sessions and the round lock."""

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import human_job, ledger_row

ROOT = Path(__file__).parents[1]


# ---------------------------------------------------------------------------- HTTP safety
@contextlib.contextmanager
def _served(exp, host="127.0.0.1", token=None, **kw):
    """The page's server for round 0 of `exp`, serving for the block, shut down after it."""
    from deeplab.annotate.server import make_server
    from deeplab.annotate.session import RoundSession

    server = make_server(RoundSession(exp, 0), host, 0, token, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _request(host, port, path, method="GET", body=None, headers=None):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read()


def _other_address():
    """This machine's address as another host on the network reaches it (the loopback when
    the machine has no other interface)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def test_token_is_required_on_every_request_off_the_loopback(tmp_path, synth_root):
    from deeplab.annotate.server import make_server
    from deeplab.annotate.session import RoundSession

    exp = human_job(tmp_path, synth_root)
    with pytest.raises(ValueError, match="requires a token"):
        make_server(RoundSession(exp, 0), "0.0.0.0", 0, None)
    with _served(exp, "0.0.0.0", token="s3cret-token") as server:
        port, addr = server.server_address[1], _other_address()
        for path in ("/", "/api/next?client=x", "/view/0/zoom.png", "/api/progress"):
            status, body = _request(addr, port, path)
            assert status == 403 and b"token" in body
            assert _request(addr, port, path + ("&" if "?" in path else "?") + "token=wrong")[0] == 403
        assert _request(addr, port, "/?token=s3cret-token")[0] == 200
        assert _request(addr, port, "/view/0/whole.png", headers={"X-Token": "s3cret-token"})[0] == 200
        status, _ = _request(addr, port, "/api/answer", "POST", json.dumps({"client": "x", "index": 0, "answer": 1}),
                             {"Content-Type": "application/json"})
        assert status == 403 and exp.ledger.read() == []


def test_no_path_from_the_request_is_served(tmp_path, synth_root):
    exp = human_job(tmp_path, synth_root)
    with _served(exp) as server:
        port = server.server_address[1]
        for path in ("/../../../../etc/passwd", "/view/../../../../etc/passwd", "/view/0/../../config.json",
                     "/view/0/..%2f..%2fconfig.json", "/%2e%2e/%2e%2e/etc/passwd", "/config.json",
                     "/ledger.jsonl", "/view/0/zoom.png/../../../etc/passwd", "/view/999/zoom.png"):
            status, body = _request("127.0.0.1", port, path)
            assert status == 404, path
            assert b"root:" not in body and b"job_dir" not in body
        assert _request("127.0.0.1", port, "/view/0/zoom.png")[0] == 200
        # Another site's page reaching the loopback through its own host name is refused.
        assert _request("127.0.0.1", port, "/", headers={"Host": "attacker.example:80"})[0] == 403
        # Answers must be JSON (a cross-site form post is not), and well-formed.
        body = json.dumps({"client": "x", "index": 0, "answer": 1})
        assert _request("127.0.0.1", port, "/api/answer", "POST", body, {"Content-Type": "text/plain"})[0] == 415
        assert _request("127.0.0.1", port, "/api/answer", "POST", "{", {"Content-Type": "application/json"})[0] == 400
        assert exp.ledger.read() == []
        assert _request("127.0.0.1", port, "/api/answer", "POST", body, {"Content-Type": "application/json"})[0] == 200
        assert len(exp.ledger.read()) == 1


def test_no_other_site_frames_drives_or_starves_the_page(tmp_path, synth_root):
    """Every response forbids framing; state changes only by POST; what a browser marks as
    coming from another site is refused (a top-level navigation to the page excepted)."""
    exp = human_job(tmp_path, synth_root)
    with _served(exp) as server:
        port = server.server_address[1]
        post = {"Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for path in ("/", "/api/progress", "/view/0/zoom.png", "/nothing"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.getheader("X-Frame-Options") == "DENY", path
            csp = r.getheader("Content-Security-Policy")
            assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
            assert "script-src 'sha256-" in csp
        # no GET hands out a region
        status, body = _request("127.0.0.1", port, "/api/next?client=x")
        assert status == 405 and b"POST" in body
        status, body = _request("127.0.0.1", port, "/api/progress")
        assert json.loads(body)["answered"] == 0
        one = json.dumps({"client": "x"})
        status, body = _request("127.0.0.1", port, "/api/next", "POST", one, post)
        assert status == 200 and json.loads(body)["held_by_others"] == 0
        # another site, as a browser marks it
        answer = json.dumps({"client": "x", "index": 0, "answer": 1})
        for headers in ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
                        {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
                        {"Origin": "http://127.0.0.2:9000"}, {"Origin": "null"}):
            assert _request("127.0.0.1", port, "/api/answer", "POST", answer, {**post, **headers})[0] == 403
            assert _request("127.0.0.1", port, "/api/next", "POST", json.dumps({"client": "y"}),
                            {**post, **headers})[0] == 403
            assert _request("127.0.0.1", port, "/view/0/zoom.png", headers=headers)[0] == 403
        assert exp.ledger.read() == []
        frame = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
        assert _request("127.0.0.1", port, "/", headers=frame)[0] == 403
        top = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        assert _request("127.0.0.1", port, "/", headers=top)[0] == 200
        # the page itself
        own = {**post, "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
        assert _request("127.0.0.1", port, "/api/answer", "POST", answer, own)[0] == 200
        assert len(exp.ledger.read()) == 1


def test_class_names_cannot_break_the_page(tmp_path, synth_root):
    names = ["<!--<script>", "</script><img src=x onerror=alert(1)>", "a&b \"c\" 'd'"]
    exp = human_job(tmp_path, synth_root, class_names=names)
    with _served(exp) as server:
        status, body = _request("127.0.0.1", server.server_address[1], "/")
        page = body.decode()
        start = page.index('<script id="info" type="application/json">') + 42
        data = page[start:page.index("</script>", start)]
        assert "<" not in data and ">" not in data
        assert [c["name"] for c in json.loads(data)["classes"]][:3] == names
        assert page.count("<script") == 2 and page.count("</script>") == 2


def test_malformed_requests_get_a_400_and_idle_connections_close(tmp_path, synth_root, capfd):
    exp = human_job(tmp_path, synth_root)
    with _served(exp, idle_secs=0.5) as server:
        port = server.server_address[1]
        for headers, body in (({"Content-Length": "abc"}, "{}"), ({"Content-Length": "-5"}, "{}"),
                              ({}, "[" * 4000), ({}, '{"client": ' * 1000)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("POST", "/api/answer")
            conn.putheader("Content-Type", "application/json")
            for k, v in headers.items():
                conn.putheader(k, v)
            if "Content-Length" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body.encode())
            r = conn.getresponse()
            assert r.status == 400, (headers, body[:20])
            assert "error" in json.loads(r.read())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"NONSENSE\r\n\r\n")
            reply = b""
            while chunk := raw.recv(4096):
                reply += chunk
            assert reply.startswith(b"HTTP/1.0 400") and b"error" in reply
        # a protocol version past 1.x is a malformed request too (a 4xx, never a 505)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET * HTTP/9.9\r\n\r\n")
            reply = b""
            while chunk := raw.recv(4096):
                reply += chunk
            assert reply.split(b"\r\n")[0].split(b" ")[1] == b"400", reply[:80]
            assert b"HTTP/1.0 and HTTP/1.1" in reply
        # an idle connection is closed by the server
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            t0 = time.monotonic()
            assert idle.recv(10) == b""
            assert time.monotonic() - t0 < 5
        assert exp.ledger.read() == []
        assert "Traceback" not in capfd.readouterr().err


def test_undo_takes_back_only_answers_of_the_same_browser_session(tmp_path, synth_root):
    from deeplab.annotate.server import SESSION_COOKIE

    exp = human_job(tmp_path, synth_root)
    with _served(exp) as server:
        port = server.server_address[1]

        def cookie_of_page():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            set_cookie = r.getheader("Set-Cookie")
            assert "HttpOnly" in set_cookie and "SameSite" in set_cookie
            return set_cookie.split(";")[0]

        def post(path, body, cookie=None):
            headers = {"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})}
            status, reply = _request("127.0.0.1", port, path, "POST", json.dumps(body), headers)
            return status, json.loads(reply)

        mine, theirs = cookie_of_page(), cookie_of_page()
        assert mine != theirs and mine.startswith(SESSION_COOKIE + "=")
        q = post("/api/next", {"client": "me"}, mine)[1]["query"]
        assert post("/api/answer", {"client": "me", "index": q["index"], "answer": 2}, mine)[0] == 200
        row = exp.ledger.read()[0]
        assert row["session"] and row["session"] not in mine  # a digest, not the cookie
        # another session, even naming me, and a request without a session, undo nothing
        assert post("/api/undo", {"client": "me"}, theirs)[0] == 409
        assert post("/api/undo", {"client": "me"})[0] == 403
        assert post("/api/undo", {"client": "me"}, f"{SESSION_COOKIE}=short")[0] == 403
        assert len(exp.ledger.read()) == 1
        status, reply = post("/api/undo", {"client": "me"}, mine)
        assert status == 200 and reply["undone"] == q["index"] and exp.ledger.read() == []
    # A Label Studio import's answers are on no browser session's stack.
    from deeplab.annotate.session import RoundSession

    exp.ledger.append([{**ledger_row(0), "image": q["image"], "region": q["region"],
                        "annotator": "label-studio", "source": "label_studio"}])
    s = RoundSession(exp, 0)
    from deeplab.annotate.session import Refused

    for who in ("label-studio", "me"):
        with pytest.raises(Refused, match="nothing to undo"):
            s.undo(who, session="0" * 24)


def test_one_process_serves_a_round(tmp_path, synth_root):
    from deeplab.annotate import label_studio, server
    from deeplab.experiment.locks import round_lock

    exp = human_job(tmp_path, synth_root)
    code = (f"import time\nfrom deeplab.experiment.locks import round_lock\nfrom deeplab.experiment.job import Job\n"
            f"exp = Job.open({str(exp.job_dir)!r})\n"
            f"with round_lock(exp, 0):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match="being served already"):
            server.serve_round(exp, 0, port=0)
        (tmp_path / "empty.json").write_text("[]")
        with pytest.raises(RuntimeError, match="being served already"):  # nor imported into
            label_studio.import_round(exp, 0, tmp_path / "empty.json")
    finally:
        proc.kill()
        proc.wait()
    with round_lock(exp, 0):  # released with the process that held it
        pass


# ---------------------------------------------------------------------------- slow and malformed


def _raw(port, data: bytes, timeout=10.0, pause=None) -> bytes:
    """Sends `data` (a list: parts sent `pause` seconds apart) and reads the answer to its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for part in (data if isinstance(data, list) else [data]):
            try:
                s.sendall(part)
            except OSError:  # the server closed the connection: read what it said
                break
            if pause:
                time.sleep(pause)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return reply


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def test_content_length_is_ascii_digits_and_slow_requests_are_cut(tmp_path, synth_root):
    """A Content-Length of a non-ASCII digit, a body shorter than announced on an open
    connection, and headers sent a line at a time (slowloris): a 400 or a 408 within the
    request deadline, never a 500 or a connection held open."""
    exp = human_job(tmp_path, synth_root)
    head = b"POST /api/next HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with _served(exp, request_secs=1.0) as server:
        port = server.server_address[1]
        reply = _raw(port, head + "Content-Length: \u00b2\r\n\r\n{}".encode("latin-1"))
        assert _status(reply) == 400 and b"Content-Length" in reply
        t0 = time.monotonic()
        reply = _raw(port, head + b"Content-Length: 100\r\n\r\n{\"client\":")
        assert _status(reply) == 408 and time.monotonic() - t0 < 5
        t0 = time.monotonic()
        reply = _raw(port, [b"GET / HTTP/1.1\r\n"] + [b"X-Slow: %d\r\n" % i for i in range(20)],
                     pause=0.3)
        assert _status(reply) == 408 and time.monotonic() - t0 < 8
        status, _ = _request("127.0.0.1", port, "/api/progress")
        assert status == 200


def test_connections_beyond_the_cap_get_a_503_and_the_page_goes_on(tmp_path, synth_root):
    exp = human_job(tmp_path, synth_root)
    with _served(exp, max_connections=3, request_secs=30.0) as server:
        port = server.server_address[1]
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        time.sleep(0.3)
        reply = _raw(port, b"GET /api/progress HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _status(reply) == 503 and b"Retry-After" in reply
        for s in held:
            s.close()
        deadline = time.monotonic() + 10
        while _status(_raw(port, b"GET /api/progress HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Connection: close\r\n\r\n")) != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def _fuzz_requests(rng):
    """A few hundred malformed requests: broken request lines, methods, paths, headers,
    lengths, bodies and JSON fields of every type."""
    junk = [b"", b"\x00", b"\xff\xfe", b"\r\n", b"%", b"%zz", b"../" * 5, b"\xb2", b"9" * 30,
            b"-1", b" ", b"\t", b"{", b"[]", b"null", b'"x"', b"1e999", b"NaN"]
    values = [None, True, -1, 2 ** 70, 1.5, float("nan") if False else 1e308, "", "x" * 5000, [],
              {}, [1], {"a": 1}, "\u00b2", "0", 19, 255]
    out = []
    for method in (b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"BREW", b"G\x00T", b""):
        for path in (b"/", b"/api/next", b"/api/answer", b"/view/0/zoom.png", b"/view/99999/x.png",
                     b"/view/-1/zoom.png", b"//etc/passwd", b"/%2e%2e/", b"*", b"http://x/"):
            out.append(method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for _ in range(120):
        parts = [bytes(rng.choice(junk)) for _ in range(3)]
        out.append(b"POST /api/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                   b"\r\nContent-Length: " + parts[0] + b"\r\n" + parts[1] + b"\r\n\r\n" + parts[2])
    for field in ("client", "index", "answer", "elapsed_ms"):
        for v in values:
            body = {"client": "fuzz", "index": 0, "answer": 1, field: v}
            for path in (b"/api/next", b"/api/answer", b"/api/undo"):
                raw = json.dumps(body).encode()
                out.append(b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)
    for header in (b"Host: \xff", b"Cookie: annotate_session=\xff\xff", b"Origin: \x00",
                   b"Sec-Fetch-Site: \xb2", b"Transfer-Encoding: chunked", b"Expect: 100-continue",
                   b"Content-Length: 5\r\nContent-Length: 7", b"X" * 70000):
        out.append(b"POST /api/next HTTP/1.1\r\n" + header + b"\r\n\r\n")
    return out


def test_fuzzed_requests_get_a_4xx_and_the_annotator_goes_on(tmp_path, synth_root, capfd):
    import random

    exp = human_job(tmp_path, synth_root)
    requests = _fuzz_requests(random.Random(0))
    assert len(requests) >= 200
    with _served(exp, request_secs=1.0) as server:
        port = server.server_address[1]
        statuses = {}
        for req in requests:
            status = _status(_raw(port, req, timeout=10))
            statuses.setdefault(status, []).append(req[:60])
        bad = {s: r[:3] for s, r in statuses.items() if not (400 <= s < 500 or s == 200)}
        assert not bad, bad
        assert sum(len(r) for s, r in statuses.items() if s != 200) > 0.8 * len(requests)
        # the real annotator's next request still succeeds
        status, reply = _request("127.0.0.1", port, "/api/next", "POST",
                                 json.dumps({"client": "person"}), {"Content-Type": "application/json"})
        assert status == 200 and json.loads(reply)["query"] is not None
        assert "Traceback" not in capfd.readouterr().err


def test_the_request_policy_without_a_socket():
    from deeplab.annotate.server import (SESSION_COOKIE, access_refusal, content_length,
                                         parse_json_body, session_of)
    from deeplab.annotate.session import Refused

    here = {"Host": "127.0.0.1:8765"}
    assert access_refusal("GET", "/", here, None) is None
    assert access_refusal("POST", "/api/next", {**here, "Sec-Fetch-Site": "same-origin",
                                                "Origin": "http://127.0.0.1:8765"}, None) is None
    for method, target, headers, token, status, words in [
        ("GET", "/", {"Host": "evil.example:8765"}, None, 403, "not this machine"),
        ("POST", "/api/next", {**here, "Sec-Fetch-Site": "cross-site"}, None, 403, "another site"),
        ("POST", "/api/next", {**here, "Origin": "http://127.0.0.2:8765"}, None, 403, "another site"),
        ("GET", "/", {"Host": "10.0.0.5:8765"}, "secret", 403, "token"),
        ("GET", "/?token=wrong", {"Host": "10.0.0.5:8765"}, "secret", 403, "token"),
    ]:
        r = access_refusal(method, target, headers, token)
        assert r is not None and r.status == status and words in str(r), (headers, r)
    assert access_refusal("GET", "/?token=secret", {"Host": "10.0.0.5:8765"}, "secret") is None
    # a top-level navigation from another site may open the page, nothing else
    nav = {**here, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert access_refusal("GET", "/", nav, None) is None
    assert access_refusal("GET", "/api/progress", nav, None) is not None
    assert content_length("42") == 42
    for bad in ("\u00b2", "", "-5", "4 2", "0", "99999", "\u0664\u0662", "1e3"):
        with pytest.raises(Refused) as e:
            content_length(bad)
        assert e.value.status == 400
    cookie = "a" * 32
    assert session_of(f"x=1; {SESSION_COOKIE}={cookie}") and session_of(f"{SESSION_COOKIE}={cookie}") != cookie
    assert session_of(f"{SESSION_COOKIE}=short") is None and session_of(None) is None
    assert parse_json_body(b'{"a": 1}') == {"a": 1}
    for raw in (b"[1]", b"{", b"[" * 5000, b"\xff"):
        with pytest.raises(Refused):
            parse_json_body(raw)
