"""SEEDS: the fast exact path gives OpenCV's superpixels of the paper's HSV input; counts an
image cannot hold are refused instead of hanging OpenCV."""

import numpy as np
import pytest

from deeplab.active import superpixels as S
from deeplab.datasets import synthetic


def _images(rng, h, w):
    scene, _ = synthetic.render_scene(rng, h, w)
    noisy = np.clip(scene.astype(int) + rng.integers(-60, 61, scene.shape), 0, 255).astype(np.uint8)
    grey = np.repeat(rng.integers(0, 256, (h, w, 1)), 3, axis=2).astype(np.uint8)  # hue 0
    return [scene, noisy, rng.integers(0, 256, (h, w, 3)).astype(np.uint8), grey]


@pytest.mark.parametrize("h,w,n", [(64, 128, 32), (96, 160, 60), (120, 200, 150)])
def test_fast_seeds_equals_opencv_on_hsv(h, w, n):
    rng = np.random.default_rng(h)
    for image in _images(rng, h, w):
        fast = S.seeds(image, n)
        slow = S.seeds_opencv(S.seeds_hsv(image), n)
        np.testing.assert_array_equal(fast, slow)


def test_seeds_bins_follow_opencv_float_rule():
    # OpenCV bins a float channel as min(int(v * bins), bins - 1), assuming [0, 1].
    hsv = np.array([[[0.0, 0.0, 1.0], [359.9, 0.55, 0.099], [0.05, 0.999, 0.1]]], np.float32)
    assert S.seeds_bins(hsv, 10).tolist() == [[0 * 100 + 0 * 10 + 9, 9 * 100 + 5 * 10 + 0,
                                                0 * 100 + 9 * 10 + 1]]


def test_superpixel_count_above_what_the_image_holds_is_refused():
    image = np.zeros((128, 256, 3), np.uint8)
    limit = S.max_superpixels(128, 256, "seeds")
    assert 0 < limit < 128 * 256
    S.seeds(image, limit)  # the limit itself works (and returns)
    with pytest.raises(ValueError, match=rf"NUM_SUPERPIXELS=100000 .*at most {limit}"):
        S.base_superpixels(image, "seeds", 100000)
    with pytest.raises(ValueError, match="at most 32768"):
        S.base_superpixels(image, "slic", 40000)


# Image sizes SEEDS' block pyramid does not divide: CamVid (360x480) and half and three
# quarters of it, VOC-like frames both ways, odd sizes; one superpixel per 256 px asked.
ODD_SIZES = [(360, 480), (180, 240), (270, 360), (375, 500), (500, 375), (97, 131), (213, 317)]


@pytest.mark.parametrize("h,w", ODD_SIZES)
def test_base_superpixels_deliver_the_count_asked_on_any_size(h, w):
    rng = np.random.default_rng(h * w)
    scene, _ = synthetic.render_scene(rng, h, w)
    n = S.n_segments_for(h, w, 256.0)
    for method in S.METHODS:
        got = int(S.base_superpixels(scene, method, n).max()) + 1
        assert abs(got - n) <= S.COUNT_TOLERANCE * n, (method, h, w, n, got)


def test_seeds_request_is_the_paper_call_where_that_fits():
    # Cityscapes' call and the embedded scenes' stay the original's, exactly
    assert S.seeds_request(1024, 2048, 8192) == (8192, 5)
    assert S.seeds_request(128, 256, 128) == (128, 5)
    # where it does not fit, the paper's call makes a fifth of the count (the reason for all this)
    assert S.seeds_grid_count(180, 240, 169, 5) < 0.25 * 169
    assert S.seeds_request(180, 240, 169) != (169, 5)


@pytest.mark.parametrize("h,w", [(180, 240), (120, 170), (97, 131)])
def test_seeds_request_is_as_close_as_any_call(h, w):
    """Against every request OpenCV could be given (slow: each count, each level count)."""
    n = S.n_segments_for(h, w, 256.0)
    asked, levels = S.seeds_request(h, w, n)
    got = S.seeds_grid_count(h, w, asked, levels)
    best = min(abs(S.seeds_grid_count(h, w, m, lv) - n)
               for lv in (5, 4, 3, 2) for m in range(10, min(4 * n, S.max_superpixels(h, w, "seeds")) + 1))
    assert abs(got - n) <= max(best, S.COUNT_TOLERANCE * n)
    # the count before iterating is the count of the map (iterations move pixels only)
    scene, _ = synthetic.render_scene(np.random.default_rng(1), h, w)
    assert int(S.seeds(scene, asked, num_levels=levels).max()) + 1 == got
