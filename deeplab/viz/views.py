"""The annotation page's views of a queried region: the region outlined on its image, zoomed
or whole, with the pixels earlier answers label shaded and the labels they imply dotted (arrays
in, an RGB array out)."""

from __future__ import annotations

import numpy as np


def render_view(image: np.ndarray, mask: np.ndarray, kind: str,
                labelled: np.ndarray | None = None, dotted=()) -> np.ndarray:
    """uint8 [h, w, 3]: the region outlined, in its context (`zoom`) or on the whole image.
    `labelled` (bool [H, W]): pixels an earlier answer labels, hatched inside the region in
    the zoom view. `dotted`: (bool [H, W], RGB colour) pairs, pixels dotted in that colour inside
    the region in the zoom view where `labelled` is not (the labels an answer replaces)."""
    import cv2

    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if kind == "zoom":
        side = max(48, int(2.5 * max(y1 - y0, x1 - x0)))
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        top, left = max(0, min(h - side, cy - side // 2)), max(0, min(w - side, cx - side // 2))
        crop = (slice(top, min(h, top + side)), slice(left, min(w, left + side)))
        img, m = image[crop], mask[crop]
        scale = max(1, 480 // max(img.shape[:2]))
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        m = cv2.resize(m.astype(np.uint8), None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_NEAREST).astype(bool)
        out = img.astype(np.float32)
        out[~m] = 0.45 * out[~m] + 0.55 * 40  # dim what is outside the region
        if labelled is not None:
            done = cv2.resize(labelled[crop].astype(np.uint8), None, fx=scale, fy=scale,
                              interpolation=cv2.INTER_NEAREST).astype(bool) & m
            yy, xx = np.indices(done.shape)
            stripes = done & (((yy + xx) // 3) % 3 == 0)
            out[stripes] = 0.35 * out[stripes] + 0.65 * 255  # hatched: already labelled
        if len(dotted):
            yy, xx = np.indices(m.shape)
            dots = m & (yy % 5 < 2) & (xx % 5 < 2)
            if labelled is not None:
                dots &= ~done
            for where, colour in dotted:
                out[dots & cv2.resize(where[crop].astype(np.uint8), None, fx=scale, fy=scale,
                                      interpolation=cv2.INTER_NEAREST).astype(bool)] = colour
        out = out.astype(np.uint8)
        _halo(out, m, 2)
        return out
    scale = 720 / w  # reduced (area) or enlarged (nearest, crisp) to 720 px wide
    size = (720, max(1, round(h * scale)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    _halo(out, m, 1)  # a region under a pixel of the reduced image: its box still shows it
    pad = 6
    bx0, by0 = int(x0 * scale) - pad, int(y0 * scale) - pad
    bx1, by1 = int(np.ceil(x1 * scale)) + pad, int(np.ceil(y1 * scale)) + pad
    cv2.rectangle(out, (bx0, by0), (bx1, by1), (0, 255, 255), 2)
    return out


def _halo(out: np.ndarray, mask: np.ndarray, width: int) -> None:
    import cv2

    if not mask.any():
        return
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    outer = cv2.dilate(m, kernel, iterations=width + 1).astype(bool) & ~mask
    inner = outer & ~cv2.dilate(m, kernel, iterations=width).astype(bool)
    out[outer] = (255, 230, 0)
    out[inner] = (0, 0, 0)
