"""Acquisition (algorithms.md section 5): which regions to ask next.

Scoring is split into compute (`*_scores`), eligibility, and rank-and-spend (`select`).
Regions of all images form one pool; global ids come from per-image offsets.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

ACQUISITIONS = ("random", "uncertainty", "class_balanced")


def unit_cost(size: np.ndarray) -> np.ndarray:
    """The paper's cost model: one click per region, whatever its size."""
    return np.ones(len(size), np.int64)


COST_MODELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"click": unit_cost}


def class_balanced_scores(uncertainty, dominant_class, size, num_classes) -> np.ndarray:
    """The paper's size-aware, class-balanced score for a pool of regions.

    `U'` = uncertainty min-max normalised over the pool (all ones when the pool's uncertainty
    is constant); `p_c` = share of the pool's pixels whose region's dominant class is c;
    score = `U' * exp(-p_{dominant class})`.

    Args:
      uncertainty: float [N] mean second/best ratio per region.
      dominant_class: int [N] dominant predicted class per region (0..num_classes-1).
      size: int [N] pixels per region.
      num_classes: C.

    Returns:
      float64 [N] scores.
    """
    u = np.asarray(uncertainty, np.float64)
    c = np.asarray(dominant_class, np.int64)
    n = np.asarray(size, np.float64)
    if not (len(u) == len(c) == len(n)):
        raise ValueError(f"pool arrays disagree in length: {len(u)}, {len(c)}, {len(n)}")
    if len(u) == 0:
        return np.zeros(0)
    if not np.isfinite(u).all():
        raise ValueError("uncertainty holds NaN or infinite values")
    if c.min() < 0 or c.max() >= num_classes:
        raise ValueError(f"dominant_class values must be in 0..{num_classes - 1}, got {c.min()}..{c.max()}")
    span = u.max() - u.min()
    u_norm = (u - u.min()) / span if span > 0 else np.ones_like(u)
    pixels = np.bincount(c, weights=n, minlength=num_classes)
    total = pixels.sum()
    p = pixels / total if total > 0 else np.zeros(num_classes)
    return u_norm * np.exp(-p)[c]


@dataclasses.dataclass
class Selection:
    """Chosen regions, in the order taken (by descending score)."""

    index: np.ndarray  # int64 [K] positions in the pool
    cost: np.ndarray  # int64 [K]
    score: np.ndarray  # float64 [K]
    budget: int
    spent: int
    pool_size: int  # eligible regions
    exhausted: bool  # the budget exceeded what the eligible pool costs


def select(scores: np.ndarray, eligible: np.ndarray, image_index: np.ndarray, region_id: np.ndarray,
           cost: np.ndarray, budget_clicks: int) -> Selection:
    """Takes eligible regions by descending score (ties: image order, then region id) until
    the budget is spent: the longest prefix of that order whose total cost fits."""
    if int(budget_clicks) != budget_clicks or budget_clicks < 1:
        raise ValueError(f"the budget must be a positive integer number of clicks, got {budget_clicks}")
    scores = np.asarray(scores, np.float64)
    if np.isnan(scores).any():
        raise ValueError("acquisition scores hold NaN")
    idx = np.flatnonzero(eligible)
    order = idx[np.lexsort((region_id[idx], image_index[idx], -scores[idx]))]
    spend = np.cumsum(cost[order])
    take = order[spend <= budget_clicks]
    spent = int(cost[take].sum())
    exhausted = len(take) == len(order) and (len(order) == 0 or spend[-1] <= budget_clicks)
    return Selection(take, cost[take], scores[take], int(budget_clicks), spent, len(idx),
                     bool(exhausted and spent < budget_clicks))


def compute_scores(method: str, uncertainty, dominant_class, size, num_classes, rng) -> np.ndarray:
    if method == "random":
        return rng.permutation(len(size)).astype(np.float64)  # a seeded shuffle
    if method == "uncertainty":
        return np.asarray(uncertainty, np.float64)
    if method == "class_balanced":
        return class_balanced_scores(uncertainty, dominant_class, size, num_classes)
    raise ValueError(f"unknown acquisition '{method}'; valid: {', '.join(ACQUISITIONS)}")
