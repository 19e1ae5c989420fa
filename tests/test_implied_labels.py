"""Propagation (method section 12) and confident pixels (section 13) against literal slow
versions on small maps, and the invariants of a round's training labels with them."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from deeplab.active import labels as L
from deeplab.active import propagation, self_training
from deeplab.errors import BadInput


# ---------------------------------------------------------------------------- slow versions
def slow_propagate(regions, probs, ids, answers, eps, hops, ignore=255):
    """Section 12 word for word: loops over regions, a breadth-first search per answer."""
    n = regions.max() + 1
    h, w = regions.shape
    nbrs = {r: set() for r in range(n)}
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0)):
                yy, xx = y + dy, x + dx
                if yy < h and xx < w and regions[y, x] != regions[yy, xx]:
                    nbrs[regions[y, x]].add(regions[yy, xx])
                    nbrs[regions[yy, xx]].add(regions[y, x])
    mean, dominant = {}, {}
    for r in range(n):
        px = probs[regions == r]
        if not len(px):
            continue
        mean[r] = px.mean(axis=0)
        counts = np.bincount(px.argmax(axis=1), minlength=probs.shape[2])
        dominant[r] = int(np.argmax(counts))  # ties: the smaller class
    out = {}
    for a, c in zip(ids, answers):
        if c == ignore:
            continue
        dist = {a: 0}
        queue = [a]
        while queue:
            u = queue.pop(0)
            if dist[u] == hops:
                continue
            for v in sorted(nbrs[u]):
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        for r in dist:
            if r in ids or r not in mean:
                continue
            if dominant[r] == c and jensenshannon(mean[a], mean[r]) < eps:
                out[r] = c
    keys = sorted(out)
    return np.array(keys, np.int64), np.array([out[k] for k in keys], np.uint8)


def slow_thresholds(probs_list, share, bins=self_training.BINS):
    """Section 13's k_c by its definition: the highest bin with at least `share` of the class's
    pixels at or above it."""
    c = probs_list[0].shape[2]
    arg = np.concatenate([p.reshape(-1, c).argmax(axis=1) for p in probs_list])
    best = np.concatenate([p.reshape(-1, c).max(axis=1) for p in probs_list])
    import math

    per_decade = bins / self_training.DECADES
    b = np.array([min(math.floor(-math.log10(max(1.0 - float(v), 1e-7)) * per_decade), bins - 1)
                  for v in best])
    out = []
    for k in range(c):
        mine = b[arg == k]
        if not len(mine):
            out.append(bins)
            continue
        out.append(max(j for j in range(bins) if (mine >= j).sum() >= share * len(mine)))
    return np.array(out)


def random_case(seed, h=14, w=17, n_regions=12, c=4, peaked=True):
    rng = np.random.default_rng(seed)
    # a blocky map (connected-ish regions) with a few random seeds grown by nearest seed
    pts = rng.integers(0, [h, w], size=(n_regions, 2))
    yy, xx = np.mgrid[:h, :w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    regions = np.argmin(d, axis=-1).astype(np.int32)
    # per-region class tendency so that neighbours are sometimes alike
    tend = rng.integers(0, c, n_regions)
    logits = rng.normal(0, 0.6, (h, w, c))
    if peaked:
        logits[yy, xx, tend[regions]] += 2.5
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    return regions, probs.astype(np.float32), rng


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("hops", [1, 2, 3])
def test_propagation_equals_the_literal_version(seed, hops):
    regions, probs, rng = random_case(seed)
    n = regions.max() + 1
    present = np.unique(regions)
    ids = rng.choice(present, size=min(3, len(present)), replace=False)
    answers = rng.integers(0, probs.shape[2], len(ids)).astype(np.uint8)
    answers[0] = 255 if seed % 4 == 0 else answers[0]
    for eps in (0.05, 0.2, 0.5):
        got = propagation.propagate(regions, probs, ids, answers, eps=eps, hops=hops)
        want = slow_propagate(regions, probs, ids, answers, eps, hops)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert not set(got[0]) & set(ids)
        assert (got[0] < n).all()


def test_propagation_reaches_more_with_looser_settings_and_nothing_from_unclear_answers():
    regions, probs, rng = random_case(5, h=30, w=30, n_regions=40)
    ids = np.array([0, 7, 19])
    dom = np.array([np.bincount(probs[regions == r].argmax(1), minlength=4).argmax() for r in ids])
    sizes = []
    for eps, hops in ((0.05, 1), (0.2, 1), (0.2, 2), (0.7, 3)):
        got, cls = propagation.propagate(regions, probs, ids, dom.astype(np.uint8), eps=eps, hops=hops)
        sizes.append(len(got))
    assert sizes == sorted(sizes) and sizes[-1] > 0
    got, _ = propagation.propagate(regions, probs, ids, np.full(3, 255, np.uint8), eps=0.9, hops=5)
    assert len(got) == 0


def test_propagation_refuses_bad_input():
    regions, probs, _ = random_case(1)
    with pytest.raises(BadInput, match="PROPAGATE_EPS"):
        propagation.propagate(regions, probs, [0], [1], eps=0)
    with pytest.raises(BadInput, match="PROPAGATE_HOPS"):
        propagation.propagate(regions, probs, [0], [1], hops=0)
    with pytest.raises(BadInput, match="region ids outside"):
        propagation.propagate(regions, probs, [999], [1])
    bad = probs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(BadInput, match="NaN"):
        propagation.propagate(regions, bad, [0], [1])


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5, 1.0])
def test_self_training_thresholds_equal_the_literal_version(share):
    rng = np.random.default_rng(int(share * 100))
    probs = []
    for k in range(3):
        logits = rng.normal(0, 1.5, (9, 11, 5))
        logits[..., 4] -= 20  # class 4 is never predicted
        p = np.exp(logits)
        probs.append((p / p.sum(-1, keepdims=True)).astype(np.float32))
    hist = sum(self_training.confidence_histogram(p) for p in probs)
    got = self_training.class_thresholds(hist, share)
    np.testing.assert_array_equal(got, slow_thresholds(probs, share))
    assert got[4] == self_training.BINS
    # each predicted class gives at least `share` of its predicted pixels, and the next bin up
    # would give less
    c = 5
    arg = np.concatenate([p.reshape(-1, c).argmax(1) for p in probs])
    for p in probs:
        lab = self_training.confident_labels(p, got)
        assert set(np.unique(lab)) <= {0, 1, 2, 3, 255}
        taken = lab != 255
        np.testing.assert_array_equal(lab[taken], p.argmax(-1)[taken])
    counts = np.bincount(np.concatenate([self_training.confident_labels(p, got).ravel() for p in probs]),
                         minlength=256)
    for k in range(4):
        assert counts[k] >= share * (arg == k).sum()
    assert self_training.thresholds_as_confidence(got)[4] is None
    taken = self_training.taken_shares(hist, got)
    assert taken[4] is None and all(t >= share for t in taken[:4])


def test_confidence_bins_are_fine_near_certainty():
    b = self_training.confidence_bin(np.array([0.5, 0.9, 0.99, 0.999, 0.9999, 1.0], np.float32))
    assert (np.diff(b) > 100).all() and b[-1] == self_training.BINS - 1
    # a bin's lowest confidence, as reported, falls in that bin
    for k in (0, 17, 400, 2000, self_training.BINS - 1):
        conf = self_training.thresholds_as_confidence([k])[0]
        assert self_training.confidence_bin(np.array([conf + 1e-9 * (1 - conf)]))[0] == k


def test_self_training_refuses_bad_input():
    with pytest.raises(BadInput, match="SELF_TRAIN_SHARE"):
        self_training.class_thresholds(np.zeros((3, self_training.BINS)), 0)
    with pytest.raises(BadInput, match="thresholds for"):
        self_training.confident_labels(np.full((2, 2, 3), 1 / 3), [0, 0])


# ---------------------------------------------------------------------------- the round's labels
def test_training_labels_without_mechanisms_equal_round_labels():
    regions, probs, rng = random_case(3, h=40, w=40, n_regions=20)
    maps = {0: regions, 1: regions[::-1].copy()}
    answers = {0: (np.array([1, 4]), np.array([2, 255], np.uint8)), 1: (np.array([3, 9]), np.array([0, 1], np.uint8))}
    for p in (None, probs):
        painted, labels = L.round_labels(maps, answers, p, curve_points=5, min_size_px=10)
        res = L.training_labels(maps, answers, p, curve_points=5, min_size_px=10)
        np.testing.assert_array_equal(res.painted, painted)
        np.testing.assert_array_equal(res.labels, labels)
        assert set(np.unique(res.source)) <= {L.SOURCE_NONE, L.SOURCE_ANSWER}


@pytest.mark.parametrize("seed", range(6))
def test_implied_labels_never_override_an_answer(seed):
    regions, probs, rng = random_case(seed, h=40, w=40, n_regions=25)
    maps = {0: regions, 1: np.roll(regions, 7, axis=1)}
    ids0 = rng.choice(25, 4, replace=False)
    ids1 = rng.choice(25, 4, replace=False)
    answers = {0: (ids0, rng.integers(0, 4, 4).astype(np.uint8)),
               1: (ids1, np.array([255, 1, 2, 3], np.uint8))}
    prop = {1: propagation.propagate(maps[1], probs, *answers[1], eps=0.6, hops=2)}
    hist = self_training.confidence_histogram(probs)
    confident = self_training.confident_labels(probs, self_training.class_thresholds(hist, 0.5))
    for p in (None, probs):
        base = L.training_labels(maps, answers, p, curve_points=5, min_size_px=10)
        res = L.training_labels(maps, answers, p, curve_points=5, min_size_px=10, propagated=prop, confident=confident)
        footprint = L.covered(maps, answers)
        # inside every answered region (255 answers included), labels are the answers' alone
        np.testing.assert_array_equal(res.labels[footprint], base.labels[footprint])
        np.testing.assert_array_equal(res.painted[footprint], base.painted[footprint])
        # propagated pixels lie in propagated regions and carry their class
        pp = res.source == L.SOURCE_PROPAGATED
        assert not (pp & footprint).any()
        lut = np.full(maps[1].max() + 1, 255, np.uint8)
        lut[prop[1][0]] = prop[1][1]
        np.testing.assert_array_equal(res.painted[pp], lut[maps[1]][pp])
        # confident pixels lie outside answered and propagated regions and carry the model's class
        st = res.source == L.SOURCE_SELF_TRAINED
        assert not (st & (footprint | L.covered(maps, prop))).any()
        np.testing.assert_array_equal(res.labels[st], confident[st])
        # every label has a source; unlabelled pixels have none
        assert ((res.painted != 255) == (res.source != L.SOURCE_NONE)).all()
        assert ((res.labels != 255) <= (res.painted != 255)).all()
        if p is None:
            np.testing.assert_array_equal(res.labels, res.painted)


def test_propagated_regions_are_sieved_like_answers():
    from deeplab.active import sieving

    # a propagated region whose confidence in its class falls off across it
    regions = np.zeros((20, 40), np.int32)
    regions[:, 20:] = 1
    probs = np.zeros((20, 40, 2), np.float32)
    probs[:, :20, 1] = 0.95
    probs[:, 20:, 1] = np.sqrt(np.linspace(0.01, 0.99, 20))
    probs[..., 0] = 1 - probs[..., 1]
    maps = {1: regions}
    answers = {1: (np.array([0]), np.array([1], np.uint8))}
    prop = {1: (np.array([1]), np.array([1], np.uint8))}
    res = L.training_labels(maps, answers, probs, curve_points=20, min_size_px=10, propagated=prop)
    assert (res.source[:, 20:] == L.SOURCE_PROPAGATED).all()
    as_answer = sieving.sieve_labels(regions, [1], [1], probs, curve_points=20, min_size_px=10)
    np.testing.assert_array_equal(res.labels[:, 20:], as_answer[:, 20:])
    assert 0 < (res.labels[:, 20:] == 255).sum() < 400


def test_an_image_without_answers_takes_confident_pixels_only():
    probs = np.zeros((4, 5, 3), np.float32)
    probs[..., 0] = 0.9
    probs[..., 1:] = 0.05
    confident = self_training.confident_labels(probs, np.array([0, 1000, 1000]))
    res = L.training_labels({}, {}, None, confident=confident)
    assert (res.labels == 0).all() and (res.source == L.SOURCE_SELF_TRAINED).all()
    with pytest.raises(BadInput, match="region maps or confident"):
        L.training_labels({}, {})


def test_the_comparison_reports_implied_labels_per_click():
    from deeplab.experiment import compare

    def row(arm, seed, px, prop, prop_wrong, st, st_wrong):
        return {"arm": arm, "seed": seed, "round": 2, "clicks": 100, "miou": 40.0, "labelled_px": px,
                "label_noise_after_sieve": 0.1, "propagated_px": prop, "propagated_wrong_share": prop_wrong,
                "self_trained_px": st, "self_trained_wrong_share": st_wrong}

    rows = [row("paper", 0, 1000, 0, 0.0, 0, 0.0), row("paper", 1, 3000, 0, 0.0, 0, 0.0),
            row("paper_both", 0, 5000, 500, 0.2, 2000, 0.1), row("paper_both", 1, 7000, 700, 0.4, 4000, "n/a")]
    lines = compare._pixels_per_click(rows, ["paper", "paper_both"])
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == ("| arm | round | labelled px / click | label noise | propagated px / click | "
                        "propagated wrong | confident px / click | confident wrong |")
    assert table[2] == "| paper | 2 | 20.0 | 0.1000 | 0.0 | 0.0000 | 0.0 | 0.0000 |"
    assert table[3] == "| paper_both | 2 | 60.0 | 0.1000 | 6.0 | 0.3000 | 30.0 | 0.1000 |"
    # without the mechanisms the table is the paper's as before
    plain = [line for line in compare._pixels_per_click(rows[:2], ["paper"]) if line.startswith("|")]
    assert plain[0] == "| arm | round | labelled px / click | label noise |"
    assert plain[2] == "| paper | 2 | 20.0 | 0.1000 |"
    # the arms exist and carry their mechanisms to the drivers
    assert {("PROPAGATE", "1"), ("SELF_TRAIN", "1"), ("SIEVE", "1")} <= set(compare.arm_values("paper_both").items())
    assert {("PROPAGATE", "0"), ("SELF_TRAIN", "0")} <= set(compare.arm_values("paper").items())
    assert ("paper_both", "paper") in compare.PAIRS


def test_hatching_marks_only_the_given_pixels():
    from deeplab.viz import overlays

    panel = np.full((12, 12, 3), 100.0)
    mask = np.zeros((12, 12), bool)
    mask[2:8, 3:9] = True
    out = overlays.hatch(panel, mask, (255, 255, 255), rising=True)
    changed = (out != panel).any(-1)
    assert changed.any() and not (changed & ~mask).any()
    y, x = np.nonzero(changed)
    assert (((x + y) % 6) < 2).all()  # on rising diagonal lines
    falling = overlays.hatch(panel, mask, (0, 0, 0), rising=False)
    y, x = np.nonzero((falling != panel).any(-1))
    assert (((x - y) % 6) < 2).all() and not np.array_equal(falling, out)
