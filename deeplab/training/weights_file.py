"""Reading a weights `.npz` (converted, stand-in or a trained round's), without TensorFlow: a
driver that only checks that the stand-in is there and whole starts in a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab.errors import BadInput


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a weights `.npz`; a damaged file is a BadInput naming it and the fix."""
    from deeplab.io_utils import NPZ_DAMAGE

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except NPZ_DAMAGE as e:
        if path.name.startswith("standin_"):
            fix = ("delete it and run the driver again: the stand-in is built again, identically "
                   "(python scripts/build_standin.py)")
        elif path.name == "final_weights.npz" and path.parent.name == "train" \
                and path.parent.parent.name.startswith("round_"):
            fix = (f"this round's own training wrote it: delete {path.parent} and run the driver "
                   "again, and the round trains again (the same seed gives the same weights)")
        else:
            fix = ("copy it again from where it came from, or convert the checkpoint again "
                   "(python scripts/convert_checkpoint.py)")
        raise BadInput(f"weights file {path} is damaged ({type(e).__name__}: {e}): {fix}") from None
