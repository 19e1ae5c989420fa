"""Oracle superpixels: connected components of the ground truth, one `.npz` map per image.

  python scripts/gen_oracle_spx.py --split train
"""

import argparse
import sys
from pathlib import Path

from deeplab import cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataset_flags(p)
    p.add_argument("--split", default="train", help="the split")
    p.add_argument("--output_dir", default=None,
                   help="default: the cache, <cache_dir>/<data>/superpixels/oracle/<split>")
    cli.add_executor_flags(p)
    p.add_argument("--shard", type=cli.parse_shard, default=None,
                   help="i/n: only every n-th image from the i-th (several machines)")
    args = p.parse_args(argv)
    descriptor, root = cli.resolve_dataset(args)
    out = Path(args.output_dir) if args.output_dir else cli.data_cache(args, root).oracle_dir(args.split)
    from deeplab.experiment import tasks

    samples = descriptor.list_split(root, args.split)
    with cli.make_executor(args) as ex:
        print(f"{out}: {tasks.extract_oracle(descriptor, samples, out, ex, args.shard)}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
