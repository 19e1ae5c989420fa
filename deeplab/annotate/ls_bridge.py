"""Label Studio's own client (`label_studio_sdk`) for the answers stage with
ANNOTATOR=label_studio, run by the Python of Label Studio's environment.

The SDK cannot live beside TensorFlow: it requires `opencv-python-headless`, whose `cv2`
replaces opencv-contrib's (and with it SEEDS). So the stage (deeplab/annotate/ls_loop.py) starts
this file with Label Studio's Python and speaks JSON lines with it over stdin and stdout. It
imports nothing but the standard library and the SDK, and it never writes the API key, which it
reads from its environment (LABEL_STUDIO_API_KEY).

Requests: {"op": name, ...arguments}; replies: {"ok": true, "result": ...} or {"ok": false,
"kind": "refused" | "unreachable" | "error", "status": HTTP status or null, "error": text}.
"""

from __future__ import annotations

import json
import os
import sys


def _plain(obj):
    """An SDK object (pydantic) or a list/dict of them as plain JSON values."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "dict"):
        return json.loads(json.dumps(obj.dict(), default=str))
    if isinstance(obj, list):
        return [_plain(o) for o in obj]
    return obj


class Bridge:
    def __init__(self, url: str, key: str):
        from label_studio_sdk.client import LabelStudio

        self.client = LabelStudio(base_url=url, api_key=key, timeout=60)

    def whoami(self) -> dict:
        me = self.client.users.whoami()
        return {"id": me.id, "email": me.email}

    def project(self, title: str, marker: str, label_config: str, storage_path: str,
                model_version: str, project_id: int | None = None) -> dict:
        """The job's project (by id, else the one whose description holds `marker`, else a new
        one), its labelling interface and prediction version set, and a local-files storage on
        `storage_path` (never synced: it only lets Label Studio serve the job's images)."""
        c = self.client
        project = None
        if project_id is not None:
            try:
                project = c.projects.get(id=project_id)
            except Exception:  # deleted in Label Studio: found by its marker or made anew
                project = None
            if project is not None and marker not in (project.description or ""):
                project = None
        if project is None:
            for p in c.projects.list(page_size=100):
                if marker in (p.description or ""):
                    project = p
                    break
        if project is None:
            project = c.projects.create(title=title, description=marker, label_config=label_config,
                                        show_skip_button=True, show_collab_predictions=True,
                                        model_version=model_version, maximum_annotations=1)
        elif project.label_config != label_config:
            c.projects.update(id=project.id, label_config=label_config)
        storages = [s for s in c.import_storage.local.list(project=project.id)
                    if (s.path or "").rstrip("/") == storage_path.rstrip("/")]
        if not storages:
            c.import_storage.local.create(project=project.id, path=storage_path, title="job images",
                                          use_blob_urls=False, recursive_scan=True)
        return {"id": project.id}

    def tasks(self, project: int, round: int | None = None) -> list[dict]:
        """The project's tasks (of one round when given) with their annotations."""
        out = []
        query = None
        if round is not None:  # Label Studio filters by round (the data manager's filter on data)
            query = json.dumps({"filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:data.al_round", "operator": "equal", "type": "Number",
                 "value": round}]}})
        for task in self.client.tasks.list(project=project, fields="all", page_size=500, query=query):
            t = _plain(task)
            if round is not None and (t.get("data") or {}).get("al_round") != round:
                continue
            out.append({"id": t["id"], "data": t.get("data") or {}, "overlap": t.get("overlap"),
                        "annotations": [
                            {k: a.get(k) for k in ("id", "completed_by", "was_cancelled", "result",
                                                   "lead_time", "created_at")}
                            for a in t.get("annotations") or []]})
        return out

    def push(self, project: int, tasks: list[dict]) -> list[int]:
        """Imports tasks (with their predictions); their ids, in order."""
        reply = self.client.projects.import_tasks(id=project, request=tasks, return_task_ids=True)
        return list(getattr(reply, "task_ids", None) or [])

    def overlap(self, task: int, overlap: int) -> None:
        self.client.tasks.update(id=str(task), overlap=overlap)

    def annotation_ids(self, project: int) -> list[int]:
        return sorted(a["id"] for t in self.tasks(project) for a in t["annotations"])


def _reply(bridge: Bridge, request: dict) -> dict:
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    op = request.pop("op", None)
    if op not in ("whoami", "project", "tasks", "push", "overlap", "annotation_ids"):
        return {"ok": False, "kind": "error", "status": None, "error": f"unknown request {op!r}"}
    try:
        return {"ok": True, "result": getattr(bridge, op)(**request)}
    except ApiError as e:
        body = e.body if isinstance(e.body, dict) else {"detail": str(e.body)[:300]}
        detail = body.get("validation_errors") or body.get("detail") or body
        return {"ok": False, "kind": "refused", "status": e.status_code, "error": str(detail)[:500]}
    except httpx.TransportError as e:
        return {"ok": False, "kind": "unreachable", "status": None, "error": f"{type(e).__name__}: {e}"}


def main() -> int:
    url, key = sys.argv[1], os.environ.pop("LABEL_STUDIO_API_KEY", "")
    bridge = Bridge(url, key)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = _reply(bridge, json.loads(line))
        except Exception as e:  # a bug here is reported to the stage, which names it
            reply = {"ok": False, "kind": "error", "status": None, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
