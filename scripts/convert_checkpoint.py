"""Converts a DeepLab model-zoo TF1 checkpoint to DeepLab-named Keras weights (`.npz`).

  python scripts/convert_checkpoint.py --checkpoint models/xception_65/model.ckpt \
      --model_variant xception_65 --num_classes 19 --output models/xception_65_imagenet.npz

Works for the ImageNet backbone checkpoint (ASPP, decoder and logits stay newly initialised)
and for DeepLabv3+ checkpoints trained on Cityscapes (all 732 variables). Reports missing and
unexpected variables; skips the logits when the class count differs; fails on other shape
mismatches. Nothing is downloaded: put the checkpoint files under models/ yourself.
"""

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="TF1 checkpoint prefix (or its folder)")
    p.add_argument("--model_variant", default="xception_65", help="the backbone the checkpoint holds")
    p.add_argument("--num_classes", type=int, default=19, help="the classes of the model the weights are for")
    p.add_argument("--output_stride", type=int, default=16, help="the model's output stride")
    p.add_argument("--output", required=True, help="where to write the .npz")
    args = p.parse_args(argv)
    from deeplab.model import ModelOptions, build_model
    from deeplab.training import checkpoints

    model = build_model(ModelOptions(num_classes=args.num_classes, model_variant=args.model_variant,
                                     output_stride=args.output_stride))
    report = checkpoints.load_tf1_checkpoint(model, args.checkpoint)
    print(report.summary())
    if report.missing:
        print("missing (newly initialised):", ", ".join(report.missing[:8]),
              "..." if len(report.missing) > 8 else "")
    if report.unexpected:
        print("unexpected (ignored):", ", ".join(report.unexpected[:8]),
              "..." if len(report.unexpected) > 8 else "")
    checkpoints.save_weights(model, args.output)
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
