"""Default locations, derived from the package location (an editable install keeps them in the
repository). Every script also takes explicit flags for these."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = PROJECT_ROOT / "datasets"
MODELS_DIR = PROJECT_ROOT / "models"
