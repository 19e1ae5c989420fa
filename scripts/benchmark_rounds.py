"""Per-image times of the round stages at Cityscapes scale: selection scoring (per image share
of a pool), oracle answers, painting several rounds of answers, and sieving.

One synthetic 1024x2048 scene with --num_superpixels SEEDS-like regions (a grid, so the
benchmark does not wait for SEEDS), 19-class synthetic probabilities, --answers_per_image
answered regions per round (the paper: 50,000 clicks over about 3000 images, about 17) of which
some are merged (large) regions, --rounds rounds of answers.

  python scripts/benchmark_rounds.py
"""

import argparse
import sys

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--num_superpixels", type=int, default=8192)
    p.add_argument("--answers_per_image", type=int, default=17)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--pool_images", type=int, default=3000,
                   help="images in the selection pool (Cityscapes train has about 3000)")
    args = p.parse_args(argv)
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from benchmark_kernels import best_of, synthetic_probs

    from deeplab.active import acquisition, adaptive, annotation, sieving
    from deeplab.datasets import synthetic

    rng = np.random.default_rng(0)
    h, w = args.height, args.width
    _, label = synthetic.render_scene(rng, h, w)
    probs = synthetic_probs(label, 19, rng)
    side = int(np.sqrt(h * w / args.num_superpixels))
    base = ((np.arange(h)[:, None] // side) * ((w + side - 1) // side) + np.arange(w)[None, :] // side).astype(np.int32)
    merged = adaptive.merge_superpixels(probs, base, 0.1)
    maps = {t: (base if t == 0 else merged) for t in range(args.rounds)}
    answers = {}
    for t, m in maps.items():
        ids = rng.choice(m.max() + 1, size=args.answers_per_image, replace=False)
        answers[t] = (ids, annotation.oracle_answers(m, label, ids)[0])

    # Selection: scoring and ranking a Cityscapes-size pool, reported per image.
    n_pool = args.pool_images * int(merged.max() + 1)
    u, dom, size = rng.random(n_pool), rng.integers(0, 19, n_pool), rng.integers(1, 5000, n_pool)
    img = np.repeat(np.arange(args.pool_images), n_pool // args.pool_images + 1)[:n_pool]
    reg = np.arange(n_pool) - np.searchsorted(img, img)
    cost = np.ones(n_pool, np.int64)

    def select():
        s = acquisition.class_balanced_scores(u, dom, size, 19)
        acquisition.select(s, np.ones(n_pool, bool), img, reg, cost, 50000)

    t_sel = best_of(select, 1)[0] / args.pool_images
    t_ans = best_of(lambda: annotation.oracle_answers(merged, label, answers[1][0]), 3)[0]
    t_paint = best_of(lambda: annotation.paint(maps, answers), 3)[0]
    min_size = 2 * (h * w) // args.num_superpixels

    def sieve_all():
        for t, (ids, ans) in answers.items():
            sieving.sieve_labels(maps[t], ids, ans, probs, min_size_px=min_size)

    t_sieve = best_of(sieve_all, 3)[0]
    print(f"image {h}x{w}, {base.max() + 1} base / {merged.max() + 1} merged regions, "
          f"{args.answers_per_image} answers x {args.rounds} rounds, min_size {min_size} px")
    print(f"{'stage':40s} {'s / image':>10s}")
    print(f"{'selection (pool of %d images, per image)' % args.pool_images:40s} {t_sel:10.4f}")
    print(f"{'oracle answers (one round)':40s} {t_ans:10.4f}")
    print(f"{'painting (%d rounds)' % args.rounds:40s} {t_paint:10.4f}")
    print(f"{'sieving (%d rounds, kneed per region)' % args.rounds:40s} {t_sieve:10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
