"""Atomic file writing: every file goes to a temporary name in the same folder, then is renamed,
so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.errors import BadInput


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o22)
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_path(path: Path | str):
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.
    The file gets the mode a plain `open` would give it (0666 less the umask), not the
    temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name is at most 15 + 100 bytes, whatever the length of the name it stands for
    short = path.name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
    fd, tmp = tempfile.mkstemp(prefix=f".{short}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# What reading a damaged .npz raises: truncated (BadZipFile, EOFError), a flipped byte (zlib.error,
# or BadZipFile from the CRC check), a missing array (KeyError), not an .npz (ValueError, OSError).
NPZ_DAMAGE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def read_json_object(path: Path | str, fix: str) -> dict:
    """A JSON file that must hold an object (a manifest, a job's config): its dict, or a
    BadInput naming the file, what is wrong and `fix` (one line, for the scripts' guard)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not text (damaged): {fix}") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column "
                       f"{e.colno}): {fix}") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{path} holds a JSON {type(obj).__name__}, not an object: {fix}")
    return obj


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 [H, W] or [H, W, 3] array, or a uint16 [H, W] array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path | str, array: np.ndarray) -> None:
    write_bytes(path, encode_png(array))
