"""Exports a trained model as a TensorFlow SavedModel: uint8 images [B, H, W, 3] in,
softmax probabilities [B, H, W, C] out (endpoint `serve`).

  python -m deeplab.export_model --checkpoint_dir work_dirs/exp/train --export_path models/exported
"""

from __future__ import annotations

import argparse
import sys

from deeplab.cli import add_dataclass_flags, one_line_errors
from deeplab.training.export import ExportConfig, export
from deeplab.training.trainer import load_trained


def main(argv=None) -> int:
    p = one_line_errors(argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    fields = add_dataclass_flags(p, ExportConfig)
    args = p.parse_args(argv)
    config = ExportConfig(**{name: getattr(args, name) for name in fields})
    model, _ = load_trained(config.checkpoint_dir)
    print(f"exported to {export(model, config.export_path, config.inference_scale)}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
