"""The round session without a browser: validation, leases, undo, restart, hand-out order,
answer times, the measured cost model and the review pass; the scripts' one-line errors."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import human_job, load_script, make_folder_dataset

from deeplab.experiment import ledger
from deeplab.experiment.settings import ExperimentConfig
from deeplab.experiment.job import Job
from deeplab.experiment.stages import select_stage

ROOT = Path(__file__).parents[1]


# ---------------------------------------------------------------------------- the round session
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


def test_zoom_view_dots_the_labels_an_answer_replaces():
    """The last round's propagated and confident pixels are dotted inside the region in their
    colours, where no earlier answer labels them; answered pixels keep their hatching."""
    from deeplab.annotate.session import implied_dots
    from deeplab.active import labels as L
    from deeplab.viz.views import render_view

    image = np.full((40, 60, 3), 100, np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[10:30, 10:40] = True
    sources = np.zeros((40, 60), np.uint8)
    sources[:, 20:30] = L.SOURCE_PROPAGATED  # a band across the region and beyond it
    sources[:, 30:] = L.SOURCE_SELF_TRAINED  # the region's right part and beyond it
    sources[:, :5] = L.SOURCE_ANSWER
    labelled = np.zeros((40, 60), bool)
    labelled[:, 25:35] = True  # an earlier answer over part of both
    plain = render_view(image, mask, "zoom", labelled)
    dotted = render_view(image, mask, "zoom", labelled, implied_dots(sources))
    changed = (dotted != plain).any(-1)
    white = (dotted == 255).all(-1) & changed
    black = (dotted == 0).all(-1) & changed
    assert white.any() and black.any() and (changed == white | black).all()
    # the context (2.5 x the region's 30 px) covers the whole image, enlarged 480 // 60 = 8 x
    assert dotted.shape == (320, 480, 3)
    ys, xs = np.nonzero(changed)
    rows, cols = ys // 8, xs // 8
    assert ((rows >= 10) & (rows < 30)).all()  # inside the region only
    assert ((cols[white[ys, xs]] >= 20) & (cols[white[ys, xs]] < 25)).all()  # not under the answer
    assert ((cols[black[ys, xs]] >= 35) & (cols[black[ys, xs]] < 40)).all()
    assert implied_dots(None) == []
    np.testing.assert_array_equal(render_view(image, mask, "zoom", labelled, implied_dots(np.zeros_like(sources))), plain)
    np.testing.assert_array_equal(render_view(image, mask, "whole", labelled, implied_dots(sources)),
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
    from deeplab.active import acquisition
    from deeplab.annotate.session import RoundSession
    from deeplab.experiment.answers import timed_answer_features

    exp = human_job(tmp_path, synth_root, clicks=14)
    s = RoundSession(exp, 0)
    while (q := s.next_for("me")["query"]) is not None:  # a person slower on larger regions
        s.answer("me", q["index"], 0, elapsed_ms=800 + 6 * q["size"] + 37 * (q["index"] % 3))
    feats, seconds = timed_answer_features(exp)
    assert feats.shape == (14, 4) and np.allclose(sorted(np.exp(feats[:, 0])), sorted(q["size"] for q in s.queries))
    fit = load_script("fit_cost_model")
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
                              seed=4, cost_model="measured", click_cost_model=str(saved),
                              num_workers=1).validate()
    config.save_or_check()
    priced = Job(config)
    info = select_stage(priced, 0, progress=False)
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
    from deeplab.experiment.answers import review_summary

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


def test_a_review_never_goes_to_the_first_annotator_whatever_the_session(tmp_path, synth_root):
    """The same person (annotator id) in a new browser session, after quitting the browser,
    reviews none of their own answers; a client without a browser session reviews nothing."""
    from deeplab.annotate.session import Refused, RoundSession

    exp = human_job(tmp_path, synth_root, clicks=4, review_share=0.5)
    s = RoundSession(exp, 0, lease_secs=60, clock=Clock())
    while (q := s.next_for("dora", session="s1")["query"]) is not None:
        s.answer("dora", q["index"], 1, session="s1")
    assert s.next_for("dora", session="s2")["query"] is None  # the browser reopened
    with pytest.raises(Refused, match="answered this region already"):
        s.answer("dora", s.picked[0], 1, session="s2")
    assert s.next_for("api-client")["query"] is None  # no cookie: no reviewer
    with pytest.raises(Refused, match="browser session") as e:
        s.answer("api-client", s.picked[0], 1)
    assert e.value.status == 403
    q = s.next_for("eve", session="s3")["query"]
    assert q["review"] == 1
    s.answer("eve", q["index"], 1, session="s3")
    assert len(exp.ledger.reviews(0)) == 1


def test_counts_and_review_time_after_a_review_pass(tmp_path, synth_root):
    """After a review turned two answers unclear, the manifest's labelled answers say so; review
    time is reported beside answer time; kappa of answers that are all one class is n/a."""
    from deeplab.annotate.session import RoundSession
    from deeplab.experiment import results
    from deeplab.experiment.answers import answers_summary, review_summary

    exp = human_job(tmp_path, synth_root, clicks=8, review_share=0.5)
    s = RoundSession(exp, 0, lease_secs=60, clock=Clock())
    while (q := s.next_for("one", session="s1")["query"]) is not None:
        s.answer("one", q["index"], 1, session="s1", elapsed_ms=900)
    n = 0
    while (q := s.next_for("two", session="s2")["query"]) is not None:
        s.answer("two", q["index"], 1 if n < 2 else 3, session="s2", elapsed_ms=700)
        n += 1
    summary = answers_summary(exp, 0, s.queries)
    assert summary["answers"] == 8 and summary["labelled_answers"] == 6
    rv = review_summary(exp, 0, s.queries)
    assert rv["review_seconds"] == pytest.approx(2.8) and rv["timed_reviews"] == 4
    cells = results.review_cells(rv, exp.descriptor.class_names)
    assert cells["review_seconds"] == pytest.approx(2.8)
    # every first and review answer one class: kappa is undefined, reported n/a
    from deeplab.active import review

    assert review.agreement([1, 1, 1], [1, 1, 1], 3)["kappa"] is None
    same = {**rv, "kappa": None, "agreement": 1.0}
    assert results.review_cells(same, exp.descriptor.class_names)["review_kappa"] == results.NOT_AVAILABLE
