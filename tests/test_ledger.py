"""The durable ledger of answers: appends in place, folds undo, survives a killed writer; the
answers stage resumes after a partial append."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import ledger_row, make_folder_dataset

from deeplab.experiment import ledger, tasks
from deeplab.experiment.settings import ExperimentConfig
from deeplab.experiment.job import Job
from deeplab.experiment.stages import select_stage

ROOT = Path(__file__).parents[1]


# ---------------------------------------------------------------------------- ledger
def test_ledger_appends_in_place_and_folds_undo(tmp_path):
    led = ledger.Ledger(tmp_path / "ledger.jsonl")
    led.append([ledger_row(0)])
    inode = led.path.stat().st_ino
    before = led.path.read_bytes()
    for i in range(1, 50):
        led.append([ledger_row(i)])
    assert led.path.stat().st_ino == inode  # appended, never rewritten through a new file
    assert led.path.read_bytes().startswith(before)
    led.append([{"round": 0, "image": "a", "region": 7, "undo": True, "annotator": "p"}])
    led.append([ledger_row(7, answer=3)])
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
    led.append([ledger_row(0), ledger_row(1), ledger_row(2)])
    lines = led.path.read_text().splitlines(keepends=True)
    led.path.write_text("".join(lines + lines[1:2]))
    with pytest.raises(ledger.LedgerError, match=r"line 4 answers region 1 of 'a' \(round 0\) again, "
                                                     r"after line 2.*duplicate; delete line 4"):
        led.read()
    led.path.write_text("".join(lines) + json.dumps(ledger_row(1, answer=5)) + "\n")
    with pytest.raises(ledger.LedgerError, match="keep the line with the right answer"):
        led.read()


def test_torn_last_line_is_reported_dropped_and_cut(tmp_path, capsys):
    led = ledger.Ledger(tmp_path / "ledger.jsonl")
    led.append([ledger_row(0), ledger_row(1)])
    whole = led.path.read_bytes()
    with open(led.path, "ab") as f:
        f.write(json.dumps(ledger_row(2)).encode()[:25])  # a crash in the middle of a write
    assert [r["region"] for r in led.read()] == [0, 1]
    err = capsys.readouterr().err
    assert "last line is torn" in err and "dropped" in err and "asks that region again" in err
    led.append([ledger_row(3)])
    assert led.path.read_bytes() == whole + (json.dumps(ledger_row(3)) + "\n").encode()
    assert (tmp_path / "ledger.jsonl.torn").read_bytes().startswith(json.dumps(ledger_row(2)).encode()[:25])
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


def test_oracle_answers_stage_resumes_after_a_partial_append(tmp_path, synth_root):
    """The answers stage killed after part of its answers reached the ledger asks only the
    rest when run again: the ledger ends as if it had never stopped."""
    from deeplab.experiment.simulated import oracle_round

    root = make_folder_dataset(synth_root, tmp_path / "data", labels=True, splits=True, num_train=3, num_val=1)
    config = ExperimentConfig(job_dir=str(tmp_path / "job"), dataset="folder", dataset_dir=str(root),
                              clicks_per_round=9, superpixel_method="slic", superpixel_size_px=128.0,
                              seed=2, num_workers=1).validate()
    config.save_or_check()
    exp = Job(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 128.0, progress=False)
    exp.mark(0, "select", select_stage(exp, 0, progress=False))
    summary = oracle_round(exp, 0, progress=False)
    assert summary["answers"] == 9
    whole = exp.ledger.path.read_text()
    lines = whole.splitlines(keepends=True)
    exp.ledger.path.write_text("".join(lines[:4]) + lines[4][:10])  # killed while appending
    assert oracle_round(exp, 0, progress=False) == summary
    rows = [json.loads(ln) for ln in exp.ledger.path.read_text().splitlines()]
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, map(json.loads, lines)))
