"""Region kernels: label-indexed numpy, no Python loop over regions or pixels.

Every stage (merge, statistics, acquisition, annotation, sieving, metrics) uses these.
Conventions: `regions` is an int [H, W] map of non-negative region ids (not necessarily
contiguous); `n` is the number of id slots (`regions.max() + 1` unless given); per-region
arrays are indexed by id and have length `n` (ids that do not occur have size 0).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deeplab.errors import BadInput


# ---------------------------------------------------------------------------- input checks
def check_regions(regions: np.ndarray, name: str = "regions") -> np.ndarray:
    """Returns `regions` as a contiguous int array [H, W]; raises on bad input."""
    regions = np.asarray(regions)
    if regions.ndim != 2:
        raise BadInput(f"{name} must be a 2-D [H, W] id map, got shape {regions.shape}")
    if not np.issubdtype(regions.dtype, np.integer):
        raise BadInput(f"{name} must hold integer ids, got dtype {regions.dtype}")
    if regions.size == 0:
        raise BadInput(f"{name} is empty")
    if np.issubdtype(regions.dtype, np.signedinteger) and regions.min() < 0:
        raise BadInput(f"{name} holds negative ids (min {regions.min()}); ids must be >= 0")
    if regions.dtype.itemsize > 4 or regions.dtype == np.uint32:
        if regions.max() >= 2**31:
            raise BadInput(f"{name} ids must be < 2**31, got max {regions.max()}")
    return np.ascontiguousarray(regions, dtype=np.int32) if regions.dtype != np.int64 \
        else np.ascontiguousarray(regions)


def check_probs(probs: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Returns `probs` [H, W, C] (floating point); raises on a wrong shape or dtype."""
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[2] < 2:
        raise BadInput(f"probs must be [H, W, C] with C >= 2, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise BadInput(f"probs must be floating point, got dtype {probs.dtype}")
    if shape is not None and probs.shape[:2] != tuple(shape):
        raise BadInput(
            f"probs are {probs.shape[0]}x{probs.shape[1]} but the region map is "
            f"{shape[0]}x{shape[1]}: resize the probabilities to the map's size"
        )
    if probs.shape[2] > 255:
        raise BadInput(f"at most 255 classes are supported, got {probs.shape[2]}")
    # NaN and non-positive maxima are caught by check_top2, on the pass that is made anyway.
    return probs


def num_slots(regions: np.ndarray, n: int | None = None) -> int:
    m = int(regions.max()) + 1
    if n is None:
        return m
    if n < m:
        raise BadInput(f"n={n} is smaller than regions.max() + 1 = {m}")
    return int(n)


# ---------------------------------------------------------------------------- reductions
def sizes(regions: np.ndarray, n: int | None = None) -> np.ndarray:
    """int64 [n]: pixels per region."""
    return np.bincount(regions.ravel(), minlength=num_slots(regions, n))


def sums(regions: np.ndarray, values: np.ndarray, n: int | None = None) -> np.ndarray:
    """float64 [n] or [n, K]: per-region sums of a per-pixel value [H, W] or [H, W, K]."""
    n = num_slots(regions, n)
    flat = regions.ravel()
    if values.ndim == regions.ndim:
        return np.bincount(flat, weights=values.ravel(), minlength=n)
    # A sparse [n, H*W] indicator matrix times [H*W, K]: one pass, no per-column bincount.
    # In CSC form each pixel's column holds one entry, so the matrix costs nothing to build.
    from scipy import sparse

    k = values.shape[-1]
    indicator = sparse.csc_matrix(
        (np.ones(flat.size, np.float32), flat, np.arange(flat.size + 1)), shape=(n, flat.size))
    cols = values.reshape(-1, k)
    if cols.dtype != np.float64:
        cols = cols.astype(np.float32, copy=False)  # float32 products, no 2x float64 copy
    return np.asarray(indicator @ cols, dtype=np.float64)


def means(regions: np.ndarray, values: np.ndarray, n: int | None = None,
          size: np.ndarray | None = None) -> np.ndarray:
    """float64 [n] or [n, K]: per-region means (0 for empty ids); pass `size` if known."""
    n = num_slots(regions, n)
    s = sums(regions, values, n)
    cnt = (sizes(regions, n) if size is None else size).astype(np.float64)
    cnt = np.maximum(cnt, 1.0)
    return s / (cnt if s.ndim == 1 else cnt[:, None])


def histograms(regions: np.ndarray, classes: np.ndarray, num_classes: int, n: int | None = None) -> np.ndarray:
    """int64 [n, num_classes]: per-region counts of a per-pixel class (pair encoding).

    `classes` values must lie in 0..num_classes-1.
    """
    n = num_slots(regions, n)
    code = regions.ravel().astype(np.int64) * num_classes + classes.ravel()
    return np.bincount(code, minlength=n * num_classes).reshape(n, num_classes)


def majority(hist: np.ndarray) -> np.ndarray:
    """int [n]: most frequent class per row of a histogram; ties go to the smaller class."""
    return np.argmax(hist, axis=1)


# ---------------------------------------------------------------------------- structure
def adjacency(regions: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of 4-adjacent regions with their boundary lengths.

    Returns:
      pairs: int64 [E, 2], `a < b`, sorted, each pair once.
      lengths: int64 [E], number of 4-neighbour pixel pairs across the boundary of (a, b).
    """
    n = num_slots(regions, n)
    r = regions.astype(np.int64, copy=False)
    codes = []
    for a, b in ((r[:, :-1], r[:, 1:]), (r[:-1, :], r[1:, :])):
        diff = a != b
        lo = np.minimum(a[diff], b[diff])
        hi = np.maximum(a[diff], b[diff])
        codes.append(lo * n + hi)
    code = np.concatenate(codes)
    uniq, counts = np.unique(code, return_counts=True)
    return np.stack([uniq // n, uniq % n], axis=1), counts


def boundary_lengths(regions: np.ndarray, n: int | None = None) -> np.ndarray:
    """int64 [n]: per region, its pixels that touch another region (4-neighbourhood); the
    image border does not count. What an annotator's eye follows to see the region."""
    regions = np.asarray(regions)
    n = num_slots(regions, n)
    edge = np.zeros(regions.shape, bool)
    dy = regions[1:] != regions[:-1]
    dx = regions[:, 1:] != regions[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return np.bincount(regions[edge].ravel(), minlength=n)[:n].astype(np.int64)


def base_counts(regions: np.ndarray, base: np.ndarray, n: int | None = None) -> np.ndarray:
    """int64 [n]: per region, how many base superpixels have pixels in it (1: not merged)."""
    regions, base = np.asarray(regions), np.asarray(base)
    if regions.shape != base.shape:
        raise BadInput(f"regions {regions.shape} and base map {base.shape} differ in shape")
    n = num_slots(regions, n)
    pairs = np.unique(regions.astype(np.int64).ravel() * (int(base.max()) + 1) + base.ravel())
    return np.bincount(pairs // (int(base.max()) + 1), minlength=n)[:n].astype(np.int64)


def csr_neighbours(pairs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric adjacency in CSR form: neighbours of i are `indices[indptr[i]:indptr[i+1]]`.

    Returns (indptr [n+1], indices [2E], edge [2E]) where `edge` maps each entry back to the
    row of `pairs` it came from.
    """
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    edge = np.concatenate([np.arange(len(pairs)), np.arange(len(pairs))])
    order = np.lexsort((dst, src))
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return indptr, dst[order], edge[order]


def renumber(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous ids 0..k-1 in order of the old ids.

    Returns (new map int32 [H, W], lut [n] old id -> new id, -1 for ids that do not occur).
    """
    present = np.bincount(regions.ravel()) > 0
    lut = np.cumsum(present, dtype=np.int64) - 1
    lut[~present] = -1
    return lut[regions].astype(np.int32), lut


def offsets(counts: np.ndarray) -> np.ndarray:
    """Global-id offsets from per-image region counts: image i's region j is `offsets[i] + j`."""
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


# ---------------------------------------------------------------------------- per pixel
def top2(probs: np.ndarray, chunk_px: int = 16384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: argmax class (first on ties), largest and second-largest value.

    Works on cache-sized blocks of pixels transposed to [C, k], so every step is a contiguous
    vector operation (about 3x faster than `argmax` + `partition` on [N, C] rows). NaN in a
    pixel's vector propagates to its `best`, which `check_top2` then reports.

    Args:
      probs: float [..., C] with C <= 255.

    Returns:
      arg uint8 [...], best float32 [...], second float32 [...].
    """
    c = probs.shape[-1]
    flat = probs.reshape(-1, c)
    n = flat.shape[0]
    arg = np.empty(n, np.uint8)
    best = np.empty(n, np.float32)
    second = np.empty(n, np.float32)
    blk = np.empty((c, min(n, chunk_px)), np.float32)
    tmp = np.empty(blk.shape[1], np.float32)
    gt = np.empty(blk.shape[1], bool)
    for s in range(0, n, chunk_px):
        e = min(n, s + chunk_px)
        k = e - s
        bl = blk[:, :k]
        np.copyto(bl, flat[s:e].T)
        b, sc, a = best[s:e], second[s:e], arg[s:e]
        b[:] = bl[0]
        sc[:] = -np.inf
        a[:] = 0
        t, g = tmp[:k], gt[:k]
        for j in range(1, c):  # loop over classes, vectorised over pixels
            x = bl[j]
            np.greater(x, b, out=g)
            np.copyto(a, j, where=g)
            np.minimum(b, x, out=t)
            np.maximum(sc, t, out=sc)
            np.maximum(b, x, out=b)
    shape = probs.shape[:-1]
    return arg.reshape(shape), best.reshape(shape), second.reshape(shape)


def check_top2(best: np.ndarray) -> None:
    """Raises if the per-pixel maxima reveal NaN, infinite or non-positive probabilities."""
    if not np.isfinite(best).all():
        bad = int(np.count_nonzero(~np.isfinite(best)))
        raise BadInput(
            f"probs hold NaN or infinite values at {bad} pixels; check the model's output")
    if best.min() <= 0:
        raise BadInput("probs have a pixel whose largest value is <= 0; pass softmax outputs")


def ratio_from_top2(best: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.divide(second, best, out=np.zeros_like(best), where=best > 0)


# ---------------------------------------------------------------------------- statistics
@dataclasses.dataclass
class RegionStats:
    """Per-region statistics (section 4), arrays indexed by region id.

    Attributes:
      size: int64 [n] pixels per region (0 for ids that do not occur).
      uncertainty: float64 [n] mean second/best ratio over the region's pixels.
      dominant_class: int64 [n] most frequent argmax class (ties: smaller class); -1 if empty.
      class_hist: int64 [n, C] argmax-class counts.
    """

    size: np.ndarray
    uncertainty: np.ndarray
    dominant_class: np.ndarray
    class_hist: np.ndarray

    @classmethod
    def from_sums(cls, size, ratio_sum, class_hist):
        uncertainty = ratio_sum / np.maximum(size, 1)
        dominant = majority(class_hist)
        dominant = np.where(size > 0, dominant, -1)
        return cls(size, uncertainty, dominant, class_hist)

    def aggregate(self, lut: np.ndarray, n: int) -> "RegionStats":
        """Statistics of a coarser map whose region `lut[i]` is the union of regions i."""
        keep = self.size > 0
        tgt = lut[keep]
        size = np.bincount(tgt, weights=self.size[keep], minlength=n).astype(np.int64)
        ratio_sum = np.bincount(tgt, weights=(self.uncertainty * self.size)[keep], minlength=n)
        c = self.class_hist.shape[1]
        code = (tgt[:, None] * c + np.arange(c)).ravel()
        hist = np.bincount(code, weights=self.class_hist[keep].ravel(), minlength=n * c)
        return RegionStats.from_sums(size, ratio_sum, hist.reshape(n, c).astype(np.int64))


def region_statistics(probs: np.ndarray, regions: np.ndarray) -> RegionStats:
    """Size, mean uncertainty and dominant predicted class of every region (section 4).

    Args:
      probs: float [H, W, C] softmax probabilities at the map's resolution.
      regions: int [H, W] region ids >= 0.

    Returns:
      RegionStats with arrays of length `regions.max() + 1`.
    """
    regions = check_regions(regions)
    probs = check_probs(probs, regions.shape)
    n = num_slots(regions)
    arg, best, second = top2(probs)
    check_top2(best)
    ratio = ratio_from_top2(best, second)
    return RegionStats.from_sums(
        sizes(regions, n), sums(regions, ratio, n), histograms(regions, arg, probs.shape[2], n)
    )
