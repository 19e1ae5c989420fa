"""Real annotators without a browser: the durable ledger, folder data sets, the round session
(validation, leases, undo, restart) and the page's HTTP safety rules."""

import http.client
import json
import os
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
from deeplab.active import annotation, jobs
from deeplab.active.experiment import Experiment, ExperimentConfig
from deeplab.active.rounds import select_round
from deeplab.datasets import get_dataset

ROOT = Path(__file__).parents[1]


def _row(i, t=0, image="a", answer=1):
    return {"round": t, "image": image, "region": i, "answer": answer, "size": 10, "score": 0.5,
            "cost": 1}


# ---------------------------------------------------------------------------- ledger
def test_ledger_appends_in_place_and_folds_undo(tmp_path):
    led = annotation.Ledger(tmp_path / "ledger.jsonl")
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
    with pytest.raises(annotation.LedgerError, match="undo of region 99 .* follows no answer"):
        led.read()


def test_torn_last_line_is_reported_dropped_and_cut(tmp_path, capsys):
    led = annotation.Ledger(tmp_path / "ledger.jsonl")
    led.append([_row(0), _row(1)])
    whole = led.path.read_bytes()
    with open(led.path, "ab") as f:
        f.write(json.dumps(_row(2)).encode()[:25])  # a crash in the middle of a write
    assert [r["region"] for r in led.read()] == [0, 1]
    err = capsys.readouterr().err
    assert "last line is torn" in err and "dropped" in err
    led.append([_row(3)])
    assert led.path.read_bytes() == whole + (json.dumps(_row(3)) + "\n").encode()
    assert (tmp_path / "ledger.jsonl.torn").read_bytes().startswith(json.dumps(_row(2)).encode()[:25])
    # A complete line that does not parse is never dropped.
    with open(led.path, "ab") as f:
        f.write(b'{"round": 0, "ima\n')
    with pytest.raises(annotation.LedgerError, match="line 4 is corrupt"):
        led.read()


def test_killed_writer_loses_at_most_the_line_in_flight(tmp_path):
    """A process appending answers one by one is killed with SIGKILL: every line that made it
    is whole, and every acknowledged answer (printed after append returned) is there."""
    path = tmp_path / "ledger.jsonl"
    code = textwrap.dedent(f"""
        import sys
        from deeplab.active.annotation import Ledger
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
    rows = annotation.Ledger(path).read()
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
    assert train[2].image_path.suffix == ".jpg" and ds.labelled(train)
    image, label = ds.load(train[2])
    assert image.shape[:2] == label.shape and image.dtype == np.uint8
    assert ds.has_split(root, "val") and len(ds.list_split(root, "val")) == 2
    # Without split lists: every image in the train pool, no val split.
    bare = make_folder_dataset(synth_root, tmp_path / "g", labels=False, splits=False, num_train=3, num_val=2)
    ds = get_dataset("folder", bare)
    assert len(ds.list_split(bare, "train")) == 5 and not ds.has_split(bare, "val")
    assert not ds.labelled(ds.list_split(bare, "train"))
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
def human_job(tmp_path, synth_root, clicks=5, **kw):
    """A folder data set without labels, ANNOTATOR=human, round 0 selected (no model needed)."""
    root = make_folder_dataset(synth_root, tmp_path / "data", labels=False, splits=False,
                               num_train=3, num_val=1)
    config = ExperimentConfig(job_dir=str(tmp_path / "job"), dataset="folder", dataset_dir=str(root),
                              rounds=2, clicks_per_round=clicks, superpixel_method="slic",
                              superpixel_size_px=128.0, annotator="human", seed=1, **kw).validate()
    config.save_or_check()
    exp = Experiment(config)
    jobs.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_round(exp, 0, progress=False))
    return exp


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_session_validates_leases_and_undoes(tmp_path, synth_root):
    from deeplab.active.web import Refused, RoundSession

    exp = human_job(tmp_path, synth_root)
    clock = Clock()
    s = RoundSession(exp, 0, lease_secs=60, clock=clock)
    a, b = s.next_for("ann-a"), s.next_for("ann-b")
    assert a["query"]["index"] == 0 and b["query"]["index"] == 1  # never the same region
    assert s.next_for("ann-a")["query"]["index"] == 0  # a reload keeps your region
    for client, index, answer, status, message in [
        ("ann-b", 0, 1, 409, "another annotator"),
        ("ann-a", 0, 19, 400, "not a class"),
        ("ann-a", 0, "1", 400, "must be an integer"),
        ("ann-a", 99, 1, 404, "does not exist"),
        ("bad client!", 0, 1, 400, "client"),
    ]:
        with pytest.raises(Refused, match=message) as e:
            s.answer(client, index, answer)
        assert e.value.status == status
    assert exp.ledger.read() == []  # nothing refused reached the ledger
    s.answer("ann-a", 0, 2)
    with pytest.raises(Refused, match="answered already"):
        s.answer("ann-b", 0, 3)
    clock.now += 61  # b's lease on region 1 expired: a gets it
    assert s.next_for("ann-a")["query"]["index"] == 1
    s.answer("ann-a", 1, 255)  # unclear
    p = s.undo("ann-a")
    assert p["undone"] == 1 and p["answered"] == 1
    assert [r["region"] for r in exp.ledger.read()] == [s.queries[0]["region"]]
    # A restarted server (a new session from the ledger) continues, undo stacks included.
    s2 = RoundSession(exp, 0, lease_secs=60, clock=clock)
    assert s2.next_for("ann-c")["query"]["index"] == 1
    assert s2.undo("ann-a")["undone"] == 0
    with pytest.raises(Refused, match="nothing to undo"):
        s2.undo("ann-a")
    with pytest.raises(Refused, match="another annotator"):  # undone: handed back to ann-a
        s2.answer("ann-c", 0, 1)
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
def _serve(exp, host, token=None):
    from deeplab.active.web import RoundSession, make_server

    server = make_server(RoundSession(exp, 0), host, 0, token)
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
    from deeplab.active.web import make_server, RoundSession

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


def test_one_process_serves_a_round(tmp_path, synth_root):
    from deeplab.active import web

    exp = human_job(tmp_path, synth_root)
    code = (f"import time\nfrom deeplab.active import web\nfrom deeplab.active.experiment import Experiment\n"
            f"exp = Experiment.open({str(exp.job_dir)!r})\n"
            f"with web.round_lock(exp, 0):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match="being served already"):
            web.serve_round(exp, 0, port=0)
    finally:
        proc.kill()
        proc.wait()
    with web.round_lock(exp, 0):  # released with the process that held it
        pass
