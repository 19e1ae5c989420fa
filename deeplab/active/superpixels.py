"""Base superpixels (SLIC, SEEDS), oracle superpixels, storage and overlays (sections 1-2)."""

from __future__ import annotations

import functools
import warnings

import numpy as np

from deeplab.active import regions as R
from deeplab.errors import BadInput, MissingPackage

METHODS = ("slic", "seeds")


def n_segments_for(height: int, width: int, superpixel_size_px: float) -> int:
    """Segment count giving a mean superpixel size of `superpixel_size_px` (the paper: 8192
    for a 1024x2048 image, i.e. 256 px), so smaller images keep comparable superpixels."""
    if superpixel_size_px <= 0:
        raise BadInput(f"superpixel_size_px must be > 0, got {superpixel_size_px}")
    return max(1, int(round(height * width / superpixel_size_px)))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadInput(f"image must be uint8 [H, W, 3] RGB, got {image.dtype} {image.shape}")
    return image


def slic(image: np.ndarray, n_segments: int, compactness: float = 10.0) -> np.ndarray:
    """scikit-image SLIC, connectivity enforced; int32 [H, W] contiguous ids 0..n-1."""
    from skimage.segmentation import slic as sk_slic

    image = _check_image(image)
    regions = sk_slic(image, n_segments=int(n_segments), compactness=compactness, start_label=0,
                      enforce_connectivity=True)
    return R.renumber(regions.astype(np.int32))[0]


def seeds_hsv(image: np.ndarray) -> np.ndarray:
    """The paper's SEEDS input: the histogram-equalised image as float32 HSV (H in [0, 360],
    S and V in [0, 1])."""
    import cv2
    from skimage.exposure import equalize_hist

    with warnings.catch_warnings():  # the paper equalises the flattened RGB histogram
        warnings.simplefilter("ignore", UserWarning)
        equalised = equalize_hist(_check_image(image))
    return cv2.cvtColor(equalised.astype(np.float32), cv2.COLOR_RGB2HSV)


def seeds_bins(image: np.ndarray, histogram_bins: int) -> np.ndarray:
    """int64 [H, W]: the colour bin OpenCV's SEEDS gives each pixel of a float image. OpenCV
    assumes float channels in [0, 1]: bin = min(int(v * bins), bins - 1) per channel, so
    the hue (0..360) lands in its last bin unless it is below 1 / bins."""
    digits = np.minimum((image * np.float32(histogram_bins)).astype(np.int64), histogram_bins - 1)
    bins = np.zeros(image.shape[:2], np.int64)
    for c in range(image.shape[2]):
        bins = bins * histogram_bins + digits[..., c]
    return bins


def seeds_grid(height: int, width: int, n_segments: int) -> tuple[int, int]:
    """The superpixel grid (rows, columns) OpenCV's SEEDS starts from for `n_segments`."""
    n = max(int(n_segments), 10)  # OpenCV raises smaller counts to 10
    rows = int(np.sqrt(np.float32(n) * height / width))
    return rows, rows * width // height


def max_superpixels(height: int, width: int, method: str) -> int:
    """The most superpixels `method` can make on a height x width image: one per pixel for
    SLIC; for SEEDS, a grid whose blocks still split once (2x2 px), beyond which OpenCV's
    level search never ends."""
    if method != "seeds":
        return height * width

    def fits(n):
        rows, cols = seeds_grid(height, width, n)
        return 1 <= rows and 1 <= cols and width / cols / 2 >= 1 and height / rows / 2 >= 1

    lo, hi = 0, height * width
    while lo < hi:  # the largest n that fits (fits is monotone in n)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def check_superpixel_count(height: int, width: int, method: str, n_segments: int, what: str = "") -> None:
    """Raises ValueError when an image cannot hold `n_segments` superpixels of `method`."""
    limit = max_superpixels(height, width, method)
    if n_segments > limit:
        raise BadInput(
            f"NUM_SUPERPIXELS={n_segments} is more than {method.upper()} can make on "
            f"{what or 'an image'} of {height}x{width} px (at most {limit}); lower NUM_SUPERPIXELS, "
            f"or set it to 0 for one superpixel per 256 px")


# Intersections of SEEDS histograms are sums of products of pixel counts; while these stay
# below 2**24 every float32 sum is an exact integer, so the order of the bins cannot change a
# decision. Mean superpixel sizes up to this bound keep them there with a margin of 4.
_EXACT_RELABEL_MAX_PX = 2048


def seeds(image: np.ndarray, n_segments: int, num_levels: int = 5, prior: int = 3,
          histogram_bins: int = 10, double_step: bool = True, iterations: int = 10) -> np.ndarray:
    """OpenCV contrib SEEDS on the histogram-equalised HSV image (the paper's settings);
    int32 [H, W] contiguous ids 0..n-1.

    Fast exact path: SEEDS only sees each pixel's colour bin, and its cost grows with the
    histogram size (bins ** 3 = 1000 at the paper's settings, held by every block of every
    level: with 5 levels the finest blocks are single pixels). An image uses far fewer bins
    (the hue lands in its last bin almost everywhere), so the bins it uses are numbered
    0..K-1 in order and handed to SEEDS as one channel of K bins: the same superpixels as
    OpenCV on the HSV image (checked in tests/test_superpixels.py), about 12x faster at
    1024x2048.
    """
    import cv2

    image = _check_image(image)
    if not hasattr(cv2, "ximgproc"):
        raise MissingPackage(
            "cv2.ximgproc is missing: install opencv-contrib-python-headless (and uninstall "
            "opencv-python, which shadows it)")
    h, w = image.shape[:2]
    check_superpixel_count(h, w, "seeds", int(n_segments))
    hsv = seeds_hsv(image)
    if h * w / max(int(n_segments), 10) > _EXACT_RELABEL_MAX_PX:
        return seeds_opencv(hsv, n_segments, num_levels, prior, histogram_bins, double_step, iterations)
    used, index = np.unique(seeds_bins(hsv, histogram_bins), return_inverse=True)
    k = len(used)
    # One uint16 channel: OpenCV bins it as v * k // 65536, which gives back index exactly.
    codes = ((np.arange(k, dtype=np.int64) * 65536 + k - 1) // k).astype(np.uint16)
    engine = cv2.ximgproc.createSuperpixelSEEDS(w, h, 1, int(n_segments), num_levels, prior,
                                                max(k, 2), double_step)
    engine.iterate(codes[index.reshape(h, w)], iterations)
    return R.renumber(engine.getLabels().astype(np.int32))[0]


def seeds_opencv(hsv: np.ndarray, n_segments: int, num_levels: int = 5, prior: int = 3,
                 histogram_bins: int = 10, double_step: bool = True, iterations: int = 10) -> np.ndarray:
    """OpenCV's SEEDS on a float32 HSV image as the paper called it (the slow reference)."""
    import cv2

    h, w = hsv.shape[:2]
    check_superpixel_count(h, w, "seeds", int(n_segments))
    engine = cv2.ximgproc.createSuperpixelSEEDS(w, h, 3, int(n_segments), num_levels, prior,
                                                histogram_bins, double_step)
    engine.iterate(np.ascontiguousarray(hsv, np.float32), iterations)
    return R.renumber(engine.getLabels().astype(np.int32))[0]


# How far the delivered count may fall from the count asked before the call is adjusted (and,
# where no call gets closer, before the extraction warns).
COUNT_TOLERANCE = 0.10
SEEDS_LEVELS = 5  # the paper's


@functools.lru_cache(maxsize=256)
def seeds_grid_count(height: int, width: int, n_segments: int, num_levels: int) -> int:
    """Superpixels OpenCV's SEEDS makes on a height x width image when asked for `n_segments`
    with `num_levels` levels: its top-level blocks (`getNumberOfSuperpixels` before iterating;
    iterations move pixels between them, never add or remove one)."""
    import cv2

    engine = cv2.ximgproc.createSuperpixelSEEDS(width, height, 1, int(n_segments), int(num_levels), 3, 2, True)
    return int(engine.getNumberOfSuperpixels())


@functools.lru_cache(maxsize=256)
def seeds_request(height: int, width: int, n_segments: int) -> tuple[int, int]:
    """(count to ask OpenCV, levels): the SEEDS call that delivers closest to `n_segments` on a
    height x width image.

    OpenCV's SEEDS starts from a grid of blocks that its level pyramid must divide: a block of
    the finest level is at least one pixel, so the top-level blocks are multiples of
    2 ** (levels - 1) px and the count it makes is far below the count asked on sizes the grid
    does not fit (35 of 168 at 180x240 with 5 levels). The paper's call (the count asked, 5
    levels) is kept whenever it delivers within COUNT_TOLERANCE (Cityscapes' 1024x2048 with 8192
    does: the original's superpixels, exactly); otherwise the count asked of OpenCV is searched
    over the grids it can start from, first with 5 levels, then 4, 3, 2 (fewer levels: finer
    steps of block size), and the call delivering closest wins (ties: more levels, then the
    request nearer the count asked)."""
    n = max(int(n_segments), 1)
    paper = seeds_grid_count(height, width, n, SEEDS_LEVELS)
    if abs(paper - n) <= COUNT_TOLERANCE * n:
        return n, SEEDS_LEVELS
    limit = max_superpixels(height, width, "seeds")
    # every grid OpenCV can start from: rows r needs a request of about r * r * width / height
    requests = {n} | {int(np.ceil(r * r * width / height)) + d
                      for r in range(1, int(np.sqrt(4 * n * height / width)) + 2) for d in (0, 1)}
    requests = sorted(m for m in requests if 10 <= m <= limit) or [n]
    best = None
    for levels in (SEEDS_LEVELS, 4, 3, 2):
        for m in requests:
            got = seeds_grid_count(height, width, m, levels)
            key = (abs(got - n), -levels, abs(m - n))
            if best is None or key < best[0]:
                best = (key, m, levels)
        if best[0][0] <= COUNT_TOLERANCE * n:
            break
    return best[1], best[2]


def slic_matched(image: np.ndarray, n_segments: int, max_tries: int = 3) -> np.ndarray:
    """SLIC with the count asked of scikit-image corrected until it delivers within
    half of COUNT_TOLERANCE of `n_segments` (its grid and the connectivity step make fewer: 86-91 %
    at 180x240 with 168 asked): at most `max_tries` calls, each asking n * asked / delivered; the
    call delivering closest is kept."""
    asked, best = int(n_segments), None
    for _ in range(max_tries):
        regions = slic(image, asked)
        got = int(regions.max()) + 1
        if best is None or abs(got - n_segments) < abs(best[1] - n_segments):
            best = (regions, got)
        if abs(got - n_segments) <= COUNT_TOLERANCE / 2 * n_segments:
            break
        asked = max(1, int(round(asked * n_segments / got)))
    return best[0]


def base_superpixels(image: np.ndarray, method: str, n_segments: int, what: str = "") -> np.ndarray:
    """The base superpixels of one image, about `n_segments` of them (within COUNT_TOLERANCE
    wherever the method can make that many: see seeds_request and slic_matched)."""
    check_superpixel_count(image.shape[0], image.shape[1], method, int(n_segments), what)
    if method == "slic":
        return slic_matched(image, n_segments)
    if method == "seeds":
        asked, levels = seeds_request(image.shape[0], image.shape[1], int(n_segments))
        return seeds(image, asked, num_levels=levels)
    raise BadInput(f"unknown superpixel method '{method}'; valid: {', '.join(METHODS)}")


def oracle_superpixels(label: np.ndarray) -> np.ndarray:
    """Each 4-connected set of equal ground-truth values is one region (ignore pixels form their
    own components); int32 [H, W] ids 0..n-1."""
    from skimage.measure import label as cc_label

    label = np.asarray(label)
    if label.ndim != 2:
        raise BadInput(f"label must be [H, W], got shape {label.shape}")
    comps = cc_label(label.astype(np.int32), background=-1, connectivity=1)
    return (comps - 1).astype(np.int32)


def overlay(image: np.ndarray, regions: np.ndarray, colour=(1.0, 1.0, 0.0)) -> np.ndarray:
    """uint8 [H, W, 3]: the image with region boundaries drawn."""
    from skimage.segmentation import mark_boundaries

    return (mark_boundaries(image, regions, color=colour) * 255).round().astype(np.uint8)
