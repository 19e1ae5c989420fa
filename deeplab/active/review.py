"""The review pass (REVIEW_SHARE): a share of each round's answers asked again of another
annotator, agreement between the two, and the label a region gets when they disagree.

Pure functions of answers (numpy only). Review answers live in the ledger as rows with
`review` 1 (the second answer) or 2 (the third, asked only on a disagreement), `cost` 0: they
are never clicks of the budget, and the ledger's answers in force leave them out.
"""

from __future__ import annotations

import numpy as np

from deeplab.errors import BadInput


def review_subset(n_answers: int, share: float, seed: int, t: int) -> np.ndarray:
    """Positions (sorted) of the round's answers to review: round(share * n), at least one
    when share > 0 and there are answers; seeded by (seed, t)."""
    if not 0 <= share <= 1:
        raise BadInput(f"REVIEW_SHARE must be in [0, 1], got {share}")
    if share == 0 or n_answers == 0:
        return np.zeros(0, np.int64)
    k = min(n_answers, max(1, int(round(share * n_answers))))
    rng = np.random.default_rng([int(seed), int(t), 7_000_003])
    return np.sort(rng.choice(n_answers, k, replace=False))


def noisy(answers: np.ndarray, rate: float, num_classes: int, rng: np.random.Generator,
          ignore_label: int = 255) -> np.ndarray:
    """A simulated annotator's mistakes (ORACLE_NOISE): each class answer is, with probability
    `rate`, replaced by another class drawn uniformly; 'unclear' answers stay."""
    if not 0 <= rate <= 1:
        raise BadInput(f"ORACLE_NOISE must be in [0, 1], got {rate}")
    answers = np.asarray(answers).astype(np.int64)
    flip = (rng.random(len(answers)) < rate) & (answers != ignore_label) & (num_classes > 1)
    other = rng.integers(0, max(1, num_classes - 1), len(answers))
    other = other + (other >= answers)  # any class but the answer itself
    return np.where(flip, other, answers)


def resolve(first: int, second: int, third: int | None, ignore_label: int = 255) -> int:
    """The label of a reviewed region: the first answer when the review agrees; on a
    disagreement, the answer two of three share, else (no third answer, or three different
    ones) unclear."""
    if first == second:
        return first
    if third is None:
        return ignore_label
    if third in (first, second):
        return third
    return ignore_label


def agreement(first, second, num_classes: int, ignore_label: int = 255) -> dict:
    """Raw agreement and Cohen's kappa between first and review answers (classes and
    'unclear' as categories), and the raw agreement per class of the first answer.
    None where nothing was reviewed (never 0); kappa None where it is undefined (every answer
    of both one category)."""
    a = np.asarray(first, np.int64)
    b = np.asarray(second, np.int64)
    if len(a) != len(b):
        raise BadInput("first and review answers differ in number")
    if len(a) == 0:
        return {"reviewed": 0, "agreement": None, "kappa": None, "per_class": {}}
    cats = np.unique(np.concatenate([a, b]))
    po = float(np.mean(a == b))
    pe = float(sum(np.mean(a == c) * np.mean(b == c) for c in cats))
    # one category on both sides: chance agreement is 1 and kappa is undefined (None, not 1)
    kappa = None if pe >= 1.0 else float((po - pe) / (1.0 - pe))
    per_class = {int(c): float(np.mean(b[a == c] == c)) for c in np.unique(a)}
    return {"reviewed": int(len(a)), "agreement": po, "kappa": kappa, "per_class": per_class}
