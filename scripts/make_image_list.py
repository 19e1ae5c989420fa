"""Writes image_list/{split}.txt for a Cityscapes-layout folder by listing leftImg8bit/{split}.

  python scripts/make_image_list.py --dataset_dir datasets/cityscapes --split train
"""

import argparse
import sys
from pathlib import Path

from deeplab import io_utils


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset_dir", required=True, help="the data root")
    p.add_argument("--split", nargs="+", default=["train", "val"], help="the splits to list")
    args = p.parse_args(argv)
    root = Path(args.dataset_dir)
    for split in args.split:
        base = root / "leftImg8bit" / split
        names = sorted(
            str(f.relative_to(base)).removesuffix("_leftImg8bit.png")
            for f in base.glob("*/*_leftImg8bit.png")
        )
        if not names:
            print(f"no images under {base}/*/*_leftImg8bit.png", file=sys.stderr)
            return 1
        io_utils.write_text(root / "image_list" / f"{split}.txt", "\n".join(names) + "\n")
        print(f"{split}: {len(names)} images")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
