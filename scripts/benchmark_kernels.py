"""Per-image times of the superpixel stages at Cityscapes scale, vectorised vs per-region loops.

One synthetic street scene at --height x --width (default 1024x2048), --num_superpixels base
regions (default 8192), --num_classes (19) synthetic probabilities (the ground truth, blurred
and mixed with a smooth random field, then softmax). Prints SLIC and SEEDS times, then
statistics and merge, each as the vectorised kernel and as a per-region loop in the style of
the original code (`np.where` per region over the whole image). The loop versions run on the
first --loop_regions regions and are extrapolated linearly to all regions (say 0 to run them
on all, which takes minutes). Peak memory is traced with tracemalloc (numpy allocations).

  python scripts/benchmark_kernels.py
  python scripts/benchmark_kernels.py --height 512 --width 1024 --num_superpixels 2048
"""

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def synthetic_probs(label, num_classes, rng):
    import cv2

    h, w = label.shape
    field = rng.normal(0, 1.0, (max(2, h // 64), max(2, w // 64), num_classes)).astype(np.float32)
    logits = np.stack([cv2.resize(field[..., c], (w, h), interpolation=cv2.INTER_LINEAR)
                       for c in range(num_classes)], -1) * 2.0
    valid = label < num_classes
    onehot = np.zeros((h, w, num_classes), np.float32)
    onehot[valid, label[valid]] = 3.0
    logits += onehot + rng.normal(0, 0.3, logits.shape).astype(np.float32)
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    return p.astype(np.float32)


def loop_statistics(probs, regions, ids):
    """Per-region loop: one full-image mask per region."""
    out = []
    for j in ids:
        ys, xs = np.where(regions == j)
        px = probs[ys, xs]
        srt = np.sort(px, axis=1)
        counts = np.bincount(np.argmax(px, 1), minlength=probs.shape[2])
        out.append((len(ys), np.mean(srt[:, -2] / srt[:, -1]), int(np.argmax(counts))))
    return out


def loop_merge_pass(probs, regions, ids):
    """The original's per-region work for the merge: mean vector, uncertainty and neighbours by
    rescanning the image for each region (the seed traversal itself is not included)."""
    from scipy.ndimage import binary_dilation

    out = []
    for j in ids:
        mask = regions == j
        px = probs[mask]
        srt = np.sort(px, axis=1)
        grown = binary_dilation(mask, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool))
        nbrs = np.unique(regions[grown & ~mask])
        out.append((px.mean(0), np.mean(srt[:, -2] / srt[:, -1]), nbrs))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=1024, help="image height")
    p.add_argument("--width", type=int, default=2048, help="image width")
    p.add_argument("--num_superpixels", type=int, default=8192, help="base superpixels per image")
    p.add_argument("--num_classes", type=int, default=19, help="classes of the random probabilities")
    p.add_argument("--eps", type=float, default=0.1, help="the merge's Jensen-Shannon threshold")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (the best is kept)")
    p.add_argument("--loop_regions", type=int, default=256,
                   help="regions the loop versions are timed on (then extrapolated)")
    p.add_argument("--seed", type=int, default=0, help="the random image's and probabilities' seed")
    p.add_argument("--skip_opencv_seeds", action="store_true",
                   help="skip OpenCV's own SEEDS calls (about a minute at 1024x2048)")
    args = p.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)  # per-image times on one core, as a worker of the pool runs them
    from deeplab.active import adaptive, superpixels
    from deeplab.active import regions as R
    from deeplab.datasets import synthetic

    rng = np.random.default_rng(args.seed)
    image, label = synthetic.render_scene(rng, args.height, args.width)
    probs = synthetic_probs(label, args.num_classes, rng)
    print(f"image {args.height}x{args.width}, {args.num_superpixels} superpixels requested, "
          f"{args.num_classes} classes, probs {probs.nbytes / 2**20:.0f} MiB, cores {os.cpu_count()}")
    rows = []
    t_slic, r_slic = best_of(lambda: superpixels.slic(image, args.num_superpixels), 1)
    rows.append(("SLIC (scikit-image)", t_slic, None, f"{r_slic.max() + 1} regions"))
    t_seeds, r_seeds = best_of(lambda: superpixels.seeds(image, args.num_superpixels), 1)
    used = len(np.unique(superpixels.seeds_bins(superpixels.seeds_hsv(image), 10)))
    rows.append(("SEEDS, exact fast path", t_seeds, None,
                 f"{r_seeds.max() + 1} regions, {used} of 1000 colour bins used"))
    if not args.skip_opencv_seeds:
        hsv = superpixels.seeds_hsv(image)
        t_cv, r_cv = best_of(lambda: superpixels.seeds_opencv(hsv, args.num_superpixels), 1)
        same = "identical" if np.array_equal(r_cv, r_seeds) else "DIFFERENT"
        rows.append(("SEEDS, OpenCV on float HSV", t_cv, None, f"the paper's call; {same} maps"))
        for levels, bins in ((4, 10), (5, 5), (4, 5)):
            t_v, _ = best_of(lambda: superpixels.seeds_opencv(hsv, args.num_superpixels, levels,
                                                              histogram_bins=bins), 1)
            rows.append((f"  OpenCV, {levels} levels, {bins} bins", t_v, None, "other superpixels"))
    base = r_seeds
    n = int(base.max()) + 1
    ids = np.arange(n) if args.loop_regions <= 0 else np.arange(min(n, args.loop_regions))
    scale = n / len(ids)
    t_stats, _ = best_of(lambda: R.region_statistics(probs, base), args.repeat)
    t_loop_stats, _ = best_of(lambda: loop_statistics(probs, base, ids), 1)
    rows.append(("statistics (section 4)", t_stats, t_loop_stats * scale, f"{n} regions"))
    t_merge, res = best_of(lambda: adaptive.adaptive_superpixels(probs, base, args.eps), args.repeat)
    t_loop_merge, _ = best_of(lambda: loop_merge_pass(probs, base, ids), 1)
    rows.append(("merge + statistics (section 3)", t_merge, t_loop_merge * scale,
                 f"{n} -> {res.regions.max() + 1} regions"))
    tracemalloc.start()
    adaptive.adaptive_superpixels(probs, base, args.eps)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    loop_note = "all regions" if args.loop_regions <= 0 else f"extrapolated from {len(ids)} regions"
    print(f"\n{'stage':32s} {'vectorised s':>13s} {'loop s':>10s} {'speed-up':>9s}  note")
    for name, t, tl, note in rows:
        loop = f"{tl:10.2f}" if tl is not None else f"{'-':>10s}"
        speed = f"{tl / t:8.0f}x" if tl is not None else f"{'-':>9s}"
        print(f"{name:32s} {t:13.3f} {loop} {speed}  {note}")
    print(f"\nloop versions: {loop_note}; vectorised: best of {args.repeat}")
    print(f"merge peak traced memory: {peak / 2**20:.0f} MiB = {peak / probs.nbytes:.2f}x the probs array")
    return 0


if __name__ == "__main__":
    sys.exit(main())
