"""Default locations, derived from the package location (an editable install keeps them in the
repository). Every script also takes explicit flags for these."""

from pathlib import Path

from deeplab.errors import BadInput, MissingFile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = PROJECT_ROOT / "datasets"
MODELS_DIR = PROJECT_ROOT / "models"


def require_checkpoint(path: Path | str, setting: str) -> None:
    """Raises unless `path` is a weights file (.npz: a zip of arrays) or a TF1 checkpoint prefix
    (`path`.index beside it), so that a wrong file is refused when the job starts, not at its
    first training."""
    import zipfile

    p = Path(path)
    if Path(str(p) + ".index").is_file():
        return
    if not p.is_file():
        raise MissingFile(
            f"{setting} {p} does not exist: convert a DeepLab checkpoint with "
            "scripts/convert_checkpoint.py, or leave it empty to start from scratch")
    if p.suffix != ".npz":
        raise BadInput(
            f"{setting} {p} is neither a weights file (.npz, from scripts/convert_checkpoint.py or a "
            f"finished round) nor a TF1 checkpoint prefix (no {p}.index beside it): name the "
            "checkpoint's prefix (model.ckpt, not model.ckpt.data-00000-of-00001) or the .npz")
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise BadInput(f"{setting} {p} is not a readable weights file ({e}): copy or convert it "
                       "again (scripts/convert_checkpoint.py)") from None
    if not names or not all(n.endswith(".npy") for n in names):
        raise BadInput(f"{setting} {p} holds no weight arrays (a zip of other files): name the .npz "
                       "that scripts/convert_checkpoint.py or a finished round wrote")
