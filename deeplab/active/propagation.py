"""Answer propagation (docs/method.md section 12): one image's answers of a round carried to
unqueried regions of the same map that are near, alike and predicted as the answer.

Region `r` takes the class `c` of an answered region `a` of the round when all of:
- `r` was not asked this round (its pixels may still be labelled by earlier rounds' answers:
  painting gives those pixels the answer, propagation only the rest);
- `r` is within `hops` steps of `a` in the map's region adjacency graph (4-neighbourhood; any
  region may lie on the path);
- the Jensen-Shannon distance (natural log) between the two regions' mean predicted class
  distributions is below `eps`;
- `c` is not 255 (an unclear answer propagates nothing) and `r`'s dominant predicted class
  (the most frequent argmax class, section 4) is `c`.

Every answered region that passes for `r` carries `r`'s own dominant class, so the class a
region takes never depends on the order of the answers. The model is the one the round's map
was made with (the previous round's); round 0 has none, so nothing propagates in the warm-up.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deeplab.active import adaptive
from deeplab.active import regions as R
from deeplab.errors import BadInput


def check_settings(eps: float, hops: int) -> None:
    if not np.isfinite(eps) or eps <= 0:
        raise BadInput(f"PROPAGATE_EPS must be a positive number, got {eps}")
    if int(hops) != hops or hops < 1:
        raise BadInput(f"PROPAGATE_HOPS must be a whole number >= 1, got {hops}")


@dataclasses.dataclass(frozen=True)
class RegionGraph:
    """What propagation needs of one map under one model: per region its size, mean class
    distribution and dominant class (section 4), and the map's 4-adjacency as a sparse matrix."""

    size: np.ndarray  # int64 [n]
    means: np.ndarray  # float64 [n, C]
    dominant: np.ndarray  # int64 [n], -1 for absent ids
    adjacency: object  # scipy.sparse.csr_matrix [n, n], symmetric


def region_graph(regions: np.ndarray, probs: np.ndarray) -> RegionGraph:
    """The RegionGraph of `regions` under the softmax `probs` [H, W, C]."""
    from scipy import sparse

    regions = R.check_regions(regions)
    probs = R.check_probs(probs, regions.shape)
    if not np.isfinite(probs).all():
        raise BadInput("probs hold NaN or infinite values; check the model's output")
    n = R.num_slots(regions)
    stats = R.region_statistics(probs, regions)
    pairs, _ = R.adjacency(regions, n)
    adjacency = sparse.csr_matrix((np.ones(2 * len(pairs), np.int8),
                                   (np.concatenate([pairs[:, 0], pairs[:, 1]]),
                                    np.concatenate([pairs[:, 1], pairs[:, 0]]))), shape=(n, n))
    return RegionGraph(stats.size, R.means(regions, probs, n, stats.size), stats.dominant_class, adjacency)


def reachable(adjacency, sources: np.ndarray, hops: int) -> np.ndarray:
    """bool [len(sources), n]: region j is within `hops` steps of `sources[k]` in the symmetric
    sparse `adjacency` [n, n] (a region is within 0 steps of itself)."""
    from scipy import sparse

    sources = np.asarray(sources, np.int64)
    n, k = adjacency.shape[0], len(sources)
    if k == 0:
        return np.zeros((0, n), bool)
    reach = sparse.csr_matrix((np.ones(k, np.int8), (np.arange(k), sources)), shape=(k, n))
    frontier = reach
    for _ in range(int(hops)):
        frontier = frontier @ adjacency
        frontier.data[:] = 1
        reach = reach + frontier
        reach.data[:] = 1
    return reach.toarray().astype(bool)


def propagate(regions: np.ndarray, probs: np.ndarray, region_ids, answers, *, eps: float = 0.2,
              hops: int = 1, ignore_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """The regions one image's answers propagate to, and the class each takes.

    Args:
      regions: int [H, W] the round's map (the one the answers were asked in).
      probs: float [H, W, C] the previous round's softmax at the map's size.
      region_ids, answers: the round's answered regions of this image and their answers.
      eps: Jensen-Shannon distance (natural log) below which two regions count as alike.
      hops: how many adjacency steps away a region may be from an answered one.

    Returns:
      (region ids int64 [M] ascending, classes uint8 [M]); no region asked this round is among them.
    """
    check_settings(eps, hops)
    return propagate_on(region_graph(regions, probs), region_ids, answers, eps=eps, hops=hops,
                        ignore_label=ignore_label)


def propagate_on(graph: RegionGraph, region_ids, answers, *, eps: float = 0.2, hops: int = 1,
                 ignore_label: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """`propagate` on a RegionGraph already made (several settings on one map: make it once)."""
    check_settings(eps, hops)
    region_ids = np.asarray(region_ids, np.int64).ravel()
    answers = np.asarray(answers).ravel()
    if len(region_ids) != len(answers):
        raise BadInput(f"{len(region_ids)} region ids but {len(answers)} answers")
    n = len(graph.size)
    if len(region_ids) and (region_ids.min() < 0 or region_ids.max() >= n):
        raise BadInput(f"region ids outside 0..{n - 1}")
    none = np.zeros(0, np.int64), np.zeros(0, np.uint8)
    clear = answers != ignore_label
    src, cls = region_ids[clear], answers[clear].astype(np.int64)
    if not len(src):
        return none
    near = reachable(graph.adjacency, src, hops)  # [K, n]
    near[:, region_ids] = False  # asked this round: never a target
    near[:, graph.size == 0] = False
    near &= graph.dominant[None, :] == cls[:, None]
    k, r = np.nonzero(near)
    if not len(r):
        return none
    close = adaptive.js_distance(graph.means[src[k]], graph.means[r]) < eps
    targets = np.unique(r[close])
    return targets, graph.dominant[targets].astype(np.uint8)
