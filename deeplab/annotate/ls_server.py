"""Label Studio's own environment and a Label Studio server on this machine, for
ANNOTATOR=label_studio (scripts/label_studio.py) and the tests.

Label Studio and its client live in a virtual environment of their own (`ls_loop.venv_dir()`),
never beside TensorFlow: the client requires `opencv-python-headless`, whose `cv2` would replace
opencv-contrib's. `install` makes it once (about 1 GB; it is reused while the pinned version
stays the same), with an empty migrated database as a template. `start` runs the server with
SQLite in a data folder (a new one starts from a copy of the template), one user whose API key it
writes to `<data folder>/api_key` (mode 600, made at the first start), local files served below
a document root (the job's images are shown from where they are), and without the version check,
usage reports and error reports that would reach the network.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from deeplab import io_utils
from deeplab.annotate import ls_loop
from deeplab.errors import CannotContinue

DB_NAME = "label_studio.sqlite3"  # Label Studio's SQLite database in its data folder


def installed(venv: Path | None = None) -> bool:
    venv = Path(venv or ls_loop.venv_dir())
    done = venv / "installed.txt"
    return done.exists() and done.read_text().split() == list(ls_loop.REQUIREMENTS)


def install(venv: Path | None = None, quiet: bool = True) -> Path:
    """Label Studio's environment (made once; an interrupted install is completed) and its
    database template: its Python."""
    venv = Path(venv or ls_loop.venv_dir())
    if not installed(venv):
        venv.parent.mkdir(parents=True, exist_ok=True)
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        subprocess.run(pip + (["-q"] if quiet else []) + list(ls_loop.REQUIREMENTS), check=True)
        io_utils.write_text(venv / "installed.txt", " ".join(ls_loop.REQUIREMENTS) + "\n")
    _make_template(venv)
    return venv / "bin" / "python"


def template_db(venv: Path | None = None) -> Path:
    """An empty database with every migration of the installed version applied (no user, no
    secret): a new data folder starts from a copy in seconds instead of migrating for 30-50 s."""
    return Path(venv or ls_loop.venv_dir()) / "template" / DB_NAME


def _make_template(venv: Path) -> None:
    import tempfile

    out = template_db(venv)
    if out.is_file():
        return
    print(f"Label Studio: an empty database as the template of new data folders ({out}; "
          "its migrations take about 40 s here) ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=venv) as tmp:
        done = subprocess.run([str(venv / "bin" / "label-studio"), "init", "--data-dir", tmp, "-q"],
                              env=_quiet_env(), cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise CannotContinue(f"Label Studio's `init` failed (exit status {done.returncode}):\n"
                                 + "\n".join((done.stdout + done.stderr).splitlines()[-15:]))
        out.parent.mkdir(exist_ok=True)
        with io_utils.atomic_path(out) as part:
            shutil.copyfile(Path(tmp) / DB_NAME, part)


def _quiet_env() -> dict:
    """The environment without the API key, and with nothing that leaves the machine: no
    version check, usage reports or error reports (Label Studio sends its errors to Sentry
    unless its DSNs are empty)."""
    env = {**os.environ, "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    env.pop(ls_loop.KEY_ENV, None)
    return env


def key_file(data_dir: Path | str) -> Path:
    return Path(data_dir) / "api_key"


def _secret(path: Path, make) -> str:
    """A secret kept in `path` (mode 600 from its first byte), made at the first call."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
        os.replace(tmp, path)
    return path.read_text().strip()


def start(data_dir: Path | str, port: int = 8080, host: str = "127.0.0.1",
          document_root: str = "/", username: str = "admin@example.com",
          venv: Path | None = None, log: Path | str | None = None) -> subprocess.Popen:
    """Starts Label Studio (its `label-studio start`) and returns the process; `wait_up` waits
    for it. The user's key: `key_file(data_dir)`; the password: `<data_dir>/password`."""
    venv = Path(venv or ls_loop.venv_dir())
    data_dir = Path(data_dir).resolve()
    key = _secret(key_file(data_dir), lambda: secrets.token_hex(20))
    password = _secret(data_dir / "password", lambda: secrets.token_urlsafe(12))
    if not (data_dir / DB_NAME).exists() and template_db(venv).is_file():
        with io_utils.atomic_path(data_dir / DB_NAME) as part:
            shutil.copyfile(template_db(venv), part)
    env = {**_quiet_env(),
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": document_root}
    # --name=value: a password may begin with "-", which argparse would read as an option
    argv = [str(venv / "bin" / "label-studio"), "start", "--no-browser", f"--data-dir={data_dir}",
            f"--internal-host={host}", f"--port={port}", f"--username={username}",
            f"--password={password}", f"--user-token={key}", "--enable-legacy-api-token"]
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        if log:
            out.close()


def wait_up(url: str, proc: subprocess.Popen | None = None, timeout: float = 180.0) -> float:
    """Waits until Label Studio at `url` answers its health check; the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise CannotContinue(f"Label Studio ended with exit status {proc.returncode} before it answered")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise CannotContinue(f"Label Studio at {url} did not answer within {timeout:g} s")


def stop(proc: subprocess.Popen) -> None:
    """Stops a server `start` started (its whole process group)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
