"""ANNOTATOR=label_studio against a real Label Studio: a server on the loopback from Label
Studio's own environment (scripts/label_studio.py install; made once and cached), SQLite, a user
and key made by its own start command; the tasks answered through its REST API as a person's
browser would answer them (with lead times, a skip, a second annotator)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import human_job

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.e2e


class Server:
    """A Label Studio server of the tests (ls_server.start) and its REST API."""

    def __init__(self, data_dir: Path):
        from deeplab.annotate import ls_server

        self.python = ls_server.install()
        self.data_dir = data_dir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.start_secs = self.start()
        self.key = ls_server.key_file(data_dir).read_text().strip()
        self.second = self.api("POST", "/api/users/", {"username": "second", "email": "second@example.com",
                                                       "password": "second-person-1"})["id"]

    def start(self) -> float:
        from deeplab.annotate import ls_server

        self.proc = ls_server.start(self.data_dir, self.port, log=self.data_dir / "ls.log")
        return ls_server.wait_up(self.url, self.proc)

    def stop(self) -> None:
        from deeplab.annotate import ls_server

        ls_server.stop(self.proc)

    def settings(self) -> dict:
        from deeplab.annotate import ls_server

        return {"annotator": "label_studio", "label_studio_url": self.url,
                "label_studio_key_file": str(ls_server.key_file(self.data_dir)),
                "label_studio_python": str(self.python), "label_studio_poll_secs": 0.3}

    def api(self, method: str, path: str, body=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {self.key}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
        return json.loads(text) if text else None

    def answer(self, task: int, choice: str | None, lead: float, by: int | None = None) -> dict:
        """An annotation as the labelling page submits it (choice None: the skip button)."""
        body = {"lead_time": lead, "result": [], "was_cancelled": choice is None}
        if choice is not None:
            body["result"] = [{"id": "a1", "type": "choices", "from_name": "class", "to_name": "image",
                               "value": {"choices": [choice]}}]
        if by is not None:
            body["completed_by"] = by
        return self.api("POST", f"/api/tasks/{task}/annotations/", body)

    def round_tasks(self, project: int, t: int) -> list[dict]:
        out, seen, page = [], 0, 1
        while True:
            reply = self.api("GET", f"/api/tasks/?project={project}&page={page}&page_size=100&fields=all")
            tasks = reply["tasks"] if isinstance(reply, dict) else reply
            out += [x for x in tasks if x["data"].get("al_round") == t]
            seen += len(tasks)
            if not isinstance(reply, dict) or seen >= reply.get("total", 0) or not tasks:
                return out
            page += 1


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("label_studio")
    # A password that begins with "-" (ls_server makes one in 64 like it): Label Studio's command
    # line once read it as an option and would not start.
    (data_dir / "password").write_text("-starts-with-a-dash\n")
    (data_dir / "password").chmod(0o600)
    server = Server(data_dir)
    print(f"\nLabel Studio {server.url} started in {server.start_secs:.1f} s")
    yield server
    server.stop()


def _wait(predicate, timeout=120.0, what="a condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _task_ids(exp, t=0, stage=None) -> dict[int, int]:
    """The stage's query -> task id record ({} before the push); fails if the stage ended."""
    if stage is not None and not stage[0].is_alive():
        pytest.fail(f"the answers stage ended before it pushed its tasks: {stage[1]}")
    path = exp.round_dir(t) / "label_studio_tasks.json"
    if not path.exists():
        return {}
    return {int(q): i for q, i in json.loads(path.read_text())["tasks"].items()}


def _stage_thread(exp, t=0):
    """The answers stage as the drivers run it (cli.run_stage), in a thread; its exit status."""
    from deeplab import cli
    from deeplab.annotate.stage import annotate_stage

    out = {}
    th = threading.Thread(target=lambda: out.update(rc=cli.run_stage(exp.job_dir, t, "annotate", annotate_stage)))
    th.start()
    return th, out


def _plan(names, n):
    """Query i's answer (None: skipped) and lead time."""
    return {i: (None if i == 1 else names[i % 3], 1.5 + i) for i in range(n)}


def _second(names, first, picked):
    """The second person's answers of the picked queries: the first disagrees, the rest agree
    (a skipped one gets a class)."""
    return {i: names[(i + 1) % 3] if i == picked[0] else first[i][0] or names[0] for i in picked}


def test_a_round_in_label_studio_equals_the_same_answers_on_the_page(tmp_path, synth_root, label_studio):
    """A round answered in Label Studio (a skip, lead times, a review pass by a second person
    through the overlap) gives the ledger, the labels and results.csv's answer columns that the
    same answers on the project's page give."""
    from deeplab.annotate.session import RoundSession
    from deeplab.experiment.answers import stage_summary
    from deeplab.experiment import results, stages

    ls_job = human_job(tmp_path / "ls", synth_root, clicks=8, review_share=0.5, **label_studio.settings())
    page_job = human_job(tmp_path / "page", synth_root, clicks=8, review_share=0.5)
    sel = stages.read_selection(ls_job, 0)
    assert sel == stages.read_selection(page_job, 0)
    names = ls_job.descriptor.class_names
    first = _plan(names, len(sel))
    th, out = _stage_thread(ls_job)
    ids = _wait(lambda: _task_ids(ls_job, stage=(th, out)), what="the pushed tasks")
    assert sorted(ids) == list(range(len(sel)))
    project = json.loads((ls_job.job_dir / "label_studio.json").read_text())["project"]
    pushed = label_studio.round_tasks(project, 0)
    assert sorted(x["id"] for x in pushed) == sorted(ids.values())
    brush = [r for r in pushed[0]["predictions"][0]["result"] if r["type"] == "brushlabels"]
    assert len(brush) == 1 and brush[0]["value"]["format"] == "rle"  # the region, highlighted
    for i, (choice, lead) in first.items():
        label_studio.answer(ids[i], choice, lead)
    picked = _wait(lambda: [i for i, x in ((i, label_studio.api("GET", f"/api/tasks/{ids[i]}")) for i in ids)
                            if x["overlap"] == 2] or None, what="the review overlap")
    second = _second(names, first, sorted(picked))
    for i in picked:
        label_studio.answer(ids[i], second[i], 0.7, by=label_studio.second)
    th.join(120)
    assert not th.is_alive() and out["rc"] == 0
    # the same answers on the page: one person, then another in the review pass
    s = RoundSession(page_job, 0, lease_secs=60)
    ignore = page_job.descriptor.ignore_label
    code = {n: c for c, n in enumerate(names)}
    while (q := s.next_for("one", session="s1")["query"]) is not None:
        choice, lead = first[q["index"]]
        s.answer("one", q["index"], ignore if choice is None else code[choice], session="s1",
                 elapsed_ms=int(lead * 1000))
    assert sorted(s.picked) == sorted(picked)
    while (q := s.next_for("two", session="s2")["query"]) is not None:
        s.answer("two", q["index"], code[second[q["index"]]], session="s2", elapsed_ms=700)
    assert s.done.is_set()
    page_job.mark(0, "annotate", stage_summary(page_job, 0, s.queries))

    def answers(exp):
        keep = ("round", "image", "region", "answer", "size", "score", "cost", "review", "elapsed_ms")
        return sorted(json.dumps({k: r.get(k) for k in keep}) for r in exp.ledger.raw())

    assert answers(ls_job) == answers(page_job)
    assert all(r["source"] == "label_studio" and r["ls_annotation"] for r in ls_job.ledger.raw())
    m_ls, m_page = ls_job.manifest(0)["annotate"], page_job.manifest(0)["annotate"]
    assert m_ls["review"] == m_page["review"] and m_ls["labelled_answers"] == m_page["labelled_answers"]
    assert m_ls["review"]["reviewed"] == len(picked) and m_ls["review"]["agreement"] < 1
    for exp in (ls_job, page_job):
        exp.mark(0, "data", stages.data_stage(exp, 0, progress=False))
    labels = lambda exp: {p.relative_to(exp.round_dir(0)): p.read_bytes()  # noqa: E731
                          for p in sorted((exp.round_dir(0) / "labels").rglob("*.png"))}
    assert labels(ls_job) and labels(ls_job) == labels(page_job)
    cells = lambda exp: {**results.annotation_cost(exp.ledger.read(), names, ignore),  # noqa: E731
                         **results.review_cells(exp.manifest(0)["annotate"]["review"], names)}
    assert cells(ls_job) == cells(page_job)


def _script(exp, key, *args, timeout=300):
    env = {**os.environ, "LABEL_STUDIO_API_KEY": key}
    return subprocess.Popen([sys.executable, "scripts/annotate_regions.py", "--job_dir", str(exp.job_dir),
                             "--round", "0", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_killed_and_run_again_it_pushes_and_imports_nothing_twice(tmp_path, synth_root, label_studio):
    """Killed after some answers were imported, and with the task ids beside the selection lost
    (a kill between the push and their record), the stage run again pushes no task and imports
    no answer a second time."""
    exp = human_job(tmp_path, synth_root, clicks=6, **label_studio.settings())
    names = exp.descriptor.class_names
    proc = _script(exp, label_studio.key)
    ids = _wait(lambda: _task_ids(exp), what="the pushed tasks")
    for i in (0, 1):
        label_studio.answer(ids[i], names[i], 2.0)
    _wait(lambda: len(exp.ledger.raw()) == 2, what="two imported answers")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (exp.round_dir(0) / "label_studio_tasks.json").unlink()
    proc = _script(exp, label_studio.key)
    assert _wait(lambda: _task_ids(exp), what="the adopted tasks") == ids
    for i in range(2, len(ids)):
        label_studio.answer(ids[i], names[i % 3], 1.0)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    project = json.loads((exp.job_dir / "label_studio.json").read_text())["project"]
    assert len(label_studio.round_tasks(project, 0)) == len(ids)  # nothing pushed twice
    rows = exp.ledger.raw()
    assert len(rows) == len(ids) and len({r["ls_annotation"] for r in rows}) == len(ids)
    assert exp.done(0, "annotate")


def test_label_studio_stopped_mid_round_and_started_again(tmp_path, synth_root, label_studio, capfd):
    """The stage waits while Label Studio is down, says so once, and goes on when it is back."""
    exp = human_job(tmp_path, synth_root, clicks=4, **label_studio.settings())
    names = exp.descriptor.class_names
    th, out = _stage_thread(exp)
    ids = _wait(lambda: _task_ids(exp, stage=(th, out)), what="the pushed tasks")
    label_studio.answer(ids[0], names[0], 1.0)
    _wait(lambda: len(exp.ledger.raw()) == 1, what="the first answer")
    label_studio.stop()
    _wait(lambda: "does not answer" in capfd.readouterr().out, what="the stage to notice")
    label_studio.start()
    for i in range(1, len(ids)):
        label_studio.answer(ids[i], names[i % 3], 1.0)
    th.join(120)
    assert out["rc"] == 0 and len(exp.ledger.raw()) == len(ids)
    assert "answers again" in capfd.readouterr().out


def test_an_annotation_deleted_after_import_stays_in_the_ledger_and_is_named(tmp_path, synth_root, label_studio, capfd):
    from deeplab.annotate import ls_loop

    exp = human_job(tmp_path, synth_root, clicks=3, **label_studio.settings())
    names = exp.descriptor.class_names
    th, out = _stage_thread(exp)
    ids = _wait(lambda: _task_ids(exp, stage=(th, out)), what="the pushed tasks")
    for i in ids:
        label_studio.answer(ids[i], names[i], 1.0)
    th.join(120)
    assert out["rc"] == 0
    gone = exp.ledger.raw()[1]["ls_annotation"]
    label_studio.api("DELETE", f"/api/annotations/{gone}/")
    capfd.readouterr()
    before = exp.ledger.path.read_bytes()
    # the next time the stage runs (the next round), it names the answer and keeps it
    info = ls_loop.label_studio_round(exp, 0)
    said = capfd.readouterr().out
    assert "1 answers of round 0 were deleted in Label Studio" in said and str(gone) in said
    assert info["label_studio"]["deleted_since_import"] == 1
    assert exp.ledger.path.read_bytes() == before


def test_a_wrong_key_is_one_line_and_exit_status_2(tmp_path, synth_root, label_studio):
    exp = human_job(tmp_path, synth_root, clicks=3, **label_studio.settings())
    wrong = "0123456789abcdef-not-the-key"
    proc = _script(exp, wrong)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert len(stderr.strip().splitlines()) == 1 and "refused the API key (401)" in stderr
    assert wrong not in stdout + stderr
    assert not any(wrong in p.read_text(errors="replace") for p in exp.job_dir.rglob("*") if p.is_file())
    assert not exp.done(0, "annotate")


def test_label_studios_labelling_page_shows_the_pushed_region(tmp_path, synth_root, label_studio, browser):
    """In Chromium, Label Studio's labelling page of a pushed task shows the image, the queried
    region as the pre-annotated brush "query" and the data set's classes with "unclear".
    `LS_SCREENSHOT=docs/label_studio_task.png` saves the README's picture."""
    from selenium.webdriver.common.by import By

    from helpers import make_folder_dataset
    from deeplab.datasets import synthetic
    from deeplab.experiment import tasks
    from deeplab.experiment.settings import ExperimentConfig
    from deeplab.experiment.job import Job
    from deeplab.experiment.stages import select_stage

    scenes = synthetic.generate(tmp_path / "scenes", num_train=3, num_val=1, height=256, width=512, seed=3)
    root = make_folder_dataset(scenes, tmp_path / "data", labels=False, splits=False, num_train=3, num_val=1)
    config = ExperimentConfig(job_dir=str(tmp_path / "street_scenes"), dataset="folder", dataset_dir=str(root),
                              rounds=2, clicks_per_round=4, superpixel_method="slic",
                              superpixel_size_px=1500.0, seed=1, num_workers=1,
                              **label_studio.settings()).validate()
    config.save_or_check()
    exp = Job(config)
    tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "slic", 1500.0, progress=False)
    exp.mark(0, "select", select_stage(exp, 0, progress=False))
    th, out = _stage_thread(exp)
    ids = _wait(lambda: _task_ids(exp, stage=(th, out)), what="the pushed tasks")
    project = json.loads((exp.job_dir / "label_studio.json").read_text())["project"]
    browser.get(label_studio.url + "/user/login/")
    browser.find_element(By.NAME, "email").send_keys("admin@example.com")
    browser.find_element(By.NAME, "password").send_keys((label_studio.data_dir / "password").read_text().strip())
    browser.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    _wait(lambda: "/user/login" not in browser.current_url, what="the login")
    browser.get(f"{label_studio.url}/projects/{project}/data?tab=0&task={ids[0]}")
    text = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
    _wait(lambda: "Which class covers most of the region (outside 'answered')?" in text() and "unclear" in text(),
          what="the labelling page")
    _wait(lambda: "query" in text(), what="the region's pre-annotation")
    assert all(name in text() for name in exp.descriptor.class_names)
    image = _wait(lambda: browser.execute_script(
        "const i = [...document.images].find(i => i.src.includes('local-files'));"
        "return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null;"),
        what="the image from local files")
    assert image == [512, 256]
    time.sleep(1)  # the brush layer is drawn after the image
    if os.environ.get("LS_SCREENSHOT"):
        browser.save_screenshot(os.environ["LS_SCREENSHOT"])
    for i in ids:
        label_studio.answer(ids[i], exp.descriptor.class_names[0], 1.0)
    th.join(120)
    assert out["rc"] == 0


def test_a_later_round_reuses_the_project_and_preselects_the_models_class(tmp_path, synth_root, label_studio):
    """Round 1 goes to the same project (its labelling interface unchanged) and, with
    PRESELECT=1, each task pre-selects the previous model's dominant class of the region."""
    import numpy as np

    from deeplab.active import regions as R
    from deeplab.annotate import ls_loop
    from deeplab.experiment import region_maps
    from deeplab.experiment.answers import read_selection

    exp = human_job(tmp_path, synth_root, clicks=3, preselect=True, **label_studio.settings())
    sel = read_selection(exp, 0)
    rng = np.random.default_rng(0)
    dominant = {}
    for name in {q["image"] for q in sel}:  # round 1's maps: the base map with a model's statistics
        regions = region_maps.load(exp.map_path(0, name))
        probs = rng.dirichlet(np.ones(exp.descriptor.num_classes), size=regions.shape).astype(np.float32)
        stats = R.region_statistics(probs, regions)
        region_maps.save(exp.map_path(1, name), regions, stats)
        dominant[name] = stats.dominant_class
    client = ls_loop.Client.for_job(exp)
    try:
        first = ls_loop.ensure_project(exp, client)
        ids0 = ls_loop.push_round(exp, 0, sel, client, first, set())
        assert ls_loop.ensure_project(exp, client) == first
        ids1 = ls_loop.push_round(exp, 1, sel, client, first, set())
    finally:
        client.close()
    assert len(ids0) == len(ids1) == len(sel) and not set(ids0.values()) & set(ids1.values())
    names = exp.descriptor.class_names
    for task in label_studio.round_tasks(first, 1):
        q = sel[task["data"]["al_query"]]
        (choice,) = [r for r in task["predictions"][0]["result"] if r["type"] == "choices"]
        assert choice["value"]["choices"] == [names[int(dominant[q["image"]][q["region"]])]]
    for task in label_studio.round_tasks(first, 0):  # round 0: no model, nothing pre-selected
        assert [r["type"] for r in task["predictions"][0]["result"]] == ["brushlabels"]
