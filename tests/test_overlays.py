"""The answers overlay's labels panel: labelled pixels never look like unlabelled ones."""

import numpy as np
import pytest

from deeplab.datasets.descriptors import CAMVID, class_colours
from deeplab.viz.overlays import labels_panel


@pytest.mark.parametrize("palette,least", [(class_colours(19), 170), (CAMVID.palette(), 170),
                                           (class_colours(20), 100)], ids=["cityscapes", "camvid", "tab20"])
def test_every_class_colour_stays_apart_from_the_unlabelled_wash(palette, least):
    """On every grey level of the image, each class's labelled pixel differs from the same pixel
    unlabelled by at least `least` summed over the channels (the dimmed grey this replaced made
    Cityscapes' building, 70,70,70, identical to an unlabelled pixel of grey 175)."""
    grey = np.arange(256, dtype=np.uint8)
    image = np.repeat(grey[:, None, None], 3, -1).repeat(len(palette), 1)  # [256, C, 3]
    labels = np.tile(np.arange(len(palette), dtype=np.uint8), (256, 1))
    labelled = labels_panel(image, labels, palette)
    unlabelled = labels_panel(image, np.full_like(labels, 255), palette)
    distance = np.abs(labelled - unlabelled).sum(-1)
    assert distance.min() >= least, np.unravel_index(distance.argmin(), distance.shape)
    # and the labelled pixels are the class colours over 15 % of the image
    np.testing.assert_allclose(labelled, 0.15 * image + 0.85 * palette[labels], atol=1e-3)
