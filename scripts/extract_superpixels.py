"""Base superpixels (SLIC or SEEDS) for a split, one `.npz` map per image.

  python scripts/extract_superpixels.py                       # synthetic train, SEEDS
  python scripts/extract_superpixels.py --dataset cityscapes --method seeds \
      --num_superpixels 8192 --num_workers 2 --shard 0/4

In an experiment (`--job_dir`, what bash_files/warm_up.sh calls), the settings come from its
config, and with REGIONS=oracle the ground-truth oracle maps are written too.

Resumes: images whose map exists are skipped.
"""

import argparse
import json
import sys
from pathlib import Path

from deeplab import cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataset_flags(p)
    p.add_argument("--split", default="train", help="standalone: the split")
    cli.add_superpixel_flags(p)
    p.add_argument("--output_dir", default=None,
                   help="default: the cache, <cache_dir>/<data>/superpixels/<method>_<count>/<split>")
    cli.add_executor_flags(p)
    p.add_argument("--shard", type=cli.parse_shard, default=None, help="i/n: this machine's part")
    p.add_argument("--overlay_dir", default=None, help="also write boundary overlays here")
    p.add_argument("--report", action="store_true",
                   help="print regions per image, ASA and boundary recall against the ground truth")
    p.add_argument("--job_dir", default=None,
                   help="take data set, method, count and output from an experiment's config "
                        "(with REGIONS=oracle, also writes the oracle maps)")
    args = p.parse_args(argv)
    exp = None
    if args.job_dir:
        from deeplab.experiment.job import Job

        exp = Job.open(args.job_dir)
        c = exp.config
        args.dataset, args.dataset_dir, args.method = c.dataset, str(exp.data_root), c.superpixel_method
        args.num_superpixels = c.num_superpixels or None
        args.superpixel_size_px, args.output_dir = c.superpixel_size_px, str(exp.base_dir)
        args.split, args.num_workers, args.executor = "train", c.num_workers, c.executor
    descriptor, root = cli.resolve_dataset(args)
    if exp is not None:  # the job's view of the data (IMAGE_SCALE: the resized copies)
        descriptor = exp.descriptor
    out = Path(args.output_dir) if args.output_dir else cli.data_cache(args, root).base_dir(
        args.method, args.num_superpixels, args.superpixel_size_px, args.split)
    from deeplab.experiment import tasks

    samples = descriptor.list_split(root, args.split)
    with cli.make_executor(args) as ex:
        summary = tasks.extract_base(descriptor, samples, out, args.method, args.superpixel_size_px,
                                    args.num_superpixels, ex, args.shard, args.overlay_dir)
        print(f"base superpixels in {out}\n  {tasks.describe_extraction(summary, args.split)}")
        if "count_warning" in summary:
            print(f"WARNING: {summary['count_warning']}", file=sys.stderr)
        if exp is not None and exp.config.regions == "oracle":
            oracle = tasks.extract_oracle(descriptor, samples, exp.oracle_dir, ex)
            print(f"oracle superpixels in {exp.oracle_dir}\n  {tasks.describe_extraction(oracle, args.split)}")
    if args.report:
        print(json.dumps(tasks.region_quality(descriptor, tasks.shard_items(samples, args.shard), out)))
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
