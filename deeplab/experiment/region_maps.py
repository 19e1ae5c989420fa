"""Region maps on disk: the one reader and the one writer of every map (base, oracle and the
round maps with their statistics). One `.npz` per image, lossless and pickle-free: `regions`
(uint16 when the ids fit, else int32) and, for round maps, `size`, `uncertainty`,
`dominant_class`. Written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import regions as R

STATS = ("size", "uncertainty", "dominant_class")


def path(directory: Path | str, name: str) -> Path:
    """The map of image `name` (names may contain `city/`) inside `directory`."""
    return Path(directory) / f"{name}.npz"


def save(file: Path | str, regions: np.ndarray, stats: R.RegionStats | None = None) -> None:
    regions = R.check_regions(regions)
    arrays = {"regions": regions.astype(np.uint16 if regions.max() < 2**16 else np.int32)}
    if stats is not None:
        arrays.update({k: getattr(stats, k) for k in STATS})
    with io_utils.atomic_path(file) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _open(file: Path):
    if not file.is_file():
        raise FileNotFoundError(
            f"region map {file} does not exist: run scripts/extract_superpixels.py (base), "
            "scripts/gen_oracle_spx.py (oracle) or scripts/gen_adaptive_spx.py (adaptive) first")
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"region map {file} is unreadable ({e}); delete it and regenerate") from e


def load(file: Path | str) -> np.ndarray:
    """int32 [H, W] region ids."""
    file = Path(file)
    with _open(file) as z:
        try:
            return z["regions"].astype(np.int32)
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"region map {file} is unreadable ({e}); delete it and regenerate") from e


def load_with_stats(file: Path | str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(regions int32 [H, W], {size, uncertainty, dominant_class}) of a round map."""
    file = Path(file)
    with _open(file) as z:
        try:
            return z["regions"].astype(np.int32), {k: z[k] for k in STATS}
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"round map {file} is unreadable or lacks its statistics ({e}); "
                             "delete it and rerun the regions stage") from e
