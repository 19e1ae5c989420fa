"""The annotation page's HTTP server: tokens, no path from the request, other sites refused,
malformed requests, browser sessions and the round lock."""

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import human_job

ROOT = Path(__file__).parents[1]



def _row(i, t=0, image="a", answer=1):
    return {"round": t, "image": image, "region": i, "answer": answer, "size": 10, "score": 0.5,
            "cost": 1}



# ---------------------------------------------------------------------------- HTTP safety
def _serve(exp, host, token=None, **kw):
    from deeplab.annotate.server import make_server
    from deeplab.annotate.session import RoundSession

    server = make_server(RoundSession(exp, 0), host, 0, token, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


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
    server = _serve(exp, "0.0.0.0", token="s3cret-token")
    try:
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
    finally:
        server.shutdown()
        server.server_close()


def test_no_path_from_the_request_is_served(tmp_path, synth_root):
    exp = human_job(tmp_path, synth_root)
    server = _serve(exp, "127.0.0.1")
    try:
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
    finally:
        server.shutdown()
        server.server_close()


def test_no_other_site_frames_drives_or_starves_the_page(tmp_path, synth_root):
    """Every response forbids framing; state changes only by POST; what a browser marks as
    coming from another site is refused (a top-level navigation to the page excepted)."""
    exp = human_job(tmp_path, synth_root)
    server = _serve(exp, "127.0.0.1")
    port = server.server_address[1]
    post = {"Content-Type": "application/json"}
    try:
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
    finally:
        server.shutdown()
        server.server_close()


def test_class_names_cannot_break_the_page(tmp_path, synth_root):
    names = ["<!--<script>", "</script><img src=x onerror=alert(1)>", "a&b \"c\" 'd'"]
    exp = human_job(tmp_path, synth_root, class_names=names)
    server = _serve(exp, "127.0.0.1")
    try:
        status, body = _request("127.0.0.1", server.server_address[1], "/")
        page = body.decode()
        start = page.index('<script id="info" type="application/json">') + 42
        data = page[start:page.index("</script>", start)]
        assert "<" not in data and ">" not in data
        assert [c["name"] for c in json.loads(data)["classes"]][:3] == names
        assert page.count("<script") == 2 and page.count("</script>") == 2
    finally:
        server.shutdown()
        server.server_close()


def test_malformed_requests_get_a_400_and_idle_connections_close(tmp_path, synth_root, capfd):
    exp = human_job(tmp_path, synth_root)
    server = _serve(exp, "127.0.0.1", idle_secs=0.5)
    port = server.server_address[1]
    try:
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
        # an idle connection is closed by the server
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            t0 = time.monotonic()
            assert idle.recv(10) == b""
            assert time.monotonic() - t0 < 5
        assert exp.ledger.read() == []
        assert "Traceback" not in capfd.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_undo_takes_back_only_answers_of_the_same_browser_session(tmp_path, synth_root):
    from deeplab.annotate.server import SESSION_COOKIE

    exp = human_job(tmp_path, synth_root)
    server = _serve(exp, "127.0.0.1")
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

    try:
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
    finally:
        server.shutdown()
        server.server_close()
    # A Label Studio import's answers are on no browser session's stack.
    from deeplab.annotate.session import RoundSession

    exp.ledger.append([{**_row(0), "image": q["image"], "region": q["region"],
                        "annotator": "label-studio", "source": "label_studio"}])
    s = RoundSession(exp, 0)
    from deeplab.annotate.session import Refused

    for who in ("label-studio", "me"):
        with pytest.raises(Refused, match="nothing to undo"):
            s.undo(who, session="0" * 24)


def test_one_process_serves_a_round(tmp_path, synth_root):
    from deeplab.annotate import label_studio, server
    from deeplab.annotate.lock import round_lock

    exp = human_job(tmp_path, synth_root)
    code = (f"import time\nfrom deeplab.annotate.lock import round_lock\nfrom deeplab.experiment.job import Experiment\n"
            f"exp = Experiment.open({str(exp.job_dir)!r})\n"
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
