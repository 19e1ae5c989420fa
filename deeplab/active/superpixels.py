"""Base superpixels (SLIC, SEEDS), oracle superpixels, storage and overlays (sections 1-2)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import regions as R

METHODS = ("slic", "seeds")


def n_segments_for(height: int, width: int, superpixel_size_px: float) -> int:
    """Segment count giving a mean superpixel size of `superpixel_size_px` (the paper: 8192
    for a 1024x2048 image, i.e. 256 px), so smaller images keep comparable superpixels."""
    if superpixel_size_px <= 0:
        raise ValueError(f"superpixel_size_px must be > 0, got {superpixel_size_px}")
    return max(1, int(round(height * width / superpixel_size_px)))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
    return image


def slic(image: np.ndarray, n_segments: int, compactness: float = 10.0) -> np.ndarray:
    """scikit-image SLIC, connectivity enforced; int32 [H, W] contiguous ids 0..n-1."""
    from skimage.segmentation import slic as sk_slic

    image = _check_image(image)
    regions = sk_slic(image, n_segments=int(n_segments), compactness=compactness, start_label=0,
                      enforce_connectivity=True)
    return R.renumber(regions.astype(np.int32))[0]


def seeds(image: np.ndarray, n_segments: int, num_levels: int = 5, prior: int = 3,
          histogram_bins: int = 10, double_step: bool = True, iterations: int = 10) -> np.ndarray:
    """OpenCV contrib SEEDS on the histogram-equalised HSV image (the paper's settings);
    int32 [H, W] contiguous ids 0..n-1."""
    import cv2
    from skimage.exposure import equalize_hist

    image = _check_image(image)
    if not hasattr(cv2, "ximgproc"):
        raise ImportError(
            "cv2.ximgproc is missing: install opencv-contrib-python-headless (and uninstall "
            "opencv-python, which shadows it)")
    h, w = image.shape[:2]
    with warnings.catch_warnings():  # the paper equalises the flattened RGB histogram
        warnings.simplefilter("ignore", UserWarning)
        equalised = equalize_hist(image)
    hsv = cv2.cvtColor(equalised.astype(np.float32), cv2.COLOR_RGB2HSV)
    engine = cv2.ximgproc.createSuperpixelSEEDS(w, h, 3, int(n_segments), num_levels, prior,
                                                histogram_bins, double_step)
    engine.iterate(hsv, iterations)
    return R.renumber(engine.getLabels().astype(np.int32))[0]


def base_superpixels(image: np.ndarray, method: str, n_segments: int) -> np.ndarray:
    if method == "slic":
        return slic(image, n_segments)
    if method == "seeds":
        return seeds(image, n_segments)
    raise ValueError(f"unknown superpixel method '{method}'; valid: {', '.join(METHODS)}")


def oracle_superpixels(label: np.ndarray) -> np.ndarray:
    """Each 4-connected set of equal ground-truth values is one region (ignore pixels form their
    own components); int32 [H, W] ids 0..n-1."""
    from skimage.measure import label as cc_label

    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be [H, W], got shape {label.shape}")
    comps = cc_label(label.astype(np.int32), background=-1, connectivity=1)
    return (comps - 1).astype(np.int32)


# ---------------------------------------------------------------------------- storage
def region_path(directory: Path | str, name: str) -> Path:
    return Path(directory) / f"{name}.npz"


def save_regions(path: Path | str, regions: np.ndarray) -> None:
    """Lossless, pickle-free: `.npz` with one array `regions` (uint16 when ids fit)."""
    regions = R.check_regions(regions)
    dtype = np.uint16 if regions.max() < 2**16 else np.int32
    with io_utils.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, regions=regions.astype(dtype))


def load_regions(path: Path | str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"region map {path} does not exist: run scripts/extract_superpixels.py (base), "
            "scripts/gen_oracle_spx.py (oracle) or scripts/gen_adaptive_spx.py (adaptive) first")
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["regions"].astype(np.int32)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"region map {path} is unreadable ({e}); delete it and regenerate") from e


def overlay(image: np.ndarray, regions: np.ndarray, colour=(1.0, 1.0, 0.0)) -> np.ndarray:
    """uint8 [H, W, 3]: the image with region boundaries drawn."""
    from skimage.segmentation import mark_boundaries

    return (mark_boundaries(image, regions, color=colour) * 255).round().astype(np.uint8)
