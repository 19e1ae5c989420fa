"""Adaptive superpixels (docs/method.md section 3): merge base superpixels whose mean predicted
class distributions are close in Jensen-Shannon distance to a seed's.

Exact semantics: regions are visited by descending mean uncertainty (ties: ascending id); an
unclaimed region becomes a seed, claims itself and every unclaimed region reachable through
adjacent unclaimed regions `v` with `JS(m_seed, m_v) < eps` (always the seed's mean).

Cost is O(H*W + E*C): one pass over the pixels for the per-region sums, JS on adjacent pairs,
and a traversal whose Python work is limited to the regions that can merge at all. Two facts
make that exact, not approximate:
- the JS distance is a metric, so two regions that are both within `eps` of one seed are within
  `2 eps` of each other: edges with `JS >= 2 eps` can never be walked, and a region whose
  adjacent edges are all that far stays alone;
- a seed whose every neighbour is at `JS >= eps` absorbs nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deeplab.active import regions as R
from deeplab.errors import BadInput

# Slack for the 2*eps pruning bound against float rounding (only ever keeps more edges).
_PRUNE_SLACK = 1e-6


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance between rows of `p` and `q` (natural log).

    Equals `scipy.spatial.distance.jensenshannon(p, q)` row by row (both are normalised to
    sum 1 first, as scipy does).
    """
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    return _js_normalised(p / p.sum(axis=-1, keepdims=True), q / q.sum(axis=-1, keepdims=True))


def _js_normalised(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    # imported here: the stages that only read cached maps (a driver's resume) skip scipy's start
    from scipy.special import rel_entr

    m = (p + q) / 2.0
    js = (rel_entr(p, m).sum(axis=-1) + rel_entr(q, m).sum(axis=-1)) / 2.0
    return np.sqrt(np.maximum(js, 0.0))


@dataclasses.dataclass
class MergeResult:
    """Output of `adaptive_superpixels`.

    Attributes:
      regions: int32 [H, W] merged map, contiguous ids 0..k-1 (in order of the seeds' base ids).
      seed_of: int64 [n_base] the seed (base id) that claimed each base region (-1 if absent).
      lut: int64 [n_base] base id -> merged id (-1 if absent).
      base_stats: RegionStats of the base map.
      stats: RegionStats of the merged map.
    """

    regions: np.ndarray
    seed_of: np.ndarray
    lut: np.ndarray
    base_stats: R.RegionStats
    stats: R.RegionStats


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not np.isfinite(eps) or eps <= 0:
        raise BadInput(f"eps must be a positive number, got {eps}")
    return eps


def claim_regions(means: np.ndarray, uncertainty: np.ndarray, present: np.ndarray,
                  pairs: np.ndarray, eps: float) -> np.ndarray:
    """The seed process of section 3 on a region graph.

    Args:
      means: float [n, C] mean softmax per region.
      uncertainty: float [n] mean ratio per region.
      present: bool [n] ids that occur in the map.
      pairs: int [E, 2] adjacent region pairs.
      eps: JS-distance threshold.

    Returns:
      int64 [n]: the seed that claimed each region (-1 for absent ids).
    """
    n = len(means)
    means = np.asarray(means, np.float64)
    means = means / np.maximum(means.sum(axis=1, keepdims=True), 1e-300)  # as scipy normalises
    seed_of = np.full(n, -1, np.int64)
    ids = np.flatnonzero(present)
    # Visit order: descending uncertainty, ties by ascending id. Uncertainty is compared at
    # float32 precision, so regions with equal pixels tie exactly despite summation rounding.
    key = np.asarray(uncertainty, np.float64).astype(np.float32)
    order = ids[np.lexsort((ids, -key[ids]))]
    if len(pairs) == 0:
        seed_of[ids] = ids
        return seed_of
    d = _js_normalised(means[pairs[:, 0]], means[pairs[:, 1]])
    keep = d < 2.0 * eps + _PRUNE_SLACK
    cand = pairs[keep]
    d = d[keep]
    indptr, nbr, edge = R.csr_neighbours(cand, n)
    close = d[edge] < eps  # per directed entry: neighbour within eps of this region
    has_close = np.zeros(n, bool)
    has_close[np.repeat(np.arange(n), np.diff(indptr))[close]] = True
    # Regions with no candidate edge at all are alone for good: settle them vectorised.
    degree = np.diff(indptr)
    lonely = present & (degree == 0)
    seed_of[lonely] = np.flatnonzero(lonely)

    # Python traversal over the rest, with plain lists for cheap scalar access.
    claimed = (seed_of >= 0).tolist()
    seed_list = seed_of.tolist()
    has_close_l = has_close.tolist()
    indptr_l = indptr.tolist()
    nbr_l = nbr.tolist()
    close_l = close.tolist()
    for s in order[~lonely[order]].tolist():
        if claimed[s]:
            continue
        claimed[s] = True
        seed_list[s] = s
        if not has_close_l[s]:
            continue  # no neighbour within eps: absorbs nothing
        # First step: the seed's own edge distances are already known.
        frontier = [v for v, c in zip(nbr_l[indptr_l[s]:indptr_l[s + 1]],
                                      close_l[indptr_l[s]:indptr_l[s + 1]]) if c and not claimed[v]]
        for v in frontier:
            claimed[v] = True
            seed_list[v] = s
        ms = means[s]
        while frontier:
            cands = []
            for f in frontier:
                for v in nbr_l[indptr_l[f]:indptr_l[f + 1]]:
                    if not claimed[v]:
                        cands.append(v)
            if not cands:
                break
            cands = list(dict.fromkeys(cands))
            ok = _js_normalised(ms[None, :], means[cands]) < eps
            frontier = [v for v, good in zip(cands, ok.tolist()) if good]
            for v in frontier:
                claimed[v] = True
                seed_list[v] = s
    return np.asarray(seed_list, np.int64)


def adaptive_superpixels(probs: np.ndarray, regions: np.ndarray, eps: float = 0.1) -> MergeResult:
    """Merges a base map with a model's probabilities; also returns both maps' statistics.

    Args:
      probs: float [H, W, C] softmax of the previous round's model at the map's size.
      regions: int [H, W] base superpixel ids (>= 0).
      eps: JS-distance threshold (> 0).
    """
    regions = R.check_regions(regions)
    probs = R.check_probs(probs, regions.shape)
    eps = _check_eps(eps)
    n = R.num_slots(regions)
    arg, best, second = R.top2(probs)
    R.check_top2(best)
    ratio = R.ratio_from_top2(best, second)
    size = R.sizes(regions, n)
    base_stats = R.RegionStats.from_sums(
        size, R.sums(regions, ratio, n), R.histograms(regions, arg, probs.shape[2], n))
    means = R.means(regions, probs, n, size)
    present = size > 0
    row_sums = means[present].sum(axis=1)
    if means[present].min() < 0 or np.abs(row_sums - 1).max() > 1e-3:
        raise BadInput(
            "probs are not probability vectors (negative values or sums far from 1, e.g. "
            f"{row_sums[np.argmax(np.abs(row_sums - 1))]:.4f}): pass softmax outputs, not logits")
    pairs, _ = R.adjacency(regions, n)
    seed_of = claim_regions(means, base_stats.uncertainty, present, pairs, eps)
    # Contiguous merged ids in order of the seeds' base ids.
    is_seed = np.zeros(n, bool)
    is_seed[seed_of[seed_of >= 0]] = True
    seed_rank = np.cumsum(is_seed) - 1
    lut = np.where(seed_of >= 0, seed_rank[np.maximum(seed_of, 0)], -1)
    k = int(is_seed.sum())
    merged = lut[regions].astype(np.int32)
    return MergeResult(merged, seed_of, lut, base_stats, base_stats.aggregate(lut, k))


def merge_superpixels(probs: np.ndarray, regions: np.ndarray, eps: float = 0.1) -> np.ndarray:
    """Adaptive superpixels of one image (docs/method.md section 3).

    Args:
      probs: float [H, W, C] softmax probabilities at the map's resolution.
      regions: int [H, W] base superpixel ids (>= 0).
      eps: Jensen-Shannon distance threshold (natural log), > 0.

    Returns:
      int32 [H, W] merged region map with contiguous ids; every merged region is a union of
      base regions.
    """
    return adaptive_superpixels(probs, regions, eps).regions
