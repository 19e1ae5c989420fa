"""Converts a split of any data set (Cityscapes, PASCAL VOC, synthetic) to DeepLab TFRecords.

Full ground truth by default; with --label_dir, the partial label PNGs of an AL round
(255 = unlabelled).

  python scripts/build_tfrecords.py --dataset synthetic --splits train val
"""

import argparse
import glob
import sys
from pathlib import Path

from deeplab import cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataset_flags(p)
    p.add_argument("--splits", nargs="+", default=["train", "val"], help="the splits to write")
    p.add_argument("--output_dir", default=None, help="default: the cache, <cache_dir>/<data>/tfrecord")
    p.add_argument("--num_shards", type=int, default=4, help="shards per split")
    p.add_argument("--label_dir", default=None, help="partial label PNGs of a round ({name}.png)")
    p.add_argument("--skip_existing", action="store_true",
                   help="leave splits alone whose records are complete, hold exactly the list "
                        "and are as written (a damaged shard is rebuilt)")
    cli.add_executor_flags(p)
    p.add_argument("--job_dir", default=None, help="take the data set from an experiment's config")
    args = p.parse_args(argv)
    out = Path(args.output_dir) if args.output_dir else None
    exp = None
    if args.job_dir:
        from deeplab.experiment.job import Job

        exp = Job.open(args.job_dir)
        args.dataset, args.dataset_dir = exp.config.dataset, str(exp.data_root)
        args.num_workers, args.executor = exp.config.num_workers, exp.config.executor
        out = out or exp.val_tfrecord_dir
    descriptor, root = cli.resolve_dataset(args)
    if exp is not None:  # the job's view of the data (IMAGE_SCALE: the resized copies)
        descriptor = exp.descriptor
    out = out or cli.data_cache(args, root).tfrecord_dir
    from deeplab.datasets import build_data, tfrecord

    with cli.make_executor(args) as ex:
        for split in args.splits:
            if not descriptor.has_split(root, split):
                print(f"{split}: {descriptor.list_file(root, split)} does not exist: no {split} "
                      "split (a folder data set without it is not evaluated)")
                continue
            samples = descriptor.list_split(root, split)
            if args.label_dir is None:
                descriptor.require_labels(samples, split, f"TFRecords of the {split} split",
                                          "Add the labels, or pass --label_dir")
            if args.skip_existing:
                names = [s.name for s in samples]
                damaged = tfrecord.meta_matches(out, split, names) and tfrecord.damaged_shards(out, split)
                if damaged:
                    print(f"{split}: {damaged[0]} is damaged (its bytes differ from what was "
                          f"written; {len(damaged)} shard(s)): rebuilding")
                elif tfrecord.meta_matches(out, split, names):
                    print(f"{split}: complete TFRecords of {len(samples)} images in {out}, skipped")
                    continue
                elif glob.glob(tfrecord.shard_pattern(out, split)):
                    print(f"{split}: the TFRecords in {out} are partial or hold another list: rebuilding")
            paths = build_data.build_split(descriptor, samples, out, split, args.num_shards,
                                           args.label_dir, executor=ex)
            print(f"{split}: {len(samples)} images -> {len(paths)} shards in {out}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
