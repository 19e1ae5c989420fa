"""The fully supervised reference under one training regime: the ablation behind a profile.

Trains DeepLabv3+ on every ground-truth pixel of a train split (TFRecords built once per data
set and scale under --work_dir), evaluates on the val split at the same scale, and appends a row
(settings, mIoU, per-class IoU, training minutes, images/s) to --work_dir/regime.jsonl. With
--table it prints the rows as the markdown table of docs/benchmark_camvid/ablation.md.

  python scripts/benchmark_regime.py --profile camvid_benchmark \\
      --dataset_dir ../shared/datasets/camvid --name profile
  python scripts/benchmark_regime.py --profile camvid_benchmark \\
      --dataset_dir ../shared/datasets/camvid --name no_weights --class_weights none
  python scripts/benchmark_regime.py --work_dir work_dirs/regime --table

Every flag without a value given takes the value of --profile (a profile of the settings table,
docs/settings.md; default: the table's defaults), so a row differs from its profile only where its
command says so.
"""

import argparse
import json
import sys
import time
from pathlib import Path


def _table(rows: list[dict], class_names) -> str:
    head = "| row | changes | mIoU | " + " | ".join(class_names) + " | classes at 0 | train min | img/s |"
    lines = [head, "|" + "---|" * (7 + len(class_names))]
    for r in rows:
        iou = [100 * v if v is not None else float("nan") for v in r["iou"]]
        lines.append(f"| {r['name']} | {r['changes'] or 'the table defaults'} | {100 * r['miou']:.2f} | "
                     + " | ".join(f"{v:.1f}" for v in iou)
                     + f" | {sum(v < 0.05 for v in iou)} | {r['train_s'] / 60:.1f} | {r['images_per_second']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from deeplab import cli
    from deeplab.experiment import settings as table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataset_flags(p)
    p.add_argument("--work_dir", default="work_dirs/regime", help="TFRecords, trainings and regime.jsonl")
    p.add_argument("--name", help="the row's name (its training folder under --work_dir/runs)")
    p.add_argument("--table", action="store_true", help="print the rows of regime.jsonl as markdown")
    p.add_argument("--profile", default="demo",
                   help=f"the settings profile whose values the row starts from: {', '.join(table.PROFILES)}")
    defaults = {s.field: s for s in table.TABLE if s.field}
    knobs = ("image_scale", "model_variant", "train_steps", "train_crop_size", "train_batch_size",
             "base_learning_rate", "batch_norm_decay", "class_weights", "min_scale_factor",
             "max_scale_factor", "init_checkpoint", "seed")
    for k in knobs:
        s = defaults[k]
        p.add_argument(f"--{k}", type=str, default=None, help=f"{s.help} (default {s.default})")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    if args.table:
        rows = [json.loads(ln) for ln in (work / "regime.jsonl").read_text().splitlines() if ln.strip()]
        from deeplab.datasets import get_dataset

        print(_table(rows, get_dataset(rows[0]["dataset"], rows[0]["dataset_dir"]).class_names))
        return 0
    if not args.name:
        p.error("--name is needed to train a row")
    start = table.profile_values(args.profile)
    values = {k: start[defaults[k].name] for k in knobs}
    if args.dataset == "synthetic" and "DATASET" in table.PROFILES[args.profile]:
        args.dataset = start["DATASET"]
    changes = []
    for k in knobs:
        text = getattr(args, k)
        if text is not None:
            values[k] = table.parse_value(defaults[k], text)
            defaults[k].check(values[k])
            changes.append(f"{defaults[k].name}={text}")

    import numpy as np

    from deeplab.datasets import build_data
    from deeplab.datasets.scaled import ScaledDataset
    from deeplab.model import ModelOptions
    from deeplab.training import class_weights
    from deeplab.training.evaluate import evaluate, format_table
    from deeplab.training.trainer import TrainConfig, load_trained, train

    descriptor, root = cli.resolve_dataset(args)
    data = work / f"{args.dataset}_x{values['image_scale']:g}"
    if values["image_scale"] != 1:
        descriptor = ScaledDataset(descriptor, values["image_scale"], data / "scaled")
    records = data / "tfrecord"
    samples = descriptor.list_split(root, "train")
    for split, listed in (("train", samples), ("val", None)):
        if not list(records.glob(f"{split}.meta.json")):
            build_data.build_split(descriptor, listed or descriptor.list_split(root, split), records,
                                   split, 4, progress=False)
    weights = None
    if values["class_weights"] != "none":
        counts = [class_weights.label_counts(descriptor.read_label(s), descriptor.num_classes)
                  for s in samples]
        weights = class_weights.weights(sum(c[0] for c in counts), sum(c[1] for c in counts),
                                        values["class_weights"])
    logdir = work / "runs" / args.name
    config = TrainConfig(
        train_logdir=str(logdir), tfrecord_dir=str(records), num_classes=descriptor.num_classes,
        ignore_label=descriptor.ignore_label, class_weights=weights,
        model=ModelOptions(num_classes=descriptor.num_classes, model_variant=values["model_variant"],
                           batch_norm_decay=values["batch_norm_decay"]),
        training_number_of_steps=values["train_steps"], base_learning_rate=values["base_learning_rate"],
        train_crop_size=(values["train_crop_size"],) * 2, train_batch_size=values["train_batch_size"],
        min_scale_factor=values["min_scale_factor"], max_scale_factor=values["max_scale_factor"],
        tf_initial_checkpoint=values["init_checkpoint"] or None, initialize_last_layer=False,
        save_interval_steps=max(100, values["train_steps"] // 4), seed=values["seed"],
        deterministic=True)
    t0 = time.perf_counter()
    info = train(config)
    train_s = info.get("seconds", time.perf_counter() - t0)
    model, _ = load_trained(logdir)
    res = evaluate(model, records, "val", descriptor.num_classes, descriptor.ignore_label, progress=False)
    iou = np.array([np.nan if v is None else v for v in res["per_class_iou"]])
    print(format_table(iou, descriptor.class_names, res["miou"]))
    row = {"name": args.name, "profile": args.profile, "changes": " ".join(changes), "dataset": args.dataset,
           "dataset_dir": str(root), **values, "miou": res["miou"], "iou": res["per_class_iou"],
           "train_s": train_s, "images_per_second": info.get("images_per_second"),
           "val_images": res["images"]}
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "regime.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{args.name}: mIoU {100 * res['miou']:.2f} on {res['images']} val images at scale "
          f"{values['image_scale']:g}, training {train_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
