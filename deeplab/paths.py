"""Default locations, derived from the package location (an editable install keeps them in the
repository). Every script also takes explicit flags for these."""

from pathlib import Path

from deeplab.errors import MissingFile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = PROJECT_ROOT / "datasets"
MODELS_DIR = PROJECT_ROOT / "models"


def require_checkpoint(path: Path | str, setting: str) -> None:
    """Raises FileNotFoundError unless `path` is a weights file or a TF1 checkpoint prefix."""
    p = Path(path)
    if not (p.is_file() or Path(str(p) + ".index").is_file()):
        raise MissingFile(
            f"{setting} {p} does not exist: convert a DeepLab checkpoint with "
            "scripts/convert_checkpoint.py, or leave it empty to start from scratch")
