"""Input-pipeline throughput: TFRecord read + PNG decode + DeepLab augmentation, images/s.

Writes a temporary set of synthetic images at each size, converts them to TFRecords, then
times the training pipeline (no model) after a warm-up.

  python scripts/benchmark_input.py                      # 512x1024 and the demo 128x256
  python scripts/benchmark_input.py --sizes 128x256 --crop 129
"""

import argparse
import os
import sys
import tempfile
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["512x1024", "128x256"], help="generated image sizes, HxW")
    p.add_argument("--crops", nargs="+", type=int, default=[513, 129],
                   help="square crop per size (same order as --sizes)")
    p.add_argument("--num_images", type=int, default=24, help="generated images per size")
    p.add_argument("--batch_size", type=int, default=4, help="images per batch")
    p.add_argument("--batches", type=int, default=40, help="batches timed per size")
    args = p.parse_args(argv)
    from deeplab.datasets import build_data, data_generator, get_dataset, synthetic

    print(f"cores: {os.cpu_count()}")
    print(f"{'size':>10} {'crop':>5} {'batch':>5} {'images/s':>9}")
    for size, crop in zip(args.sizes, args.crops):
        h, w = (int(v) for v in size.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            root = synthetic.generate(tmp, num_train=args.num_images, num_val=1, height=h, width=w)
            ds = get_dataset("synthetic")
            build_data.build_split(ds, ds.list_split(root, "train"), f"{tmp}/tfrecord", "train",
                                   num_shards=4, progress=False)
            pipe = data_generator.build_dataset(f"{tmp}/tfrecord", "train", batch_size=args.batch_size,
                                                is_training=True, crop_size=(crop, crop), seed=0)
            it = iter(pipe)
            for _ in range(5):
                next(it)
            t = time.perf_counter()
            for _ in range(args.batches):
                next(it)
            dt = time.perf_counter() - t
            print(f"{size:>10} {crop:>5} {args.batch_size:>5} {args.batches * args.batch_size / dt:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
