"""Region kernels, statistics and the adaptive merge against slow, obvious versions."""

import numpy as np
import pytest
from scipy.ndimage import label as nd_label
from scipy.spatial.distance import jensenshannon

from deeplab.active import adaptive, metrics, superpixels
from deeplab.experiment import region_maps
from deeplab.active import regions as R


def random_map(rng, h=24, w=30, n=25):
    """A random map of 4-connected regions from Voronoi-like cells."""
    pts = rng.integers(0, [h, w], size=(n, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    cells = np.argmin(d, axis=-1).astype(np.int32)
    return superpixels.oracle_superpixels(cells)  # split any cell that is not 4-connected


def random_probs(rng, regions, c=5, plant=0.5):
    """Per-region distributions with planted near-identical neighbours, plus pixel noise."""
    n = regions.max() + 1
    base = rng.dirichlet(np.ones(c) * 0.5, size=n)
    groups = rng.integers(0, max(1, int(n * (1 - plant))), size=n)
    proto = rng.dirichlet(np.ones(c) * 0.5, size=n)
    mix = rng.random(n) < plant
    base[mix] = proto[groups[mix]] + rng.normal(0, 0.01, (mix.sum(), c)).clip(-0.005, 0.005)
    base = np.abs(base) / np.abs(base).sum(1, keepdims=True)
    p = base[regions] + rng.uniform(0, 0.02, regions.shape + (c,))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------ slow references
def slow_stats(probs, regions):
    n = regions.max() + 1
    size = np.zeros(n, np.int64)
    unc = np.zeros(n)
    dom = np.full(n, -1)
    for j in range(n):
        mask = regions == j
        size[j] = mask.sum()
        if not size[j]:
            continue
        px = probs[mask]
        srt = np.sort(px, axis=1)
        unc[j] = np.mean(srt[:, -2] / srt[:, -1])
        counts = np.bincount(np.argmax(px, 1), minlength=probs.shape[2])
        dom[j] = int(np.flatnonzero(counts == counts.max())[0])
    return size, unc, dom


def slow_adjacency(regions):
    h, w = regions.shape
    found = {}
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0)):
                yy, xx = y + dy, x + dx
                if yy < h and xx < w and regions[y, x] != regions[yy, xx]:
                    key = tuple(sorted((int(regions[y, x]), int(regions[yy, xx]))))
                    found[key] = found.get(key, 0) + 1
    return found


def slow_merge(probs, regions, eps):
    """Section 3, literally: per-region loops, scipy's JS, a queue per seed."""
    ids = sorted(set(np.unique(regions).tolist()))
    m, u = {}, {}
    for s in ids:
        px = probs[regions == s].astype(np.float64)
        m[s] = px.mean(0)
        srt = np.sort(px, axis=1)
        u[s] = np.float32(np.mean(srt[:, -2] / srt[:, -1]))  # compared at float32 precision
    adj = {s: set() for s in ids}
    for a, b in slow_adjacency(regions):
        adj[a].add(b)
        adj[b].add(a)
    order = sorted(ids, key=lambda s: (-u[s], s))
    seed_of = {}
    for s in order:
        if s in seed_of:
            continue
        seed_of[s] = s
        queue = [s]
        while queue:
            r = queue.pop()
            for v in sorted(adj[r]):
                if v not in seed_of and jensenshannon(m[s], m[v]) < eps:
                    seed_of[v] = s
                    queue.append(v)
    out = np.zeros_like(regions)
    for s in ids:
        out[regions == s] = seed_of[s]
    return out, u


def same_partition(a, b):
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


# ------------------------------------------------------------------ kernels
@pytest.mark.parametrize("seed", range(5))
def test_kernels_match_loops(seed):
    rng = np.random.default_rng(seed)
    regions = random_map(rng)
    regions[regions == 3] = 40  # a gap in the ids
    probs = random_probs(rng, regions)
    size, unc, dom = slow_stats(probs, regions)
    st = R.region_statistics(probs, regions)
    assert len(st.size) == regions.max() + 1
    np.testing.assert_array_equal(st.size, size)
    np.testing.assert_allclose(st.uncertainty, unc, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(st.dominant_class, dom)
    means = R.means(regions, probs)
    for j in np.unique(regions):
        np.testing.assert_allclose(means[j], probs[regions == j].mean(0), rtol=1e-5)
    pairs, lengths = R.adjacency(regions)
    assert dict(zip(map(tuple, pairs.tolist()), lengths.tolist())) == slow_adjacency(regions)
    new, lut = R.renumber(regions)
    assert sorted(np.unique(new).tolist()) == list(range(len(np.unique(regions))))
    assert same_partition(new, regions)
    arg, best, second = R.top2(probs, chunk_px=7)
    srt = np.sort(probs, axis=-1)
    np.testing.assert_array_equal(arg, np.argmax(probs, -1))
    np.testing.assert_array_equal(best, srt[..., -1])
    np.testing.assert_array_equal(second, srt[..., -2])


def test_dominant_class_ties_go_to_smaller_class():
    regions = np.zeros((1, 4), np.int32)
    probs = np.array([[[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]]], np.float32)
    probs[0, 2] = [0.1, 0.1, 0.8]
    st = R.region_statistics(probs, regions)
    assert st.dominant_class[0] == 0  # counts: class 0 twice, class 2 twice


def test_offsets_are_cumulative():
    np.testing.assert_array_equal(R.offsets(np.array([3, 0, 5])), [0, 3, 3, 8])


# ------------------------------------------------------------------ merge
@pytest.mark.parametrize("seed", range(25))
def test_merge_equals_literal_section_3(seed):
    rng = np.random.default_rng(100 + seed)
    regions = random_map(rng, n=int(rng.integers(5, 40)))
    probs = random_probs(rng, regions, c=int(rng.integers(2, 6)), plant=rng.uniform(0.2, 0.9))
    if seed % 5 == 0:  # ties in uncertainty: identical distributions everywhere in a region set
        probs[regions % 3 == 0] = probs[0, 0]
    eps = float(rng.choice([0.02, 0.05, 0.1, 0.3]))
    expected, _ = slow_merge(probs, regions, eps)
    res = adaptive.adaptive_superpixels(probs, regions, eps)
    got = res.regions
    assert same_partition(got, expected)
    # seeds: the claimed seed ids equal the literal version's
    np.testing.assert_array_equal(res.seed_of[regions], expected)
    # invariants
    assert got.max() + 1 <= len(np.unique(regions))
    for r in np.unique(got):
        comp = got == r
        base_ids = np.unique(regions[comp])
        assert np.isin(regions, base_ids).sum() == comp.sum()  # union of base regions
        assert nd_label(comp)[1] == 1  # 4-connected
    # merged statistics equal statistics computed on the merged map
    st = R.region_statistics(probs, got)
    np.testing.assert_array_equal(res.stats.size, st.size)
    np.testing.assert_allclose(res.stats.uncertainty, st.uncertainty, rtol=1e-5)
    np.testing.assert_array_equal(res.stats.dominant_class, st.dominant_class)


def test_merge_with_uniform_probs_collapses_connected_map():
    rng = np.random.default_rng(0)
    regions = random_map(rng)
    probs = np.full(regions.shape + (4,), 0.25, np.float32)
    probs[..., 0] += 0.01
    probs /= probs.sum(-1, keepdims=True)
    merged = adaptive.merge_superpixels(probs, regions, eps=0.1)
    assert merged.max() == 0


def test_js_matches_scipy():
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(7), size=(2, 50))
    q[0, 3] = 0.0
    expected = [jensenshannon(a, b) for a, b in zip(p, q)]
    np.testing.assert_allclose(adaptive.js_distance(p, q), expected, rtol=1e-12)


def test_bad_input_is_rejected():
    regions = np.zeros((4, 5), np.int32)
    probs = np.full((4, 5, 3), 1 / 3, np.float32)
    with pytest.raises(ValueError, match="4x5.*4x6|4x6.*4x5"):
        adaptive.merge_superpixels(probs, np.zeros((4, 6), np.int32))
    bad = probs.copy()
    bad[1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        adaptive.merge_superpixels(bad, regions)
    with pytest.raises(ValueError, match="NaN"):
        R.region_statistics(bad, regions)
    with pytest.raises(ValueError, match="negative"):
        adaptive.merge_superpixels(probs, regions - 1)
    for eps in (0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            adaptive.merge_superpixels(probs, regions, eps=eps)
    with pytest.raises(ValueError, match="logits"):
        adaptive.merge_superpixels(probs * 5, regions)


# ------------------------------------------------------------------ superpixels
def _image(rng, h=64, w=96):
    from deeplab.datasets import synthetic

    return synthetic.render_scene(rng, h, w)


@pytest.mark.parametrize("method", ["slic", "seeds"])
def test_base_superpixels_about_requested_count(method):
    image, _ = _image(np.random.default_rng(0))
    for n in (24, 96):
        regions = superpixels.base_superpixels(image, method, n)
        k = regions.max() + 1
        assert 0.4 * n <= k <= 1.5 * n, (method, n, k)
        assert len(np.unique(regions)) == k  # contiguous


def test_oracle_regions_are_connected_components():
    rng = np.random.default_rng(2)
    label = rng.integers(0, 3, size=(20, 25)).astype(np.uint8)
    label[5:8, 5:8] = 255
    label[0:12, 12] = 1  # a ring-like shape with content inside
    regions = superpixels.oracle_superpixels(label)
    # Slow reference: scipy connected components per value.
    count = 0
    for v in np.unique(label):
        comps, k = nd_label(label == v)
        count += k
        for c in range(1, k + 1):
            assert len(np.unique(regions[comps == c])) == 1
    assert regions.max() + 1 == count
    assert metrics.asa(regions, label) == 1.0


def test_storage_round_trip_and_errors(tmp_path):
    regions = np.arange(12, dtype=np.int32).reshape(3, 4) * 7000
    path = region_maps.path(tmp_path, "city/img")
    region_maps.save(path, regions)
    np.testing.assert_array_equal(region_maps.load(path), regions)
    with pytest.raises(FileNotFoundError, match="extract_superpixels"):
        region_maps.load(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npz"):
        region_maps.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="statistics"):
        region_maps.load_with_stats(path)  # a base map has none


def test_quality_measures():
    label = np.array([[0, 0, 1, 1]] * 4, np.uint8)
    one = np.zeros((4, 4), np.int32)
    assert metrics.asa(one, label) == 0.5
    assert metrics.boundary_recall(one, label) == 0.0
    assert metrics.boundary_recall(label.astype(np.int32), label) == 1.0
    noisy = label.copy()
    noisy[0, 0] = 1
    noisy[3, :] = 255
    assert metrics.label_noise(noisy, label) == (1 / 12, 12)
    assert metrics.label_errors(noisy, label, where=np.arange(16).reshape(4, 4) < 2) == (1, 2)
