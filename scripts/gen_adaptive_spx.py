"""Adaptive superpixels: merges base superpixels with a trained model's probabilities
(streaming inference over the training images) and writes, per image, the merged map with its
region statistics, plus a summary (regions per image and ASA, before and after).

Inside an experiment (what bash_files/adaptive_superpixel.sh calls; REGIONS decides adaptive,
base or oracle maps, with round-1's model):
  python scripts/gen_adaptive_spx.py --job_dir work_dirs/demo --round 1

Standalone (defaults find the embedded data set and its SEEDS maps):
  python scripts/gen_adaptive_spx.py --checkpoint_dir work_dirs/demo/round_00/train \
      --output_dir /tmp/adaptive --overlay_dir /tmp/adaptive_overlays
"""

import argparse
import json
import sys
from pathlib import Path

from deeplab import cli
from deeplab.experiment.settings import REGION_MODES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job_dir", default=None, help="experiment mode: the job folder")
    p.add_argument("--round", type=int, default=None, help="experiment mode: the round (>= 1)")
    cli.add_dataset_flags(p)
    p.add_argument("--split", default="train", help="standalone: the split whose images are merged")
    p.add_argument("--checkpoint_dir", default=None, help="a finished train_logdir")
    p.add_argument("--base_dir", default=None,
                   help="base maps (default: those of --method and --num_superpixels in the cache)")
    cli.add_superpixel_flags(p)
    cli.add_executor_flags(p)
    p.add_argument("--output_dir", default=None,
                   help="standalone: where the merged maps and summary.json go (required there)")
    p.add_argument("--regions", default="adaptive", choices=REGION_MODES,
                   help="standalone: adaptive (merged by the model), base (unmerged) or oracle (ground-truth components)")
    p.add_argument("--eps", type=float, default=0.1,
                   help="standalone: Jensen-Shannon distance below which neighbours merge (EPS)")
    p.add_argument("--inference_scale", type=float, default=1.0, help="paper: 0.5 on Cityscapes")
    p.add_argument("--overlay_dir", default=None,
                   help="standalone: where to draw base and merged regions over a few images (none: no drawings)")
    p.add_argument("--repair", action="store_true",
                   help="experiment mode: read every map of the round through and compute the "
                        "damaged ones again (the round's regions stage is done already)")
    args = p.parse_args(argv)

    if args.job_dir:
        if args.round is None:
            p.error("--job_dir needs --round")
        if args.repair:
            from deeplab.experiment.job import Job
            from deeplab.experiment.stages import repair_round_regions

            def repair():
                print(json.dumps(repair_round_regions(Job.open(args.job_dir), args.round)))
                return 0

            return cli.guarded(repair, what=f"round {args.round}: repair of the maps")
        return cli.guarded(cli.run_stage, args.job_dir, args.round, "regions", cli.stage_function("regions"),
                           what=f"round {args.round}: regions")
    if not args.checkpoint_dir or not args.output_dir:
        p.error("standalone mode needs --checkpoint_dir and --output_dir")
    descriptor, root = cli.resolve_dataset(args)
    cache = cli.data_cache(args, root)
    base_dir = Path(args.base_dir) if args.base_dir else cache.base_dir(
        args.method, args.num_superpixels, args.superpixel_size_px, args.split)
    from deeplab.experiment.stages import generate_round_regions
    from deeplab.training.inference import Predictor

    summary = generate_round_regions(
        descriptor, descriptor.list_split(root, args.split),
        Predictor.from_train_dir(args.checkpoint_dir, args.inference_scale), base_dir, args.output_dir,
        args.regions, args.eps, oracle_dir=cache.oracle_dir(args.split), overlay_dir=args.overlay_dir,
        executor=cli.make_executor(args))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
