"""Generates the embedded synthetic street scenes (deeplab/datasets/synthetic.py) with a chosen
size, unless the same set is already complete there.

  python scripts/make_synthetic.py --dataset_dir datasets/synthetic_bench --num_train 500 --num_val 100
"""

import argparse
import sys


def main(argv=None) -> int:
    from deeplab.datasets import synthetic

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", required=True, help="where the data set is written")
    p.add_argument("--num_train", type=int, default=100, help="train images")
    p.add_argument("--num_val", type=int, default=30, help="val images")
    p.add_argument("--height", type=int, default=128, help="image height")
    p.add_argument("--width", type=int, default=256, help="image width")
    p.add_argument("--seed", type=int, default=0, help="generator seed (the stand-in backbone's scenes use their own)")
    args = p.parse_args(argv)
    synthetic.generate(args.dataset_dir, args.num_train, args.num_val, args.height, args.width,
                       args.seed, progress=True)
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
