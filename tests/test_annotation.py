"""Real annotators without a browser: the durable ledger, folder data sets, the round session
(validation, leases, undo, restart) and the page's HTTP safety rules."""

import http.client
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_folder_dataset
from deeplab.experiment import ledger, tasks
from deeplab.experiment.config import ExperimentConfig
from deeplab.experiment.job import Experiment
from deeplab.experiment.stages import select_round
from deeplab.datasets import get_dataset

ROOT = Path(__file__).parents[1]


def _row(i, t=0, image="a", answer=1):
    return {"round": t, "image": image, "region": i, "answer": answer, "size": 10, "score": 0.5,
            "cost": 1}


# ---------------------------------------------------------------------------- ledger
def test_ledger_appends_in_place_and_folds_undo(tmp_path):
    led = ledger.Ledger(tmp_path / "ledger.jsonl")
    led.append([_row(0)])
    inode = led.path.stat().st_ino
    before = led.path.read_bytes()
    for i in range(1, 50):
        led.append([_row(i)])
    assert led.path.stat().st_ino == inode  # appended, never rewritten through a new file
    assert led.path.read_bytes().startswith(before)
    led.append([{"round": 0, "image": "a", "region": 7, "undo": True, "annotator": "p"}])
    led.append([_row(7, answer=3)])
    rows = led.read()
    assert [r["region"] for r in rows] == [i for i in range(50) if i != 7] + [7]
    assert rows[-1]["answer"] == 3
    assert len(led.raw()) == 52
    led.append([{"round": 0, "image": "a", "region": 99, "undo": True}])
    with pytest.raises(ledger.LedgerError, match="undo of region 99 .* follows no answer"):
        led.read()


def test_a_copied_answer_line_stops_at_once_naming_both_lines(tmp_path):
    """Even in a round still being answered (nothing recorded yet): the advice keeps every
    real answer."""
    led = ledger.Ledger(tmp_path / "ledger.jsonl")
    led.append([_row(0), _row(1), _row(2)])
    lines = led.path.read_text().splitlines(keepends=True)
    led.path.write_text("".join(lines + lines[1:2]))
    with pytest.raises(ledger.LedgerError, match=r"line 4 answers region 1 of 'a' \(round 0\) again, "
                                                     r"after line 2.*duplicate; delete line 4"):
        led.read()
    led.path.write_text("".join(lines) + json.dumps(_row(1, answer=5)) + "\n")
    with pytest.raises(ledger.LedgerError, match="keep the line with the right answer"):
        led.read()


def test_torn_last_line_is_reported_dropped_and_cut(tmp_path, capsys):
    led = ledger.Ledger(tmp_path / "ledger.jsonl")
    led.append([_row(0), _row(1)])
    whole = led.path.read_bytes()
    with open(led.path, "ab") as f:
        f.write(json.dumps(_row(2)).encode()[:25])  # a crash in the middle of a write
    assert [r["region"] for r in led.read()] == [0, 1]
    err = capsys.readouterr().err
    assert "last line is torn" in err and "dropped" in err and "asks that region again" in err
    led.append([_row(3)])
    assert led.path.read_bytes() == whole + (json.dumps(_row(3)) + "\n").encode()
    assert (tmp_path / "ledger.jsonl.torn").read_bytes().startswith(json.dumps(_row(2)).encode()[:25])
    # A complete line that does not parse is never dropped.
    with open(led.path, "ab") as f:
        f.write(b'{"round": 0, "ima\n')
    with pytest.raises(ledger.LedgerError, match="line 4 is corrupt"):
        led.read()


def test_killed_writer_loses_at_most_the_line_in_flight(tmp_path):
    """A process appending answers one by one is killed with SIGKILL: every line that made it
    is whole, and every acknowledged answer (printed after append returned) is there."""
    path = tmp_path / "ledger.jsonl"
    code = textwrap.dedent(f"""
        import sys
        from deeplab.experiment.ledger import Ledger
        led = Ledger({str(path)!r})
        for i in range(100000):
            led.append([{{"round": 0, "image": "img" * 50, "region": i, "answer": i % 19,
                          "size": 10, "score": 0.5, "cost": 1}}])
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = -1
    deadline = time.time() + 60
    while acked < 200 and time.time() < deadline:
        acked = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = ledger.Ledger(path).read()
    assert len(rows) >= acked + 1
    assert [r["region"] for r in rows] == list(range(len(rows)))


# ---------------------------------------------------------------------------- folder data sets
def test_folder_dataset_layout(tmp_path, synth_root):
    root = make_folder_dataset(synth_root, tmp_path / "f", labels=True, splits=True, num_train=5, num_val=2)
    ds = get_dataset("folder", root)
    assert ds.num_classes == 19 and ds.class_names[0] == "road" and ds.palette().shape == (19, 3)
    train = ds.list_split(root, "train")
    assert [s.name for s in train] == ["site0/train_000", "site1/train_001", "site0/train_002",
                                       "site1/train_003", "site0/train_004"]
    assert train[2].image_path.suffix == ".jpg" and all(s.label_path is not None for s in train)
    image, label = ds.load(train[2])
    assert image.shape[:2] == label.shape and image.dtype == np.uint8
    assert ds.has_split(root, "val") and len(ds.list_split(root, "val")) == 2
    # Without split lists: every image in the train pool, no val split.
    bare = make_folder_dataset(synth_root, tmp_path / "g", labels=False, splits=False, num_train=3, num_val=2)
    ds = get_dataset("folder", bare)
    assert len(ds.list_split(bare, "train")) == 5 and not ds.has_split(bare, "val")
    assert all(s.label_path is None for s in ds.list_split(bare, "train"))
    with pytest.raises(FileNotFoundError, match="has no label"):
        ds.read_label(ds.list_split(bare, "train")[0])


@pytest.mark.parametrize("spec, message", [
    (["road", "road"], "distinct"),
    ([], "non-empty list"),
    ({"classes": ["a", "b"], "ignore_label": 1}, "ignore_label 1 must be"),
    ({"classes": [{"name": "a", "color": "#12345"}]}, "colour '#12345'"),
    ({"classes": [{"name": "a", "color": "#123456"}, {"name": "b"}]}, "every class or for none"),
])
def test_bad_classes_json_is_refused(tmp_path, spec, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "classes.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message):
        get_dataset("folder", tmp_path)


def test_folder_errors_name_the_file(tmp_path, synth_root):
    with pytest.raises(ValueError, match="needs DATA_DIR"):
        get_dataset("folder")
    with pytest.raises(FileNotFoundError, match="images"):
        get_dataset("folder", tmp_path)
    root = make_folder_dataset(synth_root, tmp_path / "f", labels=False, splits=False, num_train=2, num_val=0)
    (root / "images" / "site0" / "train_000.jpg").write_bytes((root / "images" / "site0" / "train_000.png").read_bytes())
    with pytest.raises(ValueError, match="two images have the name 'site0/train_000'"):
        get_dataset("folder", root).list_split(root, "train")
    (root / "images" / "site0" / "train_000.jpg").unlink()
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("nowhere/img\n")
    with pytest.raises(FileNotFoundError, match="'nowhere/img'"):
        get_dataset("folder", root).list_split(root, "val")


def test_init_refuses_the_oracle_without_labels(tmp_path, synth_root, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import init_experiment

    root = make_folder_dataset(synth_root, tmp_path / "f", labels=False, splits=False, num_train=2, num_val=0)
    args = ["--job_dir", str(tmp_path / "job"), "--dataset", "folder", "--dataset_dir", str(root)]
    assert init_experiment.main(args) == 2
    err = capsys.readouterr().err
    assert "have no label" in err and "ANNOTATOR=human" in err
    assert init_experiment.main(args + ["--annotator", "human"]) == 0
    assert "rounds are not evaluated" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the round session
def human_job(tmp_path, synth_root, clicks=5, class_names=None, **kw):
    """A folder data set without labels, ANNOTATOR=human, round 0 selected (no model needed).
    `class_names`: the first classes renamed."""
    root = make_folder_dataset(synth_root, tmp_path / "data", labels=False, splits=False,
                               num_train=3, num_val=1)
    if class_names:
        classes = json.loads((root / "classes.json").read_text())
        for c, name in zip(classes["classes"], class_names):
            c["name"] = name
        (root / "classes.json").write_text(json.dumps(classes))
    config = ExperimentConfig(job_dir=str(tmp_path / "job"), dataset="folder", dataset_dir=str(root),
                              rounds=2, clicks_per_round=clicks, superpixel_method="slic",
                              superpixel_size_px=128.0, annotator="human", seed=1, **kw).validate()
    config.save_or_check()
    exp = Experiment(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_round(exp, 0, progress=False))
    return exp


def human_job_from(exp, tmp_path, clicks=40):
    """A new human job on the data root of `exp` (after its images changed)."""
    config = ExperimentConfig(job_dir=str(tmp_path / "job2"), dataset="folder",
                              dataset_dir=str(exp.data_root), rounds=2, clicks_per_round=clicks,
                              superpixel_method="slic", superpixel_size_px=128.0, annotator="human",
                              seed=1).validate()
    config.save_or_check()
    new = Experiment(config)
    tasks.extract_base(new.descriptor, new.samples, new.base_dir, "slic", 128.0, progress=False)
    new.mark(0, "select", select_round(new, 0, progress=False))
    return new


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_session_validates_leases_and_undoes(tmp_path, synth_root):
    from deeplab.annotate.session import Refused, RoundSession

    exp = human_job(tmp_path, synth_root)
    clock = Clock()
    s = RoundSession(exp, 0, lease_secs=60, clock=clock)
    o = s.order  # the hand-out order (grouped by image)
    a, b = s.next_for("ann-a"), s.next_for("ann-b")
    assert a["query"]["index"] == o[0] and b["query"]["index"] == o[1]  # never the same region
    assert s.next_for("ann-a")["query"]["index"] == o[0]  # a reload keeps your region
    for client, index, answer, status, message in [
        ("ann-b", o[0], 1, 409, "another annotator"),
        ("ann-a", o[0], 19, 400, "not a class"),
        ("ann-a", o[0], "1", 400, "must be an integer"),
        ("ann-a", 99, 1, 404, "does not exist"),
        ("bad client!", o[0], 1, 400, "client"),
    ]:
        with pytest.raises(Refused, match=message) as e:
            s.answer(client, index, answer)
        assert e.value.status == status
    assert exp.ledger.read() == []  # nothing refused reached the ledger
    s.answer("ann-a", o[0], 2)
    with pytest.raises(Refused, match="answered already"):
        s.answer("ann-b", o[0], 3)
    clock.now += 61  # b's lease on the second region expired: a gets it
    assert s.next_for("ann-a")["query"]["index"] == o[1]
    s.answer("ann-a", o[1], 255)  # unclear
    p = s.undo("ann-a")
    assert p["undone"] == o[1] and p["answered"] == 1
    assert [r["region"] for r in exp.ledger.read()] == [s.queries[o[0]]["region"]]
    # A restarted server (a new session from the ledger) continues, undo stacks included.
    s2 = RoundSession(exp, 0, lease_secs=60, clock=clock)
    assert s2.next_for("ann-c")["query"]["index"] == o[1]
    assert s2.undo("ann-a")["undone"] == o[0]
    with pytest.raises(Refused, match="nothing to undo"):
        s2.undo("ann-a")
    with pytest.raises(Refused, match="another annotator"):  # undone: handed back to ann-a
        s2.answer("ann-c", o[0], 1)
    clock.now += 61
    while (q := s2.next_for("ann-c")["query"]) is not None:
        s2.answer("ann-c", q["index"], q["index"] % 3)
    assert s2.done.is_set()
    rows = exp.ledger.read()
    assert sorted((r["region"], r["image"], r["answer"]) for r in rows) == sorted(
        (q["region"], q["image"], i % 3) for i, q in enumerate(s2.queries))
    assert {r["annotator"] for r in rows} == {"ann-c"} and {r["source"] for r in rows} == {"web"}
    with pytest.raises(Refused, match="complete"):
        s2.undo("ann-c")


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


# ---------------------------------------------------------------------------- Label Studio
# Label Studio's own converter (label_studio_sdk.converter.brush.mask2rle, SDK 2.1.2) gives these
# bytes for these masks; recorded once, so the test needs no SDK.
LS_SQUARE = [0, 0, 0, 140, 57, 27, 254, 35, 0, 183, 255, 124, 2, 223, 253, 240, 11, 127, 248, 140, 0]
LS_CORNERS = [0, 0, 0, 48, 57, 27, 252, 127, 248, 156, 2, 63, 240]
LS_LONG_SHA256 = "b0d0f8a33689c26887995cdb650af730024de205832aa165b63ec18d4271471b"


def _slow_decode(rle, n_values):
    """The brush RLE read bit by bit from a string, as Label Studio's format describes it."""
    bits = "".join(f"{b:08b}" for b in rle)
    pos = 0

    def take(k):
        nonlocal pos
        pos += k
        return int(bits[pos - k:pos], 2)

    n, word = take(32), take(5) + 1
    sizes = [take(4) + 1 for _ in range(4)]
    assert n == n_values
    out = []
    while len(out) < n:
        repeat = take(1)
        length = take(sizes[take(2)]) + 1
        out += [take(word)] * length if repeat else [take(word) for _ in range(length)]
    return np.array(out[:n])


def test_brush_rle_matches_label_studio():
    import hashlib

    from deeplab.annotate.label_studio import mask_to_rle, rle_to_mask

    square = np.zeros((5, 7), bool)
    square[1:4, 2:5] = True
    corners = np.zeros((3, 4), bool)
    corners[0, 0] = corners[2, 3] = True
    long = np.zeros((40, 1700), bool)
    long[10:30, 5:1690] = True  # runs longer than 2**16 values
    assert mask_to_rle(square) == LS_SQUARE
    assert mask_to_rle(corners) == LS_CORNERS
    assert hashlib.sha256(bytes(mask_to_rle(long))).hexdigest() == LS_LONG_SHA256
    rng = np.random.default_rng(0)
    for m in [square, corners, long] + [rng.random((rng.integers(1, 30), rng.integers(1, 30))) < p
                                        for p in (0.1, 0.5, 0.9) for _ in range(3)]:
        rle = mask_to_rle(m)
        np.testing.assert_array_equal(rle_to_mask(rle, *m.shape), m)
        np.testing.assert_array_equal(_slow_decode(rle, m.size * 4).reshape(*m.shape, 4)[..., 3] > 0, m)
    # A stream with literal runs (as other encoders write them): 8 values, 4 literal, 4 repeated.
    bits = f"{8:032b}" + f"{7:05b}" + "".join(f"{s - 1:04b}" for s in (3, 4, 8, 16))
    bits += "0" + "00" + "011" + "".join(f"{v:08b}" for v in (9, 0, 0, 0))
    bits += "1" + "00" + "011" + f"{255:08b}"
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    np.testing.assert_array_equal(rle_to_mask(rle, 1, 2), [[False, True]])
    with pytest.raises(ValueError, match="holds 8 values, not 2x2x4"):
        rle_to_mask(rle, 2, 2)


def _complete(tasks, answers):
    """What Label Studio's JSON export holds after people answered: ids and annotations."""
    out = []
    for k, (task, answer) in enumerate(zip(tasks, answers)):
        t = dict(task, id=100 + k)
        if answer is not None:
            t["annotations"] = [{"id": k, "completed_by": {"id": 7, "email": "ann@lab.org"},
                                 "was_cancelled": False, "result": [
                                     {"type": "choices", "from_name": "class", "to_name": "image",
                                      "value": {"choices": [answer]}}]}]
        out.append(t)
    return out


def test_label_studio_round_trip(tmp_path, synth_root):
    from deeplab.annotate import label_studio as ls
    from deeplab.experiment import region_maps
    from deeplab.annotate.session import RoundSession

    exp = human_job(tmp_path, synth_root, clicks=6)
    sel = json.loads((exp.round_dir(0) / "selection.json").read_text())["regions"]
    info = ls.export_round(exp, 0, tmp_path / "ls" / "tasks.json")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert info["tasks"] == len(tasks) == 6
    config = (tmp_path / "ls" / "label_config.xml").read_text()
    assert '<BrushLabels name="region" toName="image">' in config and '<Choice value="unclear"/>' in config
    assert config.count("<Choice ") == 20
    samples = {s.name: s for s in exp.samples}
    for task, q in zip(tasks, sel):
        d = task["data"]
        assert (d["al_round"], d["al_image"], d["al_region"]) == (0, q["image"], q["region"])
        assert d["image"] == "/data/local-files/?d=" + samples[q["image"]].image_path.relative_to(exp.data_root).as_posix()
        res = task["predictions"][0]["result"][0]
        assert res["type"] == "brushlabels" and res["value"]["brushlabels"] == ["query"]
        regions = region_maps.load(exp.map_path(0, q["image"]))
        assert (res["original_height"], res["original_width"]) == regions.shape
        np.testing.assert_array_equal(ls.rle_to_mask(res["value"]["rle"], *regions.shape), regions == q["region"])
    # Four answered in Label Studio, two left: imported; the rest exported again.
    done = _complete(tasks, ["road", "unclear", "car", None, "sky", None])
    done[0]["annotations"][0]["lead_time"] = 4.25  # seconds, as Label Studio exports it
    (tmp_path / "export.json").write_text(json.dumps(done))
    assert ls.import_round(exp, 0, tmp_path / "export.json") == {
        "imported": 4, "unanswered_tasks": 2, "answered": 4, "asked": 6}
    rows = exp.ledger.read()
    assert [(r["image"], r["region"], r["answer"]) for r in rows] == [
        (sel[i]["image"], sel[i]["region"], a) for i, a in ((0, 0), (1, 255), (2, 13), (4, 10))]
    assert {r["source"] for r in rows} == {"label_studio"} and rows[0]["annotator"] == "ann_lab.org"
    assert rows[0]["elapsed_ms"] == 4250 and "elapsed_ms" not in rows[1]
    again = ls.export_round(exp, 0, tmp_path / "ls" / "rest.json")
    rest = json.loads((tmp_path / "ls" / "rest.json").read_text())
    assert again["tasks"] == 2 and [t["data"]["al_query"] for t in rest] == [3, 5]
    (tmp_path / "rest_done.json").write_text(json.dumps(_complete(rest, ["building", "person"])))
    ls.import_round(exp, 0, tmp_path / "rest_done.json")
    assert RoundSession(exp, 0).done.is_set()  # the answers stage completes from the ledger


def test_label_studio_import_refuses_bad_tasks_with_id_and_reason(tmp_path, synth_root):
    from deeplab.annotate import label_studio as ls

    exp = human_job(tmp_path, synth_root, clicks=6)
    ls.export_round(exp, 0, tmp_path / "tasks.json")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    bad = _complete(tasks, ["road", "kangaroo", "car", "sky", None, "road"])
    bad[2]["data"] = dict(bad[2]["data"], al_region=10_000)  # not queried
    bad[3]["data"] = dict(bad[3]["data"], al_round=1)  # another round
    bad[5]["data"] = dict(bad[0]["data"])  # the same region again
    bad[4]["annotations"] = bad[0]["annotations"] * 2  # two annotations
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ls.ImportRefused) as e:
        ls.import_round(exp, 0, tmp_path / "bad.json")
    msg = str(e.value)
    assert "5 tasks refused, nothing was imported" in msg
    assert "task 101: 'kangaroo' is not a class" in msg
    assert "task 102: region 10000 of" in msg and "was not queried in round 0" in msg
    assert "task 103: belongs to round 1, not round 0" in msg
    assert "task 104: has 2 annotations" in msg
    assert "task 105: region" in msg and "answered again (first in task 100)" in msg
    assert exp.ledger.read() == []
    (tmp_path / "one.json").write_text(json.dumps(bad[:1]))
    ls.import_round(exp, 0, tmp_path / "one.json")
    with pytest.raises(ls.ImportRefused, match="task 100: .* answered in the ledger already"):
        ls.import_round(exp, 0, tmp_path / "one.json")
    (tmp_path / "min.json").write_text(json.dumps({"image": "x"}))
    with pytest.raises(ls.ImportRefused, match="not JSON-MIN or CSV"):
        ls.import_round(exp, 0, tmp_path / "min.json")
    # JSON-MIN: flat tasks (the fields not under 'data')
    flat = [{"id": 7, **tasks[1]["data"], "class": "road"}]
    (tmp_path / "min2.json").write_text(json.dumps(flat))
    with pytest.raises(ls.ImportRefused, match="task 7: .*JSON-MIN export; export the project as JSON"):
        ls.import_round(exp, 0, tmp_path / "min2.json")


@pytest.mark.parametrize("field,value", [("al_region", 16.0), ("al_region", [1]), ("al_region", {"a": 1}),
                                         ("al_region", "3"), ("al_query", 1.5), ("al_round", True),
                                         ("al_image", ["x"])])
def test_label_studio_import_refuses_ids_that_are_not_integers(tmp_path, synth_root, field, value):
    from deeplab.annotate import label_studio as ls

    exp = human_job(tmp_path, synth_root, clicks=2)
    ls.export_round(exp, 0, tmp_path / "tasks.json")
    tasks = _complete(json.loads((tmp_path / "tasks.json").read_text()), ["road", "car"])
    tasks[1]["data"] = dict(tasks[1]["data"], **{field: value})
    (tmp_path / "bad.json").write_text(json.dumps(tasks))
    with pytest.raises(ls.ImportRefused, match=rf"(?s)1 tasks refused.*task 101: {field} is .*integers"):
        ls.import_round(exp, 0, tmp_path / "bad.json")
    assert exp.ledger.read() == []


def test_label_studio_urls_are_percent_encoded(tmp_path, synth_root):
    import urllib.parse

    from deeplab.annotate import label_studio as ls

    exp = human_job(tmp_path, synth_root, clicks=40)
    odd = "a&b #1+c%20 ?d"
    first = exp.samples[0]
    renamed = first.image_path.with_name(odd + first.image_path.suffix)
    names = {s.name for s in exp.samples}
    # a copy of the job whose first image has an awkward name (a fresh job: its own selection)
    import shutil

    shutil.rmtree(exp.job_dir)
    first.image_path.rename(renamed)
    exp = human_job_from(exp, tmp_path)
    ls.export_round(exp, 0, tmp_path / "tasks.json")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    mine = [t for t in tasks if Path(t["data"]["al_image"]).name == odd]
    assert mine, "the renamed image was not queried"
    for t in mine:
        url = t["data"]["image"]
        assert "&" not in url and "#" not in url and "+" not in url and " " not in url
        value = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["d"][0]
        assert (exp.data_root / value).resolve() == renamed.resolve()
    assert {s.name for s in exp.samples} != names


def test_oracle_answers_stage_resumes_after_a_partial_append(tmp_path, synth_root):
    """The answers stage killed after part of its answers reached the ledger asks only the
    rest when run again: the ledger ends as if it had never stopped."""
    from deeplab.experiment.stages import annotate_round

    root = make_folder_dataset(synth_root, tmp_path / "data", labels=True, splits=True, num_train=3, num_val=1)
    config = ExperimentConfig(job_dir=str(tmp_path / "job"), dataset="folder", dataset_dir=str(root),
                              clicks_per_round=9, superpixel_method="slic", superpixel_size_px=128.0,
                              seed=2).validate()
    config.save_or_check()
    exp = Experiment(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_round(exp, 0, progress=False))
    summary = annotate_round(exp, 0, progress=False)
    assert summary["answers"] == 9
    whole = exp.ledger.path.read_text()
    lines = whole.splitlines(keepends=True)
    exp.ledger.path.write_text("".join(lines[:4]) + lines[4][:10])  # killed while appending
    assert annotate_round(exp, 0, progress=False) == summary
    rows = [json.loads(ln) for ln in exp.ledger.path.read_text().splitlines()]
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, map(json.loads, lines)))


def test_zoom_view_hatches_what_earlier_rounds_labelled():
    """The page asks for the class of the region's part a click will label: pixels an earlier
    answer labels are hatched in the zoom view (inside the region only), as the oracle answers."""
    from deeplab.viz.views import render_view

    image = np.full((40, 60, 3), 100, np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[10:30, 10:40] = True
    labelled = np.zeros((40, 60), bool)
    labelled[:, :25] = True  # the left part of the region and outside it
    plain = render_view(image, mask, "zoom")
    hatched = render_view(image, mask, "zoom", labelled)
    changed = (hatched != plain).any(-1)
    assert changed.any() and (hatched[changed] > plain[changed]).all()  # brighter stripes
    assert (hatched[changed] >= 200).all()  # 0.35 * 100 + 0.65 * 255
    ys, xs = np.nonzero(changed)
    # plain: the region is undimmed grey 100, outside dimmed; stripes only on undimmed pixels
    assert (plain[ys, xs] == 100).all()
    assert xs.max() < changed.shape[1] / 2  # only on the labelled (left) side of the region
    np.testing.assert_array_equal(render_view(image, mask, "whole", labelled),
                                  render_view(image, mask, "whole"))


def test_expected_errors_of_the_scripts_are_one_line(tmp_path, synth_root):
    """A port in use, a corrupt image and a label out of range: exit status 2, one line naming
    the port or file and the fix, no traceback (AL_DEBUG=1 shows it)."""
    exp = human_job(tmp_path, synth_root)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        out = subprocess.run([sys.executable, "scripts/annotate_web.py", "--job_dir", str(exp.job_dir),
                              "--round", "0", "--port", str(port)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    finally:
        busy.close()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"cannot serve on 127.0.0.1:{port}" in last and "ANNOTATE_PORT" in last
    # a corrupt image in a folder data set
    root = make_folder_dataset(synth_root, tmp_path / "bad", labels=True, splits=False,
                               num_train=2, num_val=0, nested=False, jpeg_every=0)
    image = sorted((root / "images").glob("*.png"))[0]
    image.write_bytes(image.read_bytes()[:200])
    cmd = [sys.executable, "scripts/extract_superpixels.py", "--dataset", "folder",
           "--dataset_dir", str(root), "--method", "slic", "--cache_dir", str(tmp_path / "cache"),
           "--num_workers", "1"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert str(image) in last and "cannot be decoded" in last and "replace the file" in last
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "AL_DEBUG": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr
    # a label value out of range
    from PIL import Image

    image.unlink()
    label = sorted((root / "labels").glob("*.png"))[-1]
    bad = np.asarray(Image.open(label)).copy()
    bad[0, 0] = 77
    Image.fromarray(bad).save(label)
    out = subprocess.run([sys.executable, "scripts/build_tfrecords.py", "--dataset", "folder",
                          "--dataset_dir", str(root), "--output_dir", str(tmp_path / "rec"),
                          "--split", "train"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert str(label) in last and "77" in last


def test_docs_and_code_agree_on_the_checkpoint_cadence():
    from deeplab.experiment.stages import checkpoint_every

    page = (ROOT / "docs" / "cityscapes.md").read_text()
    assert "every `max(50, TRAIN_STEPS // 5)` steps" in page
    assert [checkpoint_every(n) for n in (100, 250, 600, 3000)] == [50, 50, 120, 600]


def test_handout_order_groups_each_images_queries():
    from deeplab.annotate.session import handout_order

    q = [{"image": im, "score": sc} for im, sc in
         [("b", 0.9), ("a", 0.8), ("b", 0.7), ("c", 0.8), ("a", 0.1), ("c", 0.75), ("b", 0.2)]]
    # b (best 0.9) first, then a and c tie at 0.8: a was asked first
    assert handout_order(q) == [0, 2, 6, 1, 4, 3, 5]
    assert handout_order([]) == []


def test_answers_keep_their_time_and_people_stay_on_an_image(tmp_path, synth_root):
    from deeplab.annotate.session import Refused, RoundSession

    exp = human_job(tmp_path, synth_root, clicks=8)
    s = RoundSession(exp, 0, lease_secs=60, clock=Clock())
    images = [s.queries[i]["image"] for i in s.order]
    # each image's queries are contiguous: as many runs as images
    assert len(set(images)) < len(images)
    assert len(set(images)) == len([im for k, im in enumerate(images) if k == 0 or images[k - 1] != im])
    first = s.next_for("p1")["query"]
    second = s.next_for("p2")["query"]
    assert first["index"] == s.order[0] and second["index"] == s.order[1]  # leases keep them apart
    assert first["in_image"] == 1 and first["of_image"] == images.count(images[0])
    for bad in (-1, "12", True, 10**12):
        with pytest.raises(Refused, match="elapsed_ms"):
            s.answer("p1", first["index"], 0, elapsed_ms=bad)
    before = time.time()
    s.answer("p1", first["index"], 0, elapsed_ms=2345.4)
    s.answer("p2", second["index"], 1)  # a client that does not measure: no time, never 0
    rows = exp.ledger.read()
    assert rows[0]["elapsed_ms"] == 2345 and before - 1 <= rows[0]["received_at"] <= time.time() + 1
    assert "elapsed_ms" not in rows[1] and rows[1]["received_at"] >= rows[0]["received_at"]
    # the simulated annotator's rows (an old ledger's too) read as before, without the fields
    assert all("elapsed_ms" not in r for r in ledger.Ledger(tmp_path / "none.jsonl").read())


def test_measured_cost_model_from_timed_answers_prices_the_next_selection(tmp_path, synth_root, capsys):
    """Answers timed on the page -> scripts/fit_cost_model.py -> COST_MODEL=measured: the
    selection charges each region the fit's seconds in click-equivalents."""
    import importlib.util

    from deeplab.active import acquisition
    from deeplab.experiment.stages import timed_answer_features
    from deeplab.annotate.session import RoundSession

    exp = human_job(tmp_path, synth_root, clicks=14)
    s = RoundSession(exp, 0)
    while (q := s.next_for("me")["query"]) is not None:  # a person slower on larger regions
        s.answer("me", q["index"], 0, elapsed_ms=800 + 6 * q["size"] + 37 * (q["index"] % 3))
    feats, seconds = timed_answer_features(exp)
    assert feats.shape == (14, 4) and np.allclose(sorted(np.exp(feats[:, 0])), sorted(q["size"] for q in s.queries))
    spec = importlib.util.spec_from_file_location("fit", ROOT / "scripts" / "fit_cost_model.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    assert fit.main(["--job_dir", str(exp.job_dir)]) == 0
    out = capsys.readouterr().out
    assert "14 timed answers" in out and "fit error (RMS)" in out
    saved = exp.job_dir / "cost_model.json"
    model = acquisition.MeasuredCost.from_json(json.loads(saved.read_text()))
    assert model.rmse < 0.2 and model.unit_seconds == pytest.approx(float(np.median(seconds)))
    # a new job priced by the fit
    config = ExperimentConfig(job_dir=str(tmp_path / "priced"), dataset="folder",
                              dataset_dir=str(exp.data_root), rounds=2, clicks_per_round=40,
                              superpixel_method="slic", superpixel_size_px=128.0, annotator="human",
                              seed=4, cost_model="measured", click_cost_model=str(saved)).validate()
    config.save_or_check()
    priced = Experiment(config)
    info = select_round(priced, 0, progress=False)
    chosen = json.loads((priced.round_dir(0) / "selection.json").read_text())["regions"]
    assert info["spent"] == sum(q["cost"] for q in chosen) <= 40 and info["cost_model"]["file"] == str(saved)
    from deeplab.active import regions as R

    for q in chosen[:5]:
        m = priced.load_map(0, q["image"])
        n = R.num_slots(m)
        x = acquisition.region_features([q["size"]], R.boundary_lengths(m, n)[[q["region"]]], [1], [0.0])
        assert q["cost"] == model.clicks(x)[0]
    assert len(chosen) < 40  # larger regions cost more than one click-equivalent
    with pytest.raises(FileNotFoundError, match="CLICK_COST_MODEL"):
        ExperimentConfig(job_dir=str(tmp_path / "x"), cost_model="measured").validate()


def test_review_pass_on_the_page_goes_to_another_session(tmp_path, synth_root):
    from deeplab.annotate.session import Refused, RoundSession

    exp = human_job(tmp_path, synth_root, clicks=8, review_share=0.5)
    s = RoundSession(exp, 0, lease_secs=60, clock=Clock())
    while (q := s.next_for("one", session="s1")["query"]) is not None:
        s.answer("one", q["index"], 1, session="s1", elapsed_ms=900)
    assert not s.done.is_set() and s.progress()["reviews_pending"] == 4
    p = s.next_for("one", session="s1")  # never your own answers
    assert p["query"] is None
    with pytest.raises(Refused, match="another annotator reviews it"):
        s.answer("one", s.picked[0], 1, session="s1")
    with pytest.raises(Refused, match="being reviewed"):
        s.undo("one", session="s1")
    given = {}
    while (q := s.next_for("two", session="s2")["query"]) is not None:
        assert q["review"] == 1 and q["index"] in s.picked
        a = 1 if len(given) < 2 else 3  # two agree, two disagree
        given[q["index"]] = a
        s.answer("two", q["index"], a, session="s2", elapsed_ms=700)
    # two sessions only: the disagreements are labelled unclear, no third answer is asked
    assert s.done.is_set() and len(given) == 4
    reviews = exp.ledger.reviews(0)
    assert len(reviews) == 4 and all(rv[1]["cost"] == 0 and rv[1]["session"] == "s2" for rv in reviews.values())
    from deeplab.experiment.stages import review_summary

    rv = review_summary(exp, 0, s.queries)
    assert rv["reviewed"] == 4 and rv["agreement"] == 0.5 and rv["unclear_after_review"] == 2
    assert rv["third_answers"] == 0
    resolved = [r for rows in exp.answers_by_image().values() for r in rows]
    assert sorted(r["answer"] for r in resolved) == [1] * 6 + [255] * 2
    assert len(exp.ledger.read()) == 8  # reviews are not answers in force


def test_a_third_session_settles_a_disagreement(tmp_path, synth_root):
    from deeplab.annotate.session import RoundSession

    exp = human_job(tmp_path, synth_root, clicks=4, review_share=1.0)
    s = RoundSession(exp, 0, lease_secs=60, clock=Clock())
    while (q := s.next_for("one", session="s1")["query"]) is not None:
        s.answer("one", q["index"], 2, session="s1")
    a = s.next_for("three", session="s3")["query"]  # a third person opens the page
    b = s.next_for("two", session="s2")["query"]
    assert a["review"] == b["review"] == 1 and a["index"] != b["index"]
    s.answer("two", b["index"], 5, session="s2")  # disagrees with the first answer
    s.answer("three", a["index"], 2, session="s3")  # agrees
    third = s.next_for("three", session="s3")["query"]
    assert third["index"] == b["index"] and third["review"] == 2  # the only one who may settle it
    assert s.next_for("two", session="s2")["query"]["index"] not in (a["index"], b["index"])
    s.answer("three", b["index"], 5, session="s3")
    while (r := s.next_for("two", session="s2")["query"]) is not None:
        s.answer("two", r["index"], 2, session="s2")
    assert s.done.is_set()
    resolved = {(r["image"], r["region"]): r["answer"] for rows in exp.answers_by_image().values() for r in rows}
    assert resolved[(b["image"], b["region"])] == 5  # two of three
    assert sorted(resolved.values()) == [2, 2, 2, 5]
