"""Figures a person reads: what a round asked and what its labels look like, and how the
adaptive merge changed the regions. Panels are titled, enlarged (nearest neighbour, so pixels
stay pixels) and carry a legend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab.datasets.descriptors import class_colours
from deeplab.viz.plots import pyplot, save_figure

# Label-error colours of the sieving panel.
KEPT_WRONG = (255, 140, 0)
SIEVED_WRONG = (230, 0, 0)
SIEVED_RIGHT = (0, 120, 255)
# Hatching of the labels the answers imply (labels.SOURCE_*): (colour, matplotlib's hatch for the
# legend, rising lines): propagated regions in white rising lines, the model's confident pixels in
# black falling lines.
PROPAGATED_HATCH = ((255, 255, 255), "//", True)
SELF_TRAINED_HATCH = ((0, 0, 0), "\\\\", False)


def hatch(panel_up: np.ndarray, mask_up: np.ndarray, colour, rising: bool, period: int = 6) -> np.ndarray:
    """Diagonal lines of `colour` over the pixels of `mask_up` (rising: bottom-left to top-right)."""
    y, x = np.indices(mask_up.shape)
    line = ((x + y) if rising else (x - y)) % period < 2
    out = panel_up.copy()
    out[mask_up & line] = colour
    return out


def _scale_for(shape, min_width=600) -> int:
    return max(1, int(np.ceil(min_width / shape[1])))


def _up(a: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(a, k, 0), k, 1)


def _grey(image: np.ndarray, dim: float = 0.55) -> np.ndarray:
    g = image.astype(np.float32).mean(-1, keepdims=True) * dim
    return np.repeat(g, 3, -1)


def labels_panel(image: np.ndarray, labels: np.ndarray, colours: np.ndarray,
                 ignore_label: int = 255) -> np.ndarray:
    """float [H, W, 3]: labelled pixels in their class colour (85 %, over 15 % of the image);
    unlabelled pixels washed out towards white (15 % grey, 85 % white). A wash, not a dimmed
    grey, so that dark or grey class colours (Cityscapes' building 70,70,70; CamVid's sky
    128,128,128) never look like unlabelled pixels: on the same grey image pixel the two differ by
    at least 170 summed over the channels for Cityscapes' and CamVid's colours, and by 100 for the
    light colours of the default palette (tests/test_overlays.py); labelled areas are also outlined."""
    out = image.astype(np.float32).mean(-1, keepdims=True).repeat(3, -1) * 0.15 + 0.85 * 255.0
    lab = labels != ignore_label
    out[lab] = 0.15 * image[lab] + 0.85 * colours[labels[lab]]
    return out


def _boundaries(image_up: np.ndarray, mask_up: np.ndarray, colour) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    out = image_up.copy()
    out[find_boundaries(mask_up, mode="inner")] = colour
    return out


def _figure(panels, titles, legend, suptitle, shape):
    plt = pyplot()
    from matplotlib.patches import Patch

    h, w = shape
    panel_w = 4.2
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_w * len(panels), panel_w * h / w + 1.3),
                             dpi=110)
    for ax, img, title in zip(np.atleast_1d(axes), panels, titles):
        ax.imshow(img.astype(np.uint8), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if legend:
        # an entry is (name, colour) or (name, colour, hatch)
        handles = [Patch(facecolor=np.array(e[1]) / 255.0, edgecolor="k", label=e[0],
                         hatch=e[2] if len(e) > 2 else None) for e in legend]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=7,
                   frameon=False)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if legend else 0, 1, 0.95))
    return fig


def answers_figure(path: Path | str, image: np.ndarray, queried: np.ndarray, painted: np.ndarray,
                   labels: np.ndarray, gt: np.ndarray | None, class_names, ignore_label: int = 255,
                   title: str = "", palette=None, propagated: np.ndarray | None = None,
                   self_trained: np.ndarray | None = None) -> None:
    """Three panels: the regions asked this round; the round's training labels in class colours
    (washed out = unlabelled; propagated and self-trained labels hatched); what sieving did
    against the ground truth (wrong labels kept, wrong labels sieved, right labels sieved).

    Args:
      image: uint8 [H, W, 3].
      queried: int [H, W], > 0 inside this round's queried regions (one id per region).
      painted: uint8 [H, W] every answer painted, before sieving (ignore = unlabelled).
      labels: uint8 [H, W] the training labels after sieving.
      gt: uint8 [H, W] ground truth, or None when there is none (no error panel).
      palette: uint8 [C, 3] the data set's class colours (None: class_colours' default).
      propagated, self_trained: bool [H, W] the labels that propagation and confident pixels
        gave (None: none), drawn hatched.
    """
    k = _scale_for(image.shape)
    colours = class_colours(len(class_names)) if palette is None else np.asarray(palette, np.uint8)
    asked = _boundaries(_up(image, k).astype(np.float32), _up(queried, k), (255, 255, 0))
    lab = labels != ignore_label
    drawn = labels_panel(image, labels, colours, ignore_label)
    drawn = _boundaries(_up(drawn, k), _up(lab.astype(np.int32), k), (0, 0, 0))
    n_asked = len(np.unique(queried[queried > 0]))
    implied = []
    for given, (colour, pattern, rising), name in ((propagated, PROPAGATED_HATCH, "propagated"),
                                                   (self_trained, SELF_TRAINED_HATCH, "self-trained")):
        if given is not None:
            mask = lab & given
            if mask.any():
                drawn = hatch(drawn, _up(mask, k), colour, rising=rising)
                implied.append((f"{name}: {int(mask.sum())} px", (200, 200, 200), pattern))
    panels = [asked, drawn]
    titles = [f"asked this round: {n_asked} region(s) (yellow)",
              f"training labels: {int(lab.sum())} px (class colour; washed out = unlabelled)"]
    legend = [(class_names[c], colours[c]) for c in np.unique(labels[lab])] + implied
    if gt is not None:
        valid = gt != ignore_label
        sieved = (painted != ignore_label) & ~lab
        kept_wrong = lab & valid & (labels != gt)
        sieved_wrong = sieved & valid & (painted != gt)
        sieved_right = sieved & valid & (painted == gt)
        err = _grey(image)
        err[kept_wrong], err[sieved_wrong], err[sieved_right] = KEPT_WRONG, SIEVED_WRONG, SIEVED_RIGHT
        panels.append(_up(err, k))
        titles.append(f"sieving: {int(sieved.sum())} px removed, {int(sieved_wrong.sum())} of them wrong; "
                      f"{int(kept_wrong.sum())} wrong px kept")
        legend += [("kept, wrong", KEPT_WRONG), ("sieved, was wrong", SIEVED_WRONG),
                   ("sieved, was right", SIEVED_RIGHT)]
    save_figure(_figure(panels, titles, legend, title, image.shape[:2]), path)


def regions_figure(path: Path | str, image: np.ndarray, base: np.ndarray, regions: np.ndarray,
                   mode: str, title: str = "") -> None:
    """Two panels: the base superpixels and the round's regions (adaptive, base or oracle)."""
    k = _scale_for(image.shape)
    img_up = _up(image, k).astype(np.float32)
    nb, nr = len(np.unique(base)), len(np.unique(regions))
    panels = [_boundaries(img_up, _up(base, k), (255, 255, 0)),
              _boundaries(img_up, _up(regions, k), (255, 80, 0))]
    titles = [f"base superpixels: {nb}", f"{mode} regions: {nr}"]
    fig = _figure(panels, titles, [], title, image.shape[:2])
    save_figure(fig, path)
