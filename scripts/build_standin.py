"""Builds the ImageNet stand-in backbone (deeplab/training/standin.py) unless it exists; prints its path.

  python scripts/build_standin.py --model_variant xception_light      # -> models/standin_xception_light_<key>.npz

Progress goes to stderr, the path alone to stdout, so a driver can take it:
  INIT_CHECKPOINT="$(python scripts/build_standin.py --model_variant "$MODEL_VARIANT")"
"""

import argparse
import dataclasses
import sys


def main(argv=None) -> int:
    from deeplab.training.standin import StandinConfig, build

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = StandinConfig()
    helps = {"model_variant": "the backbone to pretrain", "num_images": "generated training scenes",
             "num_val": "generated val scenes (its own 7-category mIoU)", "height": "scene height",
             "width": "scene width", "scene_seed": "the scenes' generator seed",
             "steps": "training steps", "base_learning_rate": "poly schedule's start",
             "batch_norm_decay": "batch norm's moving-average decay", "crop_size": "training crop",
             "batch_size": "training batch", "seed": "training seed"}
    for f in dataclasses.fields(StandinConfig):
        value = getattr(defaults, f.name)
        p.add_argument(f"--{f.name}", type=type(value), default=value,
                       help=f"{helps.get(f.name, f.name.replace('_', ' '))} (default {value})")
    p.add_argument("--work_dir", default="work_dirs", help="scenes and training state: WORK_DIR/standin/<key>/")
    p.add_argument("--models_dir", default=None, help="where the .npz goes (default: models/)")
    args = vars(p.parse_args(argv))
    work_dir, models_dir = args.pop("work_dir"), args.pop("models_dir")
    config = StandinConfig(**args)
    path = build(config, work_dir, **({"models_dir": models_dir} if models_dir else {}))
    print(path)
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
