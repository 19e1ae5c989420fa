"""Exports a trained model as a TensorFlow SavedModel: uint8 images [B, H, W, 3] in,
softmax probabilities [B, H, W, C] out (endpoint `serve`).

  python -m deeplab.export_model --checkpoint_dir work_dirs/exp/train --export_path models/exported
"""

from __future__ import annotations

import argparse
import sys

from deeplab.training.export import export
from deeplab.training.trainer import load_trained


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint_dir", required=True)
    p.add_argument("--export_path", required=True)
    p.add_argument("--inference_scale", type=float, default=1.0)
    args = p.parse_args(argv)
    model, _ = load_trained(args.checkpoint_dir)
    print(f"exported to {export(model, args.export_path, args.inference_scale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
