"""Acquisition, answers, painting and sieving against their definitions."""

import dataclasses
import warnings

import numpy as np
import pytest
from kneed import KneeLocator

from deeplab.active import acquisition, sieving
from deeplab.experiment import ledger
from deeplab.active import labels as L, oracle


def test_class_balanced_scores_match_formula():
    rng = np.random.default_rng(0)
    n, c = 200, 6
    u = rng.uniform(0.1, 0.9, n)
    dom = rng.integers(0, c, n)
    size = rng.integers(1, 1000, n)
    got = acquisition.class_balanced_scores(u, dom, size, c)
    for j in range(0, n, 17):
        share = size[dom == dom[j]].sum() / size.sum()
        expected = (u[j] - u.min()) / (u.max() - u.min()) * np.exp(-share)
        assert got[j] == pytest.approx(expected, rel=1e-12)
    # size-aware: moving pixels into class 0 lowers class-0 regions' weight
    size2 = size.copy()
    size2[dom == 0] *= 10
    got2 = acquisition.class_balanced_scores(u, dom, size2, c)
    assert (got2[dom == 0] <= got[dom == 0]).all() and (got2[dom != 0] >= got[dom != 0]).all()
    with pytest.raises(ValueError, match="dominant_class"):
        acquisition.class_balanced_scores(u, dom + c, size, c)
    with pytest.raises(ValueError, match="NaN"):
        acquisition.class_balanced_scores(np.full(n, np.nan), dom, size, c)


def test_eligibility_is_existing_regions_less_than_half_covered():
    size = np.array([0, 10, 10, 10, 7, 4])
    covered = np.array([0, 0, 4, 5, 3, 4])
    # empty slot, untouched, 40 %, exactly half (not eligible), 3/7 < half, all covered
    assert acquisition.eligible_regions(size, covered).tolist() == [False, True, True, False, True, False]
    with pytest.raises(ValueError, match="disagree"):
        acquisition.eligible_regions(size, covered[:-1])


def test_scores_are_normalised_over_the_eligible_pool_only():
    """An ineligible region neither gets a score nor moves the pool's min-max normalisation or
    its class shares."""
    unc = np.array([0.9, 0.2, 0.6, 0.4, 100.0])
    dom = np.array([0, 1, 0, 2, 1])
    size = np.array([10, 30, 20, 40, 1000])
    eligible = np.array([True, True, True, True, False])
    rng = np.random.default_rng(0)
    scores = acquisition.pool_scores("class_balanced", eligible, unc, dom, size, 3, rng)
    expected = acquisition.class_balanced_scores(unc[:4], dom[:4], size[:4], 3)
    np.testing.assert_allclose(scores[:4], expected)
    assert scores[4] == 0.0
    # by hand: U' = (0.9-0.2)/0.7 = 1 for region 0; class 0 holds 30 of 100 px
    np.testing.assert_allclose(scores[0], np.exp(-0.3))
    np.testing.assert_allclose(scores[1], 0.0)
    none = acquisition.pool_scores("class_balanced", np.zeros(5, bool), unc, dom, size, 3, rng)
    assert none.tolist() == [0.0] * 5
    rand = acquisition.pool_scores("random", eligible, unc, dom, size, 3, np.random.default_rng(1))
    assert sorted(rand[:4].tolist()) == [0.0, 1.0, 2.0, 3.0] and rand[4] == 0.0


def test_budget_is_a_count_or_a_share_of_the_base_superpixels():
    assert acquisition.budget_clicks(60, 0.0, 10_000) == 60
    assert acquisition.budget_clicks(60, 0.3, 50_922) == 153  # 152.77 rounds to 153
    assert acquisition.budget_clicks(60, 0.3, 100) == 1  # never 0
    assert acquisition.budget_clicks(0, 1.5, 1000) == 15


def test_select_spends_budget_by_score_with_deterministic_ties():
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.9, 0.7])
    image = np.array([1, 1, 0, 0, 0, 2])
    region = np.array([0, 1, 5, 2, 3, 0])
    eligible = np.array([True, True, True, True, True, False])
    cost = np.ones(6, np.int64)
    sel = acquisition.select(scores, eligible, image, region, cost, 4)
    # ties at 0.9: image 0 before image 1; inside image 0, region 3 before 5
    assert sel.index.tolist() == [4, 2, 1, 0]
    assert sel.spent == 4 and not sel.exhausted and sel.pool_size == 5
    big = acquisition.select(scores, eligible, image, region, cost, 100)
    assert big.exhausted and big.spent == 5 and 5 not in big.index.tolist()
    costly = acquisition.select(scores, eligible, image, region, np.array([1, 3, 1, 1, 1, 1]), 4)
    assert costly.spent <= 4 and costly.index.tolist() == [4, 2]
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            acquisition.select(scores, eligible, image, region, cost, bad)


def test_oracle_answers_are_dominant_value_including_ignore():
    regions = np.array([[0, 0, 0, 1], [2, 2, 1, 1]])
    label = np.array([[3, 255, 255, 4], [7, 6, 5, 5]], np.uint8)
    ans, size = oracle.oracle_answers(regions, label, np.array([0, 1, 2]))
    assert ans.tolist() == [255, 5, 6] and size.tolist() == [3, 3, 2]  # ties -> smaller value


def test_oracle_answers_what_the_click_labels():
    """A merged region half labelled A by an earlier round is answered by its unlabelled part."""
    regions = np.zeros((4, 6), np.int32)
    label = np.zeros((4, 6), np.uint8)  # A = 0 on the left 4 columns
    label[:, 4:] = 1  # B = 1 on the right 2 columns
    unlabelled = np.zeros((4, 6), bool)
    unlabelled[:, 3:] = True  # columns 0-2 carry an earlier answer
    whole, size = oracle.oracle_answers(regions, label, np.array([0]))
    assert whole.tolist() == [0] and size.tolist() == [24]
    ans, size = oracle.oracle_answers(regions, label, np.array([0]), unlabelled)
    assert ans.tolist() == [1] and size.tolist() == [24]  # size stays the region's
    # a region with nothing left unlabelled is answered over all its pixels
    ans, _ = oracle.oracle_answers(regions, label, np.array([0]), np.zeros((4, 6), bool))
    assert ans.tolist() == [0]


def test_answers_task_takes_earlier_answers_into_account(tmp_path):
    from deeplab.experiment import region_maps, tasks

    base = np.repeat(np.arange(3, dtype=np.int32), 2)[None].repeat(4, 0)  # 3 columns of 2 px
    merged = np.zeros_like(base)  # round 1: one region over everything
    label = np.zeros((4, 6), np.uint8)
    label[:, 4:] = 1
    label[:, 2:4] = 2  # columns: 0 0 2 2 1 1
    paths = {0: tmp_path / "b.npz", 1: tmp_path / "m.npz"}
    region_maps.save(paths[0], base)
    region_maps.save(paths[1], merged)

    class Descriptor:
        ignore_label = 255

        @staticmethod
        def read_label(_sample):
            return label

    task = tasks.AnswersTask(Descriptor, None, paths[1], [0], [], paths)
    assert tasks.answers_task(task)[0] == [0]  # ties: smaller class
    # round 0 labelled the left column 0: of the rest, 2 and 1 tie -> 1
    earlier = [{"round": 0, "image": "x", "region": 0, "answer": 0}]
    assert tasks.answers_task(dataclasses.replace(task, earlier=earlier))[0] == [1]
    # a 255 answer labels nothing, so its pixels still count
    earlier = [{"round": 0, "image": "x", "region": 0, "answer": 255}]
    assert tasks.answers_task(dataclasses.replace(task, earlier=earlier))[0] == [0]


def test_sieve_knee_ignores_pixels_owned_by_earlier_answers():
    """The curve of a region is taken over the pixels its answer owns: low-confidence pixels
    of an earlier answer (another class) do not move its threshold."""
    h, w = 40, 40
    regions = np.zeros((h, w), np.int32)
    probs = np.zeros((h, w, 2), np.float32)
    probs[..., 0] = np.sqrt(np.linspace(0, 1, h * w)).reshape(h, w) * 0.9 + 0.05  # concave: a knee
    probs[:, :16, 0] = 0.01  # an earlier answer of class 1 owns these pixels
    probs[..., 1] = 1 - probs[..., 0]
    owned = np.ones((h, w), bool)
    owned[:, :16] = False
    everything = sieving.sieve_labels(regions, [0], [0], probs, min_size_px=100)
    own = sieving.sieve_labels(regions, [0], [0], probs, min_size_px=100, owned=owned)
    # over every pixel, the foreign strip flattens the curve's start: threshold 0.01, all kept
    assert (everything == 0).all()
    dropped = own[owned] == 255
    assert 0.1 < dropped.mean() < 0.6  # over its own pixels the knee drops the unlikely ones
    slow = slow_sieve(regions, [0], [0], probs, curve_points=20, min_size=100, owned=owned)
    np.testing.assert_array_equal(own[owned], slow[owned])
    # the owned part (960 px) is what min_size is compared with
    small = sieving.sieve_labels(regions, [0], [0], probs, min_size_px=1000, owned=owned)
    assert (small[owned] == 0).all()


def test_paint_first_answer_wins_and_255_labels_nothing():
    m0 = np.array([[0, 0, 1, 1]])
    m1 = np.array([[0, 1, 1, 2]])
    answers = {0: (np.array([0, 1]), np.array([4, 255], np.uint8)),
               1: (np.array([1, 2]), np.array([7, 8], np.uint8))}
    labels, owner = L.paint({0: m0, 1: m1}, answers)
    assert labels.tolist() == [[4, 4, 7, 8]] and owner.tolist() == [[0, 0, 1, 1]]
    assert L.covered({0: m0, 1: m1}, answers).all()


def test_make_row_is_the_one_row_builder(tmp_path):
    q = {"image": "a", "region": 3, "score": 0.5, "cost": 2, "size": 40}
    row = ledger.make_row(1, q, 7, annotator="ann", elapsed_ms=None, session=None)
    assert list(row) == list(ledger.LEDGER_FIELDS) + ["annotator"]
    assert row == {"round": 1, "image": "a", "region": 3, "answer": 7, "size": 40, "score": 0.5,
                   "cost": 2, "annotator": "ann"}
    review = ledger.make_row(1, q, 5, size=41, cost=0, review=1)
    assert (review["size"], review["cost"], review["review"]) == (41, 0, 1)
    with pytest.raises(ValueError, match="no field"):
        ledger.make_row(1, q, 7, colour="red")
    book = ledger.Ledger(tmp_path / "ledger.jsonl")
    book.append([row, ledger.undo_row(1, q, annotator="ann"), review])
    assert book.read() == [] and book.reviews(1)[("a", 3)][1]["answer"] == 5


def test_ledger_is_append_only(tmp_path):
    led = ledger.Ledger(tmp_path / "ledger.jsonl")
    row = dict(round=0, image="a", region=3, answer=2, size=10, score=0.5, cost=1)
    led.append([row])
    led.append([dict(row, round=1, region=4)])
    assert [r["region"] for r in led.read()] == [3, 4] and led.rounds() == {0, 1}
    (tmp_path / "ledger.jsonl").write_text((tmp_path / "ledger.jsonl").read_text() + "{bad\n")
    with pytest.raises(ValueError, match="line 3"):
        led.read()


# ------------------------------------------------------------------ sieving
def slow_sieve(regions, ids, answers, probs, curve_points=20, min_size=512, owned=None):
    """Section 8 region by region; with `owned`, each region's curve over its owned pixels."""
    out = np.full(regions.shape, 255, np.uint8)
    for rid, lab in zip(ids, answers):
        if lab == 255:
            continue
        ys, xs = np.nonzero((regions == rid) & (True if owned is None else owned))
        out[ys, xs] = lab
        n = len(ys)
        if n < min_size:
            continue
        conf = probs[ys, xs, lab]
        y = np.sort(conf)[::max(1, n // curve_points)]
        t = y[0]
        if len(y) >= 3 and y[-1] > y[0]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = KneeLocator(list(range(len(y))), list(y), S=1, curve="concave", direction="increasing").knee
            if k is not None:
                t = y[int(k)]
        for y_, x_, cf in zip(ys, xs, conf):
            if cf < t:
                out[y_, x_] = 255
    return out


# Sub-sampled confidence curves on which kneed 0.8.5 (the release the original ran on Python 3.6)
# and kneed 0.9.0 find different knees, with 0.8.5's answer (None: no knee, keep all). Recorded
# by running both releases; the expected values are 0.8.5's, not the installed kneed's.
KNEED_085 = [
    ([0.1, 0.2, 0.2, 0.3, 0.3, 0.6, 0.6, 0.7, 0.7, 0.8, 0.8, 0.9, 0.9], 1),  # 0.9.0: 9
    ([0.0, 0.1, 0.1, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.8, 0.8, 0.9, 0.9], 1),  # 0.9.0: None
    ([0.0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.5, 0.6, 0.7, 0.7, 0.9, 0.9, 1.0], 3),  # 6
    ([0.3, 0.4, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0], 2),  # 0.9.0: 8
    ([0.4, 0.5, 0.6, 0.6, 0.7, 0.8], 2),  # 0.9.0: None
    ([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.7, 0.8, 0.8, 0.8], 0),  # 0.9.0: 4
    ([0.3, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9], 0),  # 0.9.0: None
    # the same in both releases
    ([0.1, 0.1, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.6, 0.7, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8,
      0.9, 0.9, 1.0, 1.0], 11),
    ([0.0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.5, 0.6, 0.6, 0.7, 0.7, 0.8, 0.9, 0.9], 5),
]


@pytest.mark.parametrize("curve,knee", KNEED_085)
def test_knee_threshold_is_kneed_085(curve, knee):
    y = np.array(curve)
    expected = y[0] if knee is None else y[knee]
    assert sieving.knee_threshold(y) == expected


@pytest.mark.parametrize("seed", range(12))
def test_sieve_matches_kneed_reference(seed):
    rng = np.random.default_rng(seed)
    h, w, c = 60, 80, 4
    regions = (np.arange(h)[:, None] // 15) * 4 + np.arange(w)[None, :] // 20  # 16 regions of 300 px
    regions = regions.astype(np.int32)
    probs = rng.dirichlet(np.ones(c), size=(h, w)).astype(np.float32)
    # a confident core and a noisy part in some regions (a real knee)
    noisy = rng.random((h, w)) < 0.3
    probs[~noisy, 1] += 3
    probs /= probs.sum(-1, keepdims=True)
    ids = rng.choice(16, size=8, replace=False)
    answers = rng.choice([0, 1, 1, 2, 255], size=8).astype(np.uint8)
    min_size = int(rng.choice([0, 100, 301]))
    points = int(rng.choice([5, 20, 50]))
    got = sieving.sieve_labels(regions, ids, answers, probs, curve_points=points, min_size_px=min_size)
    expected = slow_sieve(regions, ids, answers, probs, curve_points=points, min_size=min_size)
    np.testing.assert_array_equal(got, expected)
    if seed == 0:  # the former name of curve_points, relied on outside the repository, still works
        five = slow_sieve(regions, ids, answers, probs, curve_points=5, min_size=min_size)
        assert not np.array_equal(five, slow_sieve(regions, ids, answers, probs, min_size=min_size))
        np.testing.assert_array_equal(
            sieving.sieve_labels(regions, ids, answers, probs, knee=5, min_size_px=min_size), five)


def test_sieve_drops_the_wrong_part_of_a_region():
    h, w = 40, 40
    regions = np.zeros((h, w), np.int32)
    probs = np.zeros((h, w, 2), np.float32)
    probs[..., 0] = 0.95
    probs[:, :8, 0] = np.linspace(0.01, 0.2, h * 8).reshape(h, 8)  # a foreign strip
    probs[..., 1] = 1 - probs[..., 0]
    out = sieving.sieve_labels(regions, [0], [0], probs, min_size_px=100)
    assert (out[:, :8] == 255).mean() > 0.9 and (out[:, 8:] == 0).all()
    small = sieving.sieve_labels(regions, [0], [0], probs, min_size_px=10_000)
    assert (small == 0).all()


def test_sieve_rejects_bad_input():
    regions = np.zeros((4, 4), np.int32)
    probs = np.full((4, 4, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="answers"):
        sieving.sieve_labels(regions, [0], [5], probs)
    bad = probs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sieving.sieve_labels(regions, [0], [1], bad)
    with pytest.raises(ValueError, match="4x4|4x5"):
        sieving.sieve_labels(np.zeros((4, 5), np.int32), [0], [1], probs)


def slow_round_labels(maps, answers, probs, curve_points, min_size):
    """Sections 7-8 pixel by pixel: the first answer (oldest round) a pixel's regions got, kept
    only if sieving that round's answers in that round's map keeps the pixel."""
    h, w = next(iter(maps.values())).shape
    painted = np.full((h, w), 255, np.uint8)
    owner = np.full((h, w), -1)
    for y in range(h):
        for x in range(w):
            for t in sorted(answers):
                ids, ans = answers[t]
                hit = [a for i, a in zip(ids, ans) if i == maps[t][y, x] and a != 255]
                if hit:
                    painted[y, x], owner[y, x] = hit[0], t
                    break
    if probs is None:
        return painted, painted.copy()
    # Each round's answers are sieved over the pixels they own (the knee of a region is never
    # computed over pixels that carry an earlier answer).
    sieved = {t: slow_sieve(maps[t], ids, ans, probs, curve_points=curve_points, min_size=min_size, owned=owner == t)
              for t, (ids, ans) in answers.items()}
    labels = painted.copy()
    for y in range(h):
        for x in range(w):
            if owner[y, x] >= 0 and sieved[owner[y, x]][y, x] == 255:
                labels[y, x] = 255
    return painted, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sieve", [False, True])
def test_round_labels_equal_per_pixel_reference(seed, sieve):
    from deeplab.active import labels as L

    rng = np.random.default_rng(seed)
    h, w, c = 40, 60, 4
    base = ((np.arange(h)[:, None] // 10) * 6 + np.arange(w)[None, :] // 10).astype(np.int32)
    merged = ((np.arange(h)[:, None] // 20) * 3 + np.arange(w)[None, :] // 20).astype(np.int32)
    maps = {0: base, 1: merged, 2: base[::-1].copy()}
    answers = {}
    for t, m in maps.items():
        ids = rng.choice(m.max() + 1, size=4, replace=False)
        answers[t] = (ids, rng.choice([0, 1, 1, 1, 255], size=4).astype(np.uint8))
    probs = None
    if sieve:  # class 1 confident on most pixels, the rest noisy: a knee to find
        probs = rng.dirichlet(np.ones(c), size=(h, w)).astype(np.float32)
        probs[rng.random((h, w)) < 0.7, 1] += 3
        probs /= probs.sum(-1, keepdims=True)
    got = L.round_labels(maps, answers, probs, curve_points=10, min_size_px=150)
    expected = slow_round_labels(maps, answers, probs, curve_points=10, min_size=150)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    if sieve:
        assert (got[1] == 255).sum() > (got[0] == 255).sum()  # sieving dropped something


def test_boundary_lengths_and_base_counts_match_a_pixel_loop():
    from deeplab.active import regions as R

    rng = np.random.default_rng(5)
    base = np.repeat(np.repeat(rng.integers(0, 6, (6, 8)), 3, 0), 2, 1)
    regions = base // 2  # merged pairs of base ids
    h, w = regions.shape
    n = int(regions.max()) + 1
    slow = np.zeros(n, np.int64)
    for y in range(h):
        for x in range(w):
            v = regions[y, x]
            if any(0 <= yy < h and 0 <= xx < w and regions[yy, xx] != v
                   for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1))):
                slow[v] += 1
    np.testing.assert_array_equal(R.boundary_lengths(regions, n), slow)
    counts = [len(set(base[regions == k].tolist())) for k in range(n)]
    np.testing.assert_array_equal(R.base_counts(regions, base, n), counts)


def test_fitted_cost_model_recovers_a_known_relation():
    from deeplab.active import acquisition

    rng = np.random.default_rng(0)
    n = 400
    size = rng.integers(50, 20000, n)
    boundary = rng.uniform(0.5, 3.0, n) * 4 * np.sqrt(size)
    base = rng.integers(1, 12, n)
    unc = rng.uniform(0, 1, n)
    x = acquisition.region_features(size, boundary, base, unc)
    truth = np.array([0.4, 0.8, 1.5, 3.0])
    seconds = 1.2 + x @ truth + rng.normal(0, 0.05, n)
    model = acquisition.fit_cost_model(x, seconds)
    np.testing.assert_allclose(model.coef, truth, atol=0.03)
    assert abs(model.intercept - 1.2) < 0.2 and model.rmse < 0.07 and model.n == n
    again = acquisition.MeasuredCost.from_json(model.to_json())
    np.testing.assert_allclose(again.seconds(x), model.seconds(x))
    clicks = model.clicks(x)
    assert clicks.min() >= 1 and np.median(clicks) == 1
    # a region that takes three median answers costs three click-equivalents
    slow = (3 * model.unit_seconds - model.intercept - x[0, 1:] @ np.array(model.coef[1:])) / model.coef[0]
    assert model.clicks(np.array([[slow, *x[0, 1:]]]))[0] == 3
    with pytest.raises(ValueError, match="cannot fit"):
        acquisition.fit_cost_model(x[:5], seconds[:5])


def test_review_agreement_kappa_and_resolution_on_a_constructed_case():
    from deeplab.active import review

    first = [0, 0, 0, 1, 1, 2, 2, 2, 255, 1]
    second = [0, 0, 1, 1, 1, 2, 0, 2, 255, 2]
    s = review.agreement(first, second, 3)
    assert s["reviewed"] == 10 and s["agreement"] == 0.7
    # pe = sum_c p1(c) p2(c) over {0,1,2,255}: .3*.3 + .3*.3 + .3*.3 + .1*.1 = .28
    assert s["kappa"] == pytest.approx((0.7 - 0.28) / (1 - 0.28))
    assert s["per_class"] == {0: pytest.approx(2 / 3), 1: pytest.approx(2 / 3), 2: pytest.approx(2 / 3), 255: 1.0}
    assert review.agreement([], [], 3)["kappa"] is None
    assert review.resolve(3, 3, None) == 3
    assert review.resolve(3, 4, None) == 255  # one annotator only: unclear
    assert review.resolve(3, 4, 4) == 4 and review.resolve(3, 4, 3) == 3 and review.resolve(3, 4, 5) == 255
    picked = review.review_subset(40, 0.25, 0, 1)
    assert len(picked) == 10 and len(set(picked.tolist())) == 10
    assert (picked == review.review_subset(40, 0.25, 0, 1)).all() and len(review.review_subset(40, 0, 0, 1)) == 0
    rng = np.random.default_rng(0)
    answers = rng.integers(0, 19, 5000)
    wrong = review.noisy(answers, 0.2, 19, rng)
    assert abs((wrong != answers).mean() - 0.2) < 0.02 and ((wrong >= 0) & (wrong < 19)).all()
    assert (review.noisy(np.full(10, 255), 1.0, 19, rng) == 255).all()
