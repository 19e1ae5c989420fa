"""Label Studio: its own environment and server for ANNOTATOR=label_studio, and the exchange of
a round's queries by files.

  # ANNOTATOR=label_studio (docs/annotation.md, "Label Studio in the loop"):
  python scripts/label_studio.py install        # Label Studio's environment, once (about 1 GB)
  python scripts/label_studio.py start --data_dir work_dirs/label_studio --port 8080
  # ... it prints the LABEL_STUDIO_URL and LABEL_STUDIO_KEY_FILE to give the drivers

  # by files:

  # the queries of round 1 as Label Studio tasks (+ label_config.xml beside them)
  python scripts/label_studio.py export --job_dir work_dirs/mine --round 1 --out tasks_r1.json
  # ... label them in Label Studio, export the project as JSON, then:
  python scripts/label_studio.py import --job_dir work_dirs/mine --round 1 --file project-export.json
  # and run the driver again: the round's answers stage completes from the ledger

Images are referenced as Label Studio local files (`/data/local-files/?d=<path below DATA_DIR>`):
start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<DATA_DIR>, or pass --image_url_prefix (and
--document_root) for images served elsewhere. An import is all or nothing: a task that is not a
queried region of the round, names an unknown class, or answers a region twice is refused with
its id and the reason.
"""

import argparse
import json
import sys

from deeplab import cli
from deeplab.errors import BadInput


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="a round's queries as Label Studio tasks")
    cli.add_round_flags(ex)
    ex.add_argument("--out", default=None, help="tasks JSON (default: round_XX/label_studio/tasks.json)")
    ex.add_argument("--image_url_prefix", default="/data/local-files/?d=",
                    help="what precedes an image's path in a task's URL (Label Studio's local files)")
    ex.add_argument("--document_root", default=None, help="image paths are relative to it (default: DATA_DIR)")
    ex.add_argument("--all", action="store_true", help="also the regions already answered")
    im = sub.add_parser("import", help="a completed Label Studio JSON export into the ledger")
    cli.add_round_flags(im)
    im.add_argument("--file", required=True, help="Label Studio export (JSON)")
    ins = sub.add_parser("install", help="Label Studio's own virtual environment (once)")
    ins.add_argument("--venv", default=None, help="where (default: LABEL_STUDIO_VENV, else the user's cache)")
    st = sub.add_parser("start", help="a Label Studio server on this machine, until Ctrl-C")
    st.add_argument("--data_dir", default="work_dirs/label_studio", help="its SQLite database, key and password")
    st.add_argument("--host", default="127.0.0.1", help="the address it listens on")
    st.add_argument("--port", type=int, default=8080, help="its port")
    st.add_argument("--document_root", default="/", help="images are served from below it (LABEL_STUDIO_ROOT)")
    st.add_argument("--username", default="admin@example.com", help="the account the server is started with")
    st.add_argument("--venv", default=None,
                    help="its environment (default: LABEL_STUDIO_VENV, else the user's cache)")
    args = p.parse_args(argv)
    if args.command in ("install", "start"):
        return cli.guarded(_server, args)

    from deeplab.annotate import label_studio
    from deeplab.experiment.job import Job

    exp = Job.open(args.job_dir)
    if args.command == "export":
        out = args.out or exp.round_dir(args.round) / "label_studio" / "tasks.json"
        info = label_studio.export_round(exp, args.round, out, args.image_url_prefix,
                                         args.document_root, only_unanswered=not args.all)
    else:
        if exp.done(args.round, "annotate"):
            raise BadInput(f"round {args.round}'s answers stage is complete; its answers are final")
        info = label_studio.import_round(exp, args.round, args.file)
        left = info["asked"] - info["answered"]
        info["next"] = (f"{left} regions are still unanswered: import more, or answer them on the "
                        "page (the driver serves it)") if left else \
            "every region is answered: run the driver again to continue"
    print(json.dumps(info, indent=1))
    return 0


def _server(args) -> int:
    from pathlib import Path

    from deeplab.annotate import ls_server

    venv = Path(args.venv) if args.venv else None
    if args.command == "install":
        print(f"Label Studio's environment: {ls_server.install(venv, quiet=False).parent.parent}")
        return 0
    if not ls_server.installed(venv):
        raise BadInput("Label Studio is not installed: run `python scripts/label_studio.py install` first")
    proc = ls_server.start(args.data_dir, args.port, args.host, args.document_root, args.username, venv,
                           log=Path(args.data_dir) / "label_studio.log")
    try:
        url = f"http://{args.host}:{args.port}"
        secs = ls_server.wait_up(url, proc)
        data = Path(args.data_dir).resolve()
        print(f"Label Studio is up at {url} after {secs:.0f} s (log: {data / 'label_studio.log'}).\n"
              f"  log in as {args.username}, password in {data / 'password'}\n"
              f"  the drivers: ANNOTATOR=label_studio LABEL_STUDIO_URL={url} "
              f"LABEL_STUDIO_KEY_FILE={ls_server.key_file(data)} LABEL_STUDIO_ROOT={args.document_root}\n"
              "Ctrl-C stops it.", flush=True)
        proc.wait()
        return proc.returncode
    finally:
        ls_server.stop(proc)


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
