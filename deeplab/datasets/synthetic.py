"""The embedded data set: deterministic synthetic street scenes in the Cityscapes layout.

Scenes use the 19 Cityscapes train ids with a long-tailed class distribution (road, building,
sky and vegetation cover most pixels; rider, train, motorcycle and bicycle are rare) and are
built to be hard for superpixels the way real streets are:

- shadows cross class boundaries (a dark band over road, sidewalk and cars), so colour edges
  appear inside classes;
- road and sidewalk are look-alike greys, terrain and vegetation look-alike greens, walls share
  building colours, so class edges appear without colour edges;
- vegetation is textured, buildings carry window grids, the road has lane marks;
- poles are 1-2 px thin, signs and lights small.

Layout written under `root`:
  leftImg8bit/{split}/synth/synth_{i:06d}_leftImg8bit.png
  gtFine/{split}/synth/synth_{i:06d}_gtFine_labelTrainIds.png
  image_list/{split}.txt
  synthetic.json   (the generation parameters; written last, marks the set complete)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from skimage import draw

from deeplab import io_utils
from deeplab.errors import BadInput

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)

# Objects placed by chance: (class, probability per image). Each image additionally forces one
# object kind in turn, so every split of at least len(_OBJECTS) images shows every class.
_OBJECTS = (
    (CAR, 0.9), (PERSON, 0.7), (POLE, 0.8), (SIGN, 0.5), (LIGHT, 0.35), (FENCE, 0.3),
    (WALL, 0.3), (TRUCK, 0.15), (BUS, 0.1), (BICYCLE, 0.08), (MOTORCYCLE, 0.06),
    (RIDER, 0.05), (TRAIN, 0.03),
)

CITY = "synth"


def _noise(rng, shape, scale):
    return rng.normal(0.0, scale, size=shape)


def _paint(image, label, rr, cc, cls, colour, rng, texture=0.0):
    """Paints pixels (rr, cc) with `colour` (+ texture) and class `cls`."""
    if len(rr) == 0:
        return
    col = np.asarray(colour, dtype=np.float32)[None, :]
    if texture:
        col = col + _noise(rng, (len(rr), 1), texture) + _noise(rng, (len(rr), 3), texture / 3)
    image[rr, cc] = col
    label[rr, cc] = cls


def _rect(image, label, rng, y0, y1, x0, x1, cls, colour, texture=0.0):
    h, w = label.shape
    y0, y1 = max(0, int(y0)), min(h, int(y1))
    x0, x1 = max(0, int(x0)), min(w, int(x1))
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    _paint(image, label, yy.ravel(), xx.ravel(), cls, colour, rng, texture)


def _ellipse(image, label, rng, cy, cx, ry, rx, cls, colour, texture=0.0):
    rr, cc = draw.ellipse(cy, cx, max(ry, 1), max(rx, 1), shape=label.shape)
    _paint(image, label, rr, cc, cls, colour, rng, texture)


def _vehicle(image, label, rng, ground_y, x, length, height, cls, colour):
    """Body, darker windows (same class), wheels (same class)."""
    _rect(image, label, rng, ground_y - height, ground_y - height * 0.15, x, x + length, cls, colour, 6)
    win = np.clip(np.asarray(colour) * 0.35 + 40, 0, 255)
    _rect(image, label, rng, ground_y - height * 0.92, ground_y - height * 0.6,
          x + length * 0.12, x + length * 0.88, cls, win, 4)
    r = max(1, int(height * 0.18))
    for wx in (x + length * 0.2, x + length * 0.8):
        _ellipse(image, label, rng, ground_y - r, wx, r, r, cls, (25, 25, 25), 3)


def _person(image, label, rng, ground_y, x, height, cls=PERSON):
    colour = rng.uniform(30, 200, 3)
    body_h = height * 0.75
    _ellipse(image, label, rng, ground_y - body_h / 2, x, body_h / 2, max(1, height * 0.13), cls, colour, 8)
    _ellipse(image, label, rng, ground_y - body_h - height * 0.1, x, height * 0.11, height * 0.09,
             cls, (205, 165, 140), 5)


def _two_wheeler(image, label, rng, ground_y, x, size, cls):
    r = max(1, int(size * 0.25))
    colour = (40, 40, 40) if cls == BICYCLE else rng.uniform(60, 220, 3)
    for wx in (x, x + size):
        rr, cc = draw.circle_perimeter(int(ground_y - r), int(wx), r, shape=label.shape)
        _paint(image, label, rr, cc, cls, (30, 30, 30), rng, 3)
    rr, cc = draw.line(int(ground_y - r), int(x), int(ground_y - 2 * r), int(x + size / 2))
    keep = (rr >= 0) & (rr < label.shape[0]) & (cc >= 0) & (cc < label.shape[1])
    _paint(image, label, rr[keep], cc[keep], cls, colour, rng, 3)
    if cls == MOTORCYCLE:
        _rect(image, label, rng, ground_y - 2 * r, ground_y - r, x + size * 0.2, x + size * 0.8, cls, colour, 5)


def render_scene(rng: np.random.Generator, height: int, width: int, force: int | None = None):
    """Renders one street scene.

    Args:
      rng: the random generator (the scene is a pure function of its state).
      height, width: image size in pixels.
      force: a class id from the object list that this scene must contain.

    Returns:
      image uint8 [H, W, 3] RGB, label uint8 [H, W] train ids (every pixel labelled).
    """
    H, W = height, width
    image = np.zeros((H, W, 3), np.float32)
    label = np.zeros((H, W), np.uint8)
    s = H / 128.0  # object scale

    horizon = int(H * rng.uniform(0.38, 0.5))
    # Sky: a vertical gradient; sometimes overcast grey, close to building colours.
    overcast = rng.random() < 0.35
    top = np.array([150, 150, 155]) if overcast else np.array([70, 120, 200])
    bottom = np.array([185, 185, 190]) if overcast else np.array([160, 195, 235])
    t = np.linspace(0, 1, H)[:, None, None]
    image[:] = top * (1 - t) + bottom * t
    label[:] = SKY

    # Buildings: a skyline of blocks with window grids, reaching a bit below the horizon.
    x = -int(rng.integers(0, 20))
    base_y = horizon + int(H * 0.08)
    while x < W:
        bw = int(W * rng.uniform(0.1, 0.3))
        btop = int(H * rng.uniform(0.05, 0.32))
        colour = rng.choice([[140, 130, 120], [170, 160, 140], [110, 100, 95], [150, 150, 155], [120, 90, 70]])
        colour = np.asarray(colour) + rng.normal(0, 12, 3)
        _rect(image, label, rng, btop, base_y, x, x + bw, BUILDING, colour, 5)
        wy, wx = max(3, int(8 * s)), max(3, int(7 * s))
        win = colour * rng.uniform(0.35, 0.6)
        for yy in range(btop + 3, base_y - 4, wy):
            for xx in range(x + 2, x + bw - 3, wx):
                _rect(image, label, rng, yy, yy + wy // 2, xx, xx + wx // 2, BUILDING, win, 3)
        x += bw

    # Vegetation: textured trees over the buildings near the horizon.
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0, W), horizon - rng.uniform(0.05, 0.22) * H
        ry, rx = rng.uniform(0.08, 0.2) * H, rng.uniform(0.05, 0.15) * W
        rr, cc = draw.ellipse(cy, cx, ry, rx, shape=(H, W))
        green = np.array([60, 110, 45]) + rng.normal(0, 10, 3)
        _paint(image, label, rr, cc, VEGETATION, green, rng, texture=28)
        _rect(image, label, rng, cy + ry * 0.8, base_y, cx - 1 * s, cx + 1 * s + 1, VEGETATION, (70, 55, 40), 4)

    # Ground: terrain strip, sidewalks, road converging to a vanishing point.
    vx = W * rng.uniform(0.35, 0.65)
    ground_rows = np.arange(base_y, H)
    yy, xx = np.mgrid[base_y:H, 0:W]
    depth = (yy - horizon) / max(1, H - horizon)
    half_road = depth * W * rng.uniform(0.45, 0.7)
    half_walk = half_road + depth * W * rng.uniform(0.12, 0.25)
    dist = np.abs(xx - vx)
    road_grey = rng.uniform(85, 115)
    walk_grey = road_grey + rng.uniform(6, 14)  # look-alike
    terrain = dist >= half_walk
    walk = (dist >= half_road) & ~terrain
    road = dist < half_road
    tex = _noise(rng, yy.shape, 5)
    region = image[base_y:H]
    lab = label[base_y:H]
    region[terrain] = (np.array([95, 115, 60]) + tex[terrain, None])  # greenish, like vegetation
    lab[terrain] = TERRAIN
    region[walk] = walk_grey + tex[walk, None] + np.array([4, 2, 0])
    lab[walk] = SIDEWALK
    region[road] = road_grey + tex[road, None]
    lab[road] = ROAD
    # Lane marks (still road).
    marks = road & (np.abs(xx - vx) < np.maximum(1, depth * 2.5 * s)) & (((yy // max(2, int(6 * s))) % 2) == 0)
    region[marks] = 210
    del ground_rows

    # Objects: chance draws plus the forced kind, long-tailed.
    kinds = [c for c, p in _OBJECTS if rng.random() < p]
    if force is not None and force not in kinds:
        kinds.append(force)

    def ground_at(frac):
        return int(base_y + (H - base_y) * frac)

    for cls in kinds:
        if cls == WALL:
            wx0 = rng.uniform(0, W * 0.7)
            bld = np.clip(image[max(0, horizon - 5), int(min(W - 1, wx0))], 0, 255)
            _rect(image, label, rng, base_y - 0.1 * H, base_y + 2, wx0, wx0 + W * rng.uniform(0.1, 0.3),
                  WALL, bld + rng.normal(0, 6, 3), 4)  # building-coloured wall
        elif cls == FENCE:
            fx0 = rng.uniform(0, W * 0.7)
            fx1 = fx0 + W * rng.uniform(0.1, 0.3)
            fy0 = base_y - 0.09 * H
            _rect(image, label, rng, fy0, base_y + 1, fx0, fx1, FENCE, (120, 115, 100), 6)
            for px in np.arange(fx0, fx1, max(2, 4 * s)):  # see-through stripes stay fence
                _rect(image, label, rng, fy0, base_y + 1, px, px + 1, FENCE, (60, 60, 55), 3)
        elif cls in (POLE, SIGN, LIGHT):
            for _ in range(int(rng.integers(1, 4))):
                px = rng.uniform(0, W)
                gy = ground_at(rng.uniform(0.0, 0.3))
                ptop = gy - rng.uniform(0.35, 0.6) * H
                pw = 1 if rng.random() < 0.6 else 2
                _rect(image, label, rng, ptop, gy, px, px + pw, POLE, (70, 70, 75), 3)
                if cls == SIGN:
                    r = max(2, int(4 * s))
                    colour = rng.choice([[200, 30, 30], [30, 60, 190], [220, 200, 40]])
                    _ellipse(image, label, rng, ptop + r, px, r, r, SIGN, colour, 6)
                elif cls == LIGHT:
                    _rect(image, label, rng, ptop, ptop + 8 * s, px - 2 * s, px + 2 * s + 1, LIGHT, (30, 30, 25), 3)
                    _ellipse(image, label, rng, ptop + 2 * s, px, max(1, s), max(1, s), LIGHT,
                             rng.choice([[230, 40, 30], [40, 220, 60]]), 0)
        elif cls == PERSON:
            for _ in range(int(rng.integers(1, 4))):
                gy = ground_at(rng.uniform(0.2, 0.9))
                depth_f = (gy - horizon) / (H - horizon)
                side = rng.choice([-1, 1])
                px = vx + side * (depth_f * W * 0.6)
                _person(image, label, rng, gy, px, 40 * s * depth_f + 6 * s)
        elif cls in (CAR, TRUCK, BUS):
            n = int(rng.integers(1, 4)) if cls == CAR else 1
            for _ in range(n):
                gy = ground_at(rng.uniform(0.15, 0.95))
                depth_f = (gy - horizon) / (H - horizon)
                length = {CAR: 0.18, TRUCK: 0.28, BUS: 0.38}[cls] * W * (0.3 + depth_f)
                height = {CAR: 0.55, TRUCK: 0.9, BUS: 0.75}[cls] * length * 0.5
                x0 = vx + rng.uniform(-0.6, 0.3) * depth_f * W
                colour = rng.uniform(20, 235, 3) if cls == CAR else rng.choice(
                    [[200, 200, 200], [40, 90, 160], [220, 180, 40]])
                _vehicle(image, label, rng, gy, x0, length, height, cls, colour)
        elif cls == TRAIN:
            _vehicle(image, label, rng, base_y + 2, rng.uniform(-0.2, 0.4) * W, W * rng.uniform(0.4, 0.7),
                     0.22 * H, TRAIN, (180, 190, 200))
        elif cls in (BICYCLE, MOTORCYCLE, RIDER):
            gy = ground_at(rng.uniform(0.4, 0.9))
            depth_f = (gy - horizon) / (H - horizon)
            size = 30 * s * (0.3 + depth_f)
            bx = vx + rng.choice([-1, 1]) * depth_f * W * 0.5
            kind = cls if cls != RIDER else (BICYCLE if rng.random() < 0.5 else MOTORCYCLE)
            _two_wheeler(image, label, rng, gy, bx, size, kind)
            if cls == RIDER:
                _person(image, label, rng, gy - size * 0.45, bx + size * 0.5, size * 1.1, RIDER)

    # Shadows: dark bands across classes (colour edges inside classes).
    for _ in range(int(rng.integers(1, 3))):
        x0 = rng.uniform(-0.2, 1.0) * W
        wdt = rng.uniform(0.1, 0.35) * W
        slope = rng.uniform(-1.5, 1.5)
        y0 = rng.uniform(0.45, 0.8) * H
        rows = np.array([y0, y0, H, H])
        cols = np.array([x0, x0 + wdt, x0 + wdt + slope * (H - y0), x0 + slope * (H - y0)])
        rr, cc = draw.polygon(rows, cols, shape=(H, W))
        image[rr, cc] *= rng.uniform(0.45, 0.65)

    image += _noise(rng, image.shape, 3.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def _params(num_train, num_val, height, width, seed):
    return {"version": 1, "num_train": num_train, "num_val": num_val, "height": height,
            "width": width, "seed": seed}


def sample_name(index: int) -> str:
    return f"{CITY}/{CITY}_{index:06d}"


def generate(root: Path | str, num_train: int = 100, num_val: int = 30, height: int = 128,
             width: int = 256, seed: int = 0, progress: bool = False) -> Path:
    """Writes the synthetic data set under `root` unless the same one is already complete.

    Files are written atomically and `synthetic.json` last, so an interrupted generation is
    redone from the start on the next call. Returns `root`.
    """
    for key, v in (("num_train", num_train), ("num_val", num_val), ("height", height), ("width", width)):
        if int(v) < 1:
            raise BadInput(f"synthetic data set: {key} must be a positive integer, got {v}")
    if height < 32 or width < 32:
        raise BadInput(f"synthetic data set: images must be at least 32x32, got {height}x{width}")
    root = Path(root)
    params = _params(num_train, num_val, height, width, seed)
    meta = root / "synthetic.json"
    if meta.is_file() and json.loads(meta.read_text()) == params:
        return root
    if meta.is_file():
        meta.unlink()  # different parameters: regenerate (the old files are overwritten)
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        names = []
        it = range(count)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"synthetic {split}", unit="img")
        for i in it:
            rng = np.random.default_rng([seed, split_index, i])
            force = _OBJECTS[i % len(_OBJECTS)][0]
            image, label = render_scene(rng, height, width, force=force)
            name = sample_name(i)
            stem = name.split("/")[1]
            io_utils.write_png(root / "leftImg8bit" / split / CITY / f"{stem}_leftImg8bit.png", image)
            io_utils.write_png(root / "gtFine" / split / CITY / f"{stem}_gtFine_labelTrainIds.png", label)
            names.append(name)
        io_utils.write_text(root / "image_list" / f"{split}.txt", "\n".join(names) + "\n")
    io_utils.write_json(meta, params)
    return root
