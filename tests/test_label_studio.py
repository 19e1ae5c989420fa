"""Label Studio exchange by files: brush RLE equal to Label Studio's converter, export and
import round trip, bad imports refused whole."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import human_job, human_job_from

ROOT = Path(__file__).parents[1]


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
    from deeplab.annotate.session import RoundSession
    from deeplab.experiment import region_maps

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
    # a lead time that is not a number of seconds: the task refused, not imported untimed
    for lead in (-5.0, "12", float("nan"), True, 1e9):
        timed = _complete(tasks[1:2], ["road"])
        timed[0]["annotations"][0]["lead_time"] = lead
        (tmp_path / "lead.json").write_text(json.dumps(timed))
        with pytest.raises(ls.ImportRefused, match=r"task 100: its lead_time .* is not a number of seconds"):
            ls.import_round(exp, 0, tmp_path / "lead.json")
    assert len(exp.ledger.read()) == 1
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


# ---------------------------------------------------------------------------- in the loop
def _ann(aid, choice, who=1, lead=1.0, cancelled=False):
    result = [] if choice is None else [{"type": "choices", "from_name": "class", "to_name": "image",
                                         "value": {"choices": [choice]}}]
    return {"id": aid, "completed_by": who, "lead_time": lead, "was_cancelled": cancelled, "result": result}


def test_label_studio_annotations_are_checked_as_the_file_import_checks_them(tmp_path, synth_root):
    """ANNOTATOR=label_studio's import of polled annotations (no server needed): each annotation
    once, a skip is unclear, a bad one is refused with the task, annotation and reason, a review
    is another person's annotation of a picked region."""
    from deeplab.annotate import ls_loop
    from deeplab.experiment.answers import read_selection

    exp = human_job(tmp_path, synth_root, clicks=4, annotator="label_studio", review_share=0.5)
    sel = read_selection(exp, 0)
    names = exp.descriptor.class_names
    state = ls_loop.RoundState(exp, 0, sel)
    assert len(state.picked) == 2 and not state.complete()
    refused = {}
    p = sorted(state.picked)[0]
    a, b, c = [i for i in range(len(sel)) if i != p]
    (row,) = state.rows(a, {"id": 10, "annotations": [_ann(5, names[2], lead=1.25)]}, refused)
    assert (row["answer"], row["ls_annotation"], row["elapsed_ms"], row["source"]) == (2, 5, 1250, "label_studio")
    exp.ledger.append([row])
    assert state.rows(a, {"id": 10, "annotations": [_ann(5, names[2])]}, refused) == []  # never twice
    assert ls_loop.RoundState(exp, 0, sel).rows(a, {"id": 10, "annotations": [_ann(5, names[2])]}, refused) == []
    (skip,) = state.rows(b, {"id": 11, "annotations": [_ann(6, None, cancelled=True)]}, refused)
    assert skip["answer"] == exp.descriptor.ignore_label
    for task, reason in [(_ann(7, "nope"), "'nope' is not a class"),
                         (_ann(8, names[0], lead=-5), "lead_time '-5'"),
                         ({**_ann(9, names[0]), "result": _ann(9, names[0])["result"] * 2}, "2 'class' choices")]:
        assert state.rows(c, {"id": 12, "annotations": [task]}, refused) == []
        assert reason in refused[task["id"]] and "task 12" in refused[task["id"]]
    first = state.rows(p, {"id": 20, "annotations": [_ann(30, names[1], who=1)]}, refused)
    again = state.rows(p, {"id": 20, "annotations": [_ann(30, names[1], who=1), _ann(31, names[1], who=1)]}, refused)
    assert len(first) == 1 and again == [] and "same person" in refused[31]
    (rv,) = state.rows(p, {"id": 20, "annotations": [_ann(30, names[1], who=1), _ann(32, names[0], who=2)]}, refused)
    assert (rv["review"], rv["cost"], rv["answer"]) == (1, 0, 0)
    assert state.wanted(p) == 2  # a disagreement with two people: unclear, no third answer asked


def test_label_studio_settings_errors_name_the_fix(tmp_path, monkeypatch):
    from deeplab.annotate import ls_loop

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    with pytest.raises(ls_loop.LabelStudioError, match="set LABEL_STUDIO_API_KEY or LABEL_STUDIO_KEY_FILE"):
        ls_loop.api_key("")
    with pytest.raises(ls_loop.LabelStudioError, match=f"cannot read the key file {tmp_path}/none"):
        ls_loop.api_key(str(tmp_path / "none"))
    (tmp_path / "key").write_text("  abc123\n")
    assert ls_loop.api_key(str(tmp_path / "key")) == "abc123"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "from-env")
    assert ls_loop.api_key(str(tmp_path / "key")) == "from-env"
    with pytest.raises(ls_loop.LabelStudioError, match="scripts/label_studio.py install"):
        ls_loop.python_of(str(tmp_path / "no-python"))
