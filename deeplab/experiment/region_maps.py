"""Region maps on disk: the one reader and the one writer of every map (base, oracle and the
round maps with their statistics). One `.npz` per image, lossless and pickle-free: `regions`
(uint16 when the ids fit, else int32) and, for round maps, `size`, `uncertainty`,
`dominant_class`. Written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import regions as R
from deeplab.errors import BadInput, MissingFile

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


DAMAGE = io_utils.NPZ_DAMAGE


class DamagedMap(BadInput):
    """A region map that exists but cannot be read; the message names it and the fix."""


def _fix(file: Path) -> str:
    """How a damaged map is made again: a round map by its round's regions stage (the previous
    round's model), a base or oracle map by the superpixel step the drivers run first."""
    for parent in file.parents:  # the map of "city/name" lies in a sub-folder
        if parent.name == "regions" and parent.parent.name.startswith("round_"):
            t = int(parent.parent.name.split("_")[1])
            return (f"rebuild it with `python scripts/gen_adaptive_spx.py --job_dir "
                    f"{parent.parent.parent} --round {t} --repair` (round {t - 1}'s model computes "
                    "it again)")
    return ("run the driver again (its superpixel step rebuilds damaged maps), or "
            "`python scripts/extract_superpixels.py --job_dir <job>`")


def _open(file: Path):
    if not file.is_file():
        raise MissingFile(
            f"region map {file} does not exist: run scripts/extract_superpixels.py (base), "
            "scripts/gen_oracle_spx.py (oracle) or scripts/gen_adaptive_spx.py (adaptive) first")
    try:
        return np.load(file, allow_pickle=False)
    except DAMAGE as e:
        raise DamagedMap(f"region map {file} is damaged ({type(e).__name__}: {e}); {_fix(file)}") from e


def _arrays(file: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    with _open(file) as z:
        try:
            return {k: z[k] for k in names}
        except DAMAGE as e:
            lacks = "its statistics" if len(names) > 1 else "its regions"
            raise DamagedMap(f"region map {file} is damaged or lacks {lacks} "
                             f"({type(e).__name__}: {e}); {_fix(file)}") from e


def load(file: Path | str) -> np.ndarray:
    """int32 [H, W] region ids."""
    return _arrays(Path(file), ("regions",))["regions"].astype(np.int32)


def load_with_stats(file: Path | str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(regions int32 [H, W], {size, uncertainty, dominant_class}) of a round map."""
    arrays = _arrays(Path(file), ("regions",) + STATS)
    return arrays.pop("regions").astype(np.int32), arrays


def readable(file: Path | str, stats: bool = False) -> bool:
    """The map exists and every array of it reads (decompressed, CRC checked)."""
    file = Path(file)
    if not file.is_file():
        return False
    try:
        _arrays(file, ("regions",) + (STATS if stats else ()))
    except DamagedMap:
        return False
    return True
