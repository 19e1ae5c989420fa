"""The answers stage with ANNOTATOR=label_studio: a round's queries go to a running Label Studio
as tasks, and its answers come back into the ledger (docs/annotation.md, "Label Studio in the
loop").

1. The job's project: one per job, found by the marker in its description (the job folder's
   path) or created with the labelling interface of `label_studio.label_config`, and a
   local-files storage on the images' folder (never synced; it lets Label Studio show them).
   Its id is kept in `label_studio.json` in the job folder.
2. The round's tasks: one per queried region, as the file export writes them (the region as a
   brush pre-annotation; with PRESELECT=1 the previous model's dominant class pre-selected).
   Before pushing, the project's tasks of the round are read back and adopted by their query
   number, and their ids kept in `label_studio_tasks.json` beside the selection: a stage killed
   between the push and that file pushes nothing twice when run again.
3. Polling every LABEL_STUDIO_POLL_SECS: each new annotation is checked as the file import
   checks it (the class, the lead time) and appended to the ledger with its Label Studio id; an
   annotation whose id the ledger holds is never imported again. A skip is an "unclear" answer.
   A refused annotation is named once and waited for (correct it in Label Studio). The stage
   ends when every region is answered and every review given.
4. The review pass (REVIEW_SHARE): the picked regions' tasks get an overlap of 2 (Label Studio
   hands them to a second person); where the two disagree and three people have taken part, an
   overlap of 3. Agreement and kappa come from the ledger as for the page.

Label Studio's client (`label_studio_sdk`) runs in Label Studio's own environment
(`ls_bridge.py`): it cannot be installed beside opencv-contrib. The API key comes from
LABEL_STUDIO_API_KEY or LABEL_STUDIO_KEY_FILE and goes to that process's environment only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from deeplab import io_utils
from deeplab.active import review
from deeplab.annotate import label_studio as ls
from deeplab.experiment.locks import round_lock
from deeplab.errors import BadInput, Unavailable
from deeplab.experiment import ledger, region_maps
from deeplab.experiment.job import Job
from deeplab.experiment.answers import labelled_before, read_selection, stage_summary

# Label Studio's environment: the server and the client it ships with, exact (the tests run them).
LS_VERSION = "1.23.2"
REQUIREMENTS = (f"label-studio=={LS_VERSION}", "label-studio-sdk==2.1.2")
KEY_ENV = "LABEL_STUDIO_API_KEY"
BRIDGE = Path(__file__).with_name("ls_bridge.py")
PUSH_BATCH = 200


class LabelStudioError(BadInput):
    """Label Studio refused a request (a wrong key, a missing storage root): one line."""


class Unreachable(Unavailable):
    """Label Studio does not answer (not started, restarting, the network)."""


# ---------------------------------------------------------------------------- environment
def venv_dir() -> Path:
    """Where scripts/label_studio.py installs Label Studio's environment (LABEL_STUDIO_VENV, else
    the user's cache), one per version."""
    if os.environ.get("LABEL_STUDIO_VENV"):
        return Path(os.environ["LABEL_STUDIO_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "adaptive-superpixel-al" / f"label-studio-{LS_VERSION}"


def python_of(setting: str = "") -> Path:
    """The Python of Label Studio's environment: LABEL_STUDIO_PYTHON, else the installed one."""
    python = Path(setting) if setting else venv_dir() / "bin" / "python"
    if not python.exists():
        raise LabelStudioError(
            f"no Python at {python} for Label Studio's client: run `python scripts/label_studio.py "
            "install` (or set LABEL_STUDIO_PYTHON to the Python of an environment with "
            f"label-studio-sdk)")
    return python


def api_key(key_file: str = "") -> str:
    """The API key: LABEL_STUDIO_API_KEY, else the first line of LABEL_STUDIO_KEY_FILE."""
    key = os.environ.get(KEY_ENV, "").strip()
    if not key and key_file:
        try:
            key = (Path(key_file).read_text().strip().splitlines() or [""])[0].strip()
        except (OSError, UnicodeDecodeError) as e:
            raise LabelStudioError(f"cannot read the key file {key_file} ({e}): set "
                                   "LABEL_STUDIO_KEY_FILE to a readable file") from None
    if not key:
        raise LabelStudioError(f"ANNOTATOR=label_studio needs Label Studio's API key: set {KEY_ENV} "
                               "or LABEL_STUDIO_KEY_FILE (Label Studio: Account & Settings > "
                               "Access Token)")
    return key


class Client:
    """Label Studio's client in its own environment, spoken to in JSON lines (ls_bridge.py)."""

    def __init__(self, url: str, key: str, python: Path):
        self.url = url
        env = {**os.environ, KEY_ENV: key, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([str(python), str(BRIDGE), url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True)

    @classmethod
    def for_job(cls, exp: Job) -> "Client":
        c = exp.config
        return cls(c.label_studio_url.rstrip("/"), api_key(c.label_studio_key_file),
                   python_of(c.label_studio_python))

    def call(self, op: str, **args):
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise LabelStudioError(f"Label Studio's client ({BRIDGE.name}) ended (exit status "
                                   f"{self.proc.poll()}); its error is above")
        reply = json.loads(line)
        if reply["ok"]:
            return reply["result"]
        if reply["kind"] == "unreachable":
            raise Unreachable(f"Label Studio at {self.url} does not answer ({reply['error']})")
        if reply["status"] in (401, 403):
            raise LabelStudioError(f"Label Studio at {self.url} refused the API key "
                                   f"({reply['status']}): set {KEY_ENV} or LABEL_STUDIO_KEY_FILE "
                                   "to the key of a user of that server")
        raise LabelStudioError(f"Label Studio at {self.url} refused '{op}' ({reply['status']}: "
                               f"{reply['error']})")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------- project and tasks
def marker(exp: Job) -> str:
    """What names the job's project in its description: the job folder's path."""
    return f"[adaptive-superpixel-al job {exp.job_dir.resolve()}]"


def image_folder(exp: Job) -> Path:
    """The folder that holds every image of the job (the local-files storage's path)."""
    return Path(os.path.commonpath([str(s.image_path.resolve().parent) for s in exp.samples]))


def ensure_project(exp: Job, client: Client) -> int:
    """The job's project id (found, or created with its storage)."""
    state_file = exp.job_dir / "label_studio.json"
    state = io_utils.read_json_object(state_file, "delete it") if state_file.exists() else {}
    known = state.get("project") if state.get("url") == client.url else None
    title = exp.job_dir.name if len(exp.job_dir.name) >= 3 else f"job {exp.job_dir.name}"
    folder = image_folder(exp)
    root = Path(exp.config.label_studio_root).resolve()
    try:
        folder.relative_to(root)
    except ValueError:
        raise LabelStudioError(f"the images ({folder}) are not below LABEL_STUDIO_ROOT {root}: set it "
                               "to the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT") from None
    out = client.call("project", title=title[:50], marker=marker(exp), label_config=ls.label_config(exp),
                      storage_path=str(folder), model_version=MODEL_VERSION, project_id=known)
    if known != out["id"]:
        io_utils.write_json(state_file, {"url": client.url, "project": out["id"]})
    return int(out["id"])


# The pre-annotations' version, one for every round: Label Studio refuses to switch a project to
# a version that has no predictions yet, and the project shows the predictions of its version.
MODEL_VERSION = "query"


def tasks_path(exp: Job, t: int) -> Path:
    return exp.round_dir(t) / "label_studio_tasks.json"


def _adopt(exp: Job, t: int, remote: list[dict], n: int) -> dict[int, int]:
    """query -> task id of the project's tasks of round t of this job (the first of each)."""
    out: dict[int, int] = {}
    for task in sorted(remote, key=lambda r: r["id"]):
        d = task["data"]
        q = d.get("al_query")
        if d.get("al_job") == exp.job_dir.name and isinstance(q, int) and 0 <= q < n:
            out.setdefault(q, int(task["id"]))
    return out


def _tasks_json(exp: Job, t: int, sel: list[dict], queries: list[int]) -> list[dict]:
    """Label Studio tasks of these queries (as the file export writes them; the pre-selected
    class with PRESELECT=1)."""
    root = Path(exp.config.label_studio_root).resolve()
    samples = {s.name: s for s in exp.samples}
    by_image: dict[str, list[int]] = {}
    for i in queries:
        by_image.setdefault(sel[i]["image"], []).append(i)
    names = exp.descriptor.class_names
    preselect = exp.config.preselect and t > 0  # round 0's base maps have no model statistics
    before = labelled_before(exp, t)
    out = {}
    for name, ids in by_image.items():
        if preselect:
            regions, stats = region_maps.load_with_stats(exp.map_path(t, name))
        else:
            regions = region_maps.load(exp.map_path(t, name))
        url = ls.image_url(samples[name], root)
        h, w = regions.shape
        for i in ids:
            task = ls.region_task(exp, t, i, sel[i], url, regions == sel[i]["region"], h, w,
                                  *before(name, regions.shape))
            task["predictions"][0]["model_version"] = MODEL_VERSION
            if preselect:
                c = int(stats["dominant_class"][sel[i]["region"]])
                task["predictions"][0]["result"].append({
                    "id": f"c{i}", "type": "choices", "from_name": ls.FROM_CLASS, "to_name": ls.TO_IMAGE,
                    "value": {"choices": [names[c]]}})
            out[i] = task
    return [out[i] for i in queries]


def push_round(exp: Job, t: int, sel: list[dict], client: Client, project: int,
               answered: set[tuple[str, int]]) -> dict[int, int]:
    """Pushes round t's unanswered queries that Label Studio does not hold yet; query -> task id."""
    ids = _adopt(exp, t, client.call("tasks", project=project, round=t), len(sel))
    todo = [i for i in range(len(sel)) if i not in ids and (sel[i]["image"], sel[i]["region"]) not in answered]
    for k in range(0, len(todo), PUSH_BATCH):
        client.call("push", project=project, tasks=_tasks_json(exp, t, sel, todo[k:k + PUSH_BATCH]))
    if todo:
        ids = _adopt(exp, t, client.call("tasks", project=project, round=t), len(sel))
    io_utils.write_json(tasks_path(exp, t), {"project": project, "round": t,
                                             "tasks": {str(q): i for q, i in sorted(ids.items())}})
    return ids


# ---------------------------------------------------------------------------- answers
def _annotations(task: dict) -> list[dict]:
    return sorted(task["annotations"], key=lambda a: a["id"])


def _answer(codes: dict[str, int], ann: dict) -> tuple[int | None, str, int | None, str]:
    """(answer, annotator, ms, '') of an annotation, or (None, '', None, reason); `codes`:
    label_studio.answer_codes. A skip is unclear."""
    if ann.get("was_cancelled"):
        name, who, reason = ls.UNCLEAR, ls.annotator_id(ann.get("completed_by")), ""
    else:
        name, who, reason = ls.annotation_choice(ann)
    if not reason and name not in codes:
        reason = ls.not_a_class(name)
    ms = None
    if not reason:
        ms, reason = ls.annotation_lead_ms(ann)
    return (None, "", None, reason) if reason else (codes[name], who, ms, "")


class RoundState:
    """What the ledger holds of round t (the truth) and what is still wanted of Label Studio."""

    def __init__(self, exp: Job, t: int, sel: list[dict]):
        self.exp, self.t, self.sel = exp, t, sel
        self.index = {(q["image"], q["region"]): i for i, q in enumerate(sel)}
        self.codes = ls.answer_codes(exp.descriptor)
        self.first: dict[int, dict] = {}
        self.reviews: dict[int, dict[int, dict]] = {}
        self.imported: set[int] = set()
        for r in exp.ledger.read():
            if r["round"] == t and (r["image"], r["region"]) in self.index:
                self.first[self.index[(r["image"], r["region"])]] = r
        for key, rv in exp.ledger.reviews(t).items():
            if key in self.index:
                self.reviews[self.index[key]] = rv
        for r in exp.ledger.raw():
            if r.get("round") == t and r.get("ls_annotation") is not None:
                self.imported.add(int(r["ls_annotation"]))
        c = exp.config
        self.picked = set(review.review_subset(len(sel), float(c.review_share), c.seed, t).tolist()) \
            if c.review_share else set()
        self.people: set[str] = set()

    def answered(self) -> set[tuple[str, int]]:
        return {(self.sel[i]["image"], self.sel[i]["region"]) for i in self.first}

    def wanted(self, i: int) -> int:
        """How many annotations query i needs: 1, 2 (picked for review), 3 (a disagreement
        that three people can settle)."""
        if i not in self.picked:
            return 1
        rv = self.reviews.get(i, {})
        if 1 in rv and i in self.first and rv[1]["answer"] != self.first[i]["answer"] and len(self.people) >= 3:
            return 3
        return 2

    def complete(self) -> bool:
        return len(self.first) == len(self.sel) and all(
            len(self.reviews.get(i, {})) + 1 >= self.wanted(i) for i in self.picked)

    def rows(self, i: int, task: dict, refused: dict) -> list[dict]:
        """The ledger rows of task i's annotations that the ledger lacks (in order); a refused
        annotation is put in `refused` (annotation id -> reason) and stops the task there."""
        out, who_before = [], []
        k = 0
        for ann in _annotations(task):
            answer, who, ms, reason = _answer(self.codes, ann)
            if who:
                self.people.add(who)
            if k >= self.wanted(i):
                break
            if ann["id"] in self.imported:
                who_before.append(who)
                k += 1
                continue
            if not reason and who in who_before:
                reason = "is a second annotation by the same person; a review is another person's"
            if reason:
                refused[ann["id"]] = f"task {task['id']} (annotation {ann['id']}): {reason}"
                break
            q = self.sel[i]
            if k == 0 and i not in self.first:
                row = ledger.make_row(self.t, q, answer, annotator=who, source="label_studio",
                                      elapsed_ms=ms, ls_annotation=int(ann["id"]))
                self.first[i] = row
            elif k in (1, 2) and k not in self.reviews.get(i, {}) and i in self.first:
                row = ledger.make_row(self.t, q, answer, size=self.first[i]["size"], cost=0,
                                      review=k, annotator=who, source="label_studio",
                                      elapsed_ms=ms, ls_annotation=int(ann["id"]))
                self.reviews.setdefault(i, {})[k] = row
            else:  # the ledger answers this place already (an answer of another origin)
                who_before.append(who)
                k += 1
                continue
            out.append(row)
            self.imported.add(int(ann["id"]))
            who_before.append(who)
            k += 1
        return out


def deleted_since_import(exp: Job, client: Client, project: int) -> dict[int, list[int]]:
    """round -> Label Studio annotation ids the ledger imported that Label Studio no longer has."""
    have = set(client.call("annotation_ids", project=project))
    out: dict[int, list[int]] = {}
    for r in exp.ledger.raw():
        a = r.get("ls_annotation")
        if a is not None and int(a) not in have:
            out.setdefault(int(r["round"]), []).append(int(a))
    return out


def _say_deleted(deleted: dict[int, list[int]]) -> None:
    for r, ids in sorted(deleted.items()):
        shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
        print(f"note: {len(ids)} answers of round {r} were deleted in Label Studio after they were "
              f"imported (annotations {shown}): the ledger keeps them, and what was trained on them "
              "stays; Label Studio no longer shows them", flush=True)


# ---------------------------------------------------------------------------- the stage
def label_studio_round(exp: Job, t: int, poll_secs: float | None = None) -> dict:
    """The answers stage with ANNOTATOR=label_studio (see the module's docstring)."""
    poll = float(exp.config.label_studio_poll_secs if poll_secs is None else poll_secs)
    sel = read_selection(exp, t)
    with round_lock(exp, t):
        client = Client.for_job(exp)
        try:
            client.call("whoami")  # a wrong key or a stopped server: said before anything else
            project = ensure_project(exp, client)
            deleted = deleted_since_import(exp, client, project)
            _say_deleted(deleted)
            state = RoundState(exp, t, sel)
            ids = push_round(exp, t, sel, client, project, state.answered())
            print(f"round {t}: {len(sel) - len(state.first)} of {len(sel)} queried regions to answer in "
                  f"Label Studio project {project} ({client.url}/projects/{project}); every answer is "
                  f"imported within {poll:g} s, and this stage goes on when the last one is in "
                  "(Ctrl-C stops; run it again to continue).", flush=True)
            _poll(exp, t, state, client, project, ids, poll)
        finally:
            client.close()
    print(f"round {t}: every queried region is answered in Label Studio")
    out = stage_summary(exp, t, sel)
    out["label_studio"] = {"project": project, "tasks": len(ids),
                           "deleted_since_import": sum(len(v) for v in deleted.values())}
    return out


def _poll(exp: Job, t: int, state: RoundState, client: Client, project: int,
          ids: dict[int, int], poll: float) -> None:
    told: set[int] = set()
    down = False
    last = None
    query_of = {task: q for q, task in ids.items()}
    while True:
        try:
            remote = client.call("tasks", project=project, round=t)
        except Unreachable as e:
            if not down:
                down = True
                print(f"{e}: waiting for it (every {poll:g} s)", flush=True)
            time.sleep(poll)
            continue
        if down:
            print(f"Label Studio at {client.url} answers again", flush=True)
            down = False
        refused: dict[int, str] = {}
        rows = []
        for task in remote:
            if task["id"] in query_of:
                rows += state.rows(query_of[task["id"]], task, refused)
        if rows:
            exp.ledger.append(rows)
        for a, reason in refused.items():
            if a not in told:
                print(f"refused {reason}; correct it in Label Studio", flush=True)
                told.add(a)
        by_id = {r["id"]: r for r in remote}
        for i in state.picked:  # the overlap each picked task needs now
            task = by_id.get(ids.get(i))
            if task is not None and (task.get("overlap") or 1) < state.wanted(i):
                client.call("overlap", task=task["id"], overlap=state.wanted(i))
        if state.complete():
            return
        now = (len(state.first), sum(len(v) for v in state.reviews.values()))
        if now != last:
            print(f"  answered {now[0]} of {len(state.sel)}" + (f", {now[1]} reviews" if state.picked else ""),
                  flush=True)
            last = now
        time.sleep(poll)
