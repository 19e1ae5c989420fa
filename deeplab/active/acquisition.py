"""Acquisition (docs/method.md section 5): which regions to ask next.

Scoring is split into compute (`*_scores`), eligibility, and rank-and-spend (`select`).
Regions of all images form one pool; global ids come from per-image offsets.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from deeplab.errors import BadInput

ACQUISITIONS = ("random", "uncertainty", "class_balanced")


def unit_cost(size: np.ndarray) -> np.ndarray:
    """The paper's cost model: one click per region, whatever its size."""
    return np.ones(len(size), np.int64)


COST_MODELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"click": unit_cost}
# "measured": seconds per answer predicted by a fit of measured times (`fit_cost_model`), in
# click-equivalents (`MeasuredCost.clicks`); it needs the regions' features, not only sizes.
MEASURED = "measured"
COST_MODEL_NAMES = tuple(COST_MODELS) + (MEASURED,)

# What the selection knows of a region before asking it (`region_features`).
COST_FEATURES = ("log_size", "boundary_per_sqrt_size", "log_base_regions", "uncertainty")


def region_features(size, boundary, base_regions, uncertainty) -> np.ndarray:
    """float64 [n, 4]: log of the size (px), boundary length over sqrt(size) (a
    compact region about 4, more for a ragged one), log of how many base superpixels the region
    merges (0: a base superpixel), and the previous model's mean uncertainty in it."""
    size = np.maximum(np.asarray(size, np.float64), 1.0)
    return np.stack([np.log(size), np.asarray(boundary, np.float64) / np.sqrt(size),
                     np.log(np.maximum(np.asarray(base_regions, np.float64), 1.0)),
                     np.asarray(uncertainty, np.float64)], axis=1)


@dataclasses.dataclass
class MeasuredCost:
    """seconds = intercept + coef . features (least squares on measured answers); one click
    is `unit_seconds` (the median measured answer), so a region costs
    max(1, round(seconds / unit_seconds)) click-equivalents."""

    intercept: float
    coef: list[float]
    unit_seconds: float
    rmse: float = float("nan")
    n: int = 0
    features: tuple[str, ...] = COST_FEATURES

    def seconds(self, features: np.ndarray) -> np.ndarray:
        return np.maximum(self.intercept + np.asarray(features, np.float64) @ np.asarray(self.coef), 0.0)

    def clicks(self, features: np.ndarray) -> np.ndarray:
        return np.maximum(1, np.round(self.seconds(features) / self.unit_seconds)).astype(np.int64)

    def to_json(self) -> dict:
        return {"intercept": self.intercept, "coef": list(self.coef), "unit_seconds": self.unit_seconds,
                "rmse": self.rmse, "n": self.n, "features": list(self.features)}

    @classmethod
    def from_json(cls, d: dict) -> "MeasuredCost":
        if tuple(d.get("features", ())) != COST_FEATURES or len(d.get("coef", ())) != len(COST_FEATURES) \
                or not {"intercept", "unit_seconds"} <= set(d):
            raise BadInput(f"a cost model of features {d.get('features')!r}; this version fits "
                           f"{list(COST_FEATURES)}: fit it again (scripts/fit_cost_model.py)")
        return cls(float(d["intercept"]), [float(v) for v in d["coef"]], float(d["unit_seconds"]),
                   float(d.get("rmse", float("nan"))), int(d.get("n", 0)))


def fit_cost_model(features: np.ndarray, seconds: np.ndarray) -> MeasuredCost:
    """Least-squares fit of seconds per answer on `region_features`; needs more answers than
    features. The error is the fit's root-mean-square residual (in-sample, seconds)."""
    x = np.asarray(features, np.float64)
    y = np.asarray(seconds, np.float64)
    if x.ndim != 2 or x.shape[1] != len(COST_FEATURES) or len(y) != len(x):
        raise BadInput(f"features must be [n, {len(COST_FEATURES)}] and seconds [n]")
    if len(y) <= x.shape[1] + 1:
        raise BadInput(f"{len(y)} timed answers cannot fit {x.shape[1] + 1} parameters; answer "
                       "more regions on the page first")
    if not np.isfinite(x).all() or not np.isfinite(y).all():
        raise BadInput("the features or times hold NaN or infinity")
    design = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    rmse = float(np.sqrt(np.mean((design @ beta - y) ** 2)))
    return MeasuredCost(float(beta[0]), [float(v) for v in beta[1:]], float(np.median(y)), rmse, len(y))


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
        raise BadInput(f"pool arrays disagree in length: {len(u)}, {len(c)}, {len(n)}")
    if len(u) == 0:
        return np.zeros(0)
    if not np.isfinite(u).all():
        raise BadInput("uncertainty holds NaN or infinite values")
    if c.min() < 0 or c.max() >= num_classes:
        raise BadInput(f"dominant_class values must be in 0..{num_classes - 1}, got {c.min()}..{c.max()}")
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
        raise BadInput(f"the budget must be a positive integer number of clicks, got {budget_clicks}")
    scores = np.asarray(scores, np.float64)
    if np.isnan(scores).any():
        raise BadInput("acquisition scores hold NaN")
    idx = np.flatnonzero(eligible)
    order = idx[np.lexsort((region_id[idx], image_index[idx], -scores[idx]))]
    spend = np.cumsum(cost[order])
    take = order[spend <= budget_clicks]
    spent = int(cost[take].sum())
    exhausted = len(take) == len(order) and (len(order) == 0 or spend[-1] <= budget_clicks)
    return Selection(take, cost[take], scores[take], int(budget_clicks), spent, len(idx),
                     bool(exhausted and spent < budget_clicks))


def eligible_regions(size, covered_px) -> np.ndarray:
    """bool [N]: the regions a round may ask (docs/method.md section 5): the region exists
    (size > 0) and fewer than half of its pixels lie in regions answered before."""
    size = np.asarray(size, np.float64)
    covered_px = np.asarray(covered_px, np.float64)
    if size.shape != covered_px.shape:
        raise BadInput(f"size {size.shape} and covered pixels {covered_px.shape} disagree")
    return (size > 0) & (covered_px < size / 2.0)


def pool_scores(method: str, eligible, uncertainty, dominant_class, size, num_classes,
                rng) -> np.ndarray:
    """float64 [N]: `compute_scores` over the eligible regions only (the pool: its min-max
    normalisation and class shares ignore every region that cannot be asked), 0 elsewhere."""
    eligible = np.asarray(eligible, bool)
    scores = np.zeros(len(eligible))
    if eligible.any():
        e = np.flatnonzero(eligible)
        scores[e] = compute_scores(method, np.asarray(uncertainty)[e], np.asarray(dominant_class)[e],
                                   np.asarray(size)[e], num_classes, rng)
    return scores


def budget_clicks(clicks_per_round: int, clicks_percent: float, base_regions_total: int) -> int:
    """Clicks of one round: `clicks_per_round`, or (when `clicks_percent` is set) that share
    of the pool's base superpixels, rounded, at least 1."""
    if clicks_percent:
        return max(1, int(round(base_regions_total * clicks_percent / 100.0)))
    return int(clicks_per_round)


def compute_scores(method: str, uncertainty, dominant_class, size, num_classes, rng) -> np.ndarray:
    if method == "random":
        return rng.permutation(len(size)).astype(np.float64)  # a seeded shuffle
    if method == "uncertainty":
        return np.asarray(uncertainty, np.float64)
    if method == "class_balanced":
        return class_balanced_scores(uncertainty, dominant_class, size, num_classes)
    raise BadInput(f"unknown acquisition '{method}'; valid: {', '.join(ACQUISITIONS)}")
