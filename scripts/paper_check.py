"""The report of bash_files/paper_check.sh: what the paper's setting costs on this machine.

Reads the check folder that paper_check.sh wrote (`main/`: the warm-up round and one adaptive
round; `repeat/`: the warm-up round again with the same seed; `stages.jsonl`: every stage's
wall time, CPU time and peak memory) and prints, then writes to `paper_check.json`:

* training images/s of every round (the trainer's own figure, steps x batch / seconds);
* inference images/s: the last round's model over val images at INFERENCE_SCALE, one image
  per forward pass, timed after one untimed pass;
* peak memory: the largest resident set of any stage (host), and the GPU's peak allocation in
  training and in the inference measurement (when there is a GPU);
* the per-image wall time of every stage of every round (seconds over the images the stage
  covers: the train split, or the val split for the val TFRecords and the evaluation);
* whether two runs with the same seed trained the same weights (every array bit for bit).

  python scripts/paper_check.py --check_dir work_dirs/paper_check
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deeplab.errors import CannotContinue, MissingFile  # noqa: E402

# The split each stage's per-image time is counted over (None: once per job).
STAGE_SPLIT = {"build_tfrecords": "val", "extract_superpixels": "train", "gen_adaptive_spx": "train",
               "select_regions": "train", "annotate_regions": "train", "build_round_data": "train",
               "train_round": None, "eval_round": "val", "init_experiment": None,
               "record_results": None}


def _round_of(args: list[str]) -> int | None:
    return int(args[args.index("--round") + 1]) if "--round" in args else None


def stage_rows(records: list[dict], counts: dict) -> list[dict]:
    """One row per stage run: script, round, images, seconds, s/image, CPU s, peak RSS."""
    rows = []
    for r in records:
        split = STAGE_SPLIT.get(r["script"])
        n = counts.get(split) if split else None
        rows.append({"stage": r["script"], "round": _round_of(r["args"]), "images": n,
                     "seconds": r["seconds"], "seconds_per_image": r["seconds"] / n if n else None,
                     "cpu_seconds": r["cpu_seconds"], "max_rss_mb": r["max_rss_mb"], "rc": r["rc"]})
    return rows


def same_weights(a: Path, b: Path) -> dict:
    """Whether two final_weights.npz hold the same arrays bit for bit, and the largest difference."""
    wa, wb = np.load(a), np.load(b)
    if sorted(wa.files) != sorted(wb.files):
        return {"identical": False, "max_abs_difference": None, "arrays": len(wa.files),
                "why": "the two runs saved different variables"}
    diff, equal = 0.0, True
    for k in wa.files:
        x, y = wa[k], wb[k]
        if x.shape != y.shape:
            return {"identical": False, "max_abs_difference": None, "arrays": len(wa.files),
                    "why": f"{k}: shapes {x.shape} vs {y.shape}"}
        equal &= x.tobytes() == y.tobytes()
        if x.size:
            diff = max(diff, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
    return {"identical": bool(equal), "max_abs_difference": diff, "arrays": len(wa.files)}


def inference_speed(exp, round_index: int, max_images: int) -> dict:
    """Images/s of the round's model over up to `max_images` val images (train when there is
    no val split) at the job's inference scale, one image per pass, after one untimed pass."""
    import tensorflow as tf

    from deeplab.training.inference import Predictor
    from deeplab.training.trainer import gpu_peak_bytes

    split = "val" if exp.evaluable else "train"
    samples = exp.descriptor.list_split(exp.data_root, split)[:max_images]
    images = [exp.descriptor.read_image(s) for s in samples]
    gpus = tf.config.list_logical_devices("GPU")
    for i in range(len(gpus)):
        tf.config.experimental.reset_memory_stats(f"GPU:{i}")
    predictor = Predictor.from_train_dir(exp.round_dir(round_index) / "train",
                                         exp.config.inference_scale, batch_size=1)
    predictor.probs(images[0])  # traces and warms up
    t0 = time.perf_counter()
    for im in images:
        predictor.probs(im)
    seconds = time.perf_counter() - t0
    return {"images": len(images), "split": split, "height": int(images[0].shape[0]),
            "width": int(images[0].shape[1]), "inference_scale": exp.config.inference_scale,
            "images_per_second": len(images) / max(seconds, 1e-9), "gpu_peak_bytes": gpu_peak_bytes()}


def _mb(nbytes) -> str:
    return "n/a (no GPU)" if nbytes is None else f"{nbytes / 2 ** 20:.0f} MiB"


def format_report(report: dict) -> str:
    c = report["setting"]
    lines = [f"paper check: {report['device']}",
             f"  data: {c['images_train']} train / {c['images_val']} val images of "
             f"{c['height']}x{c['width']} ({c['dataset']}, {c['data_root']})",
             f"  {c['model_variant']}, crop {c['train_crop_size']}, batch {c['train_batch_size']}, "
             f"{c['train_steps']} steps per round; {c['superpixel_method']} {c['num_superpixels']} "
             f"per image; inference scale {c['inference_scale']}", ""]
    for t, tr in sorted(report["training"].items()):
        lines.append(f"training, round {t}: {tr['images_per_second']:.2f} images/s "
                     f"({tr['steps']} steps in {tr['seconds']:.1f} s), GPU peak {_mb(tr.get('gpu_peak_bytes'))}")
    inf = report["inference"]
    lines += [f"inference: {inf['images_per_second']:.2f} images/s ({inf['images']} {inf['split']} images "
              f"of {inf['height']}x{inf['width']} at scale {inf['inference_scale']}, one per pass), "
              f"GPU peak {_mb(inf['gpu_peak_bytes'])}",
              f"peak host memory (resident, largest stage): {report['peak_rss_mb']:.0f} MiB "
              f"({report['peak_rss_stage']})", "",
              f"{'stage':20s} {'round':>5s} {'images':>6s} {'wall s':>9s} {'s/image':>9s} "
              f"{'CPU s':>9s} {'peak MiB':>9s}"]
    for r in report["stages"]:
        per = "-" if r["seconds_per_image"] is None else f"{r['seconds_per_image']:.3f}"
        lines.append(f"{r['stage']:20s} {'-' if r['round'] is None else r['round']:>5} "
                     f"{r['images'] or '-':>6} {r['seconds']:9.2f} {per:>9s} {r['cpu_seconds']:9.1f} "
                     f"{r['max_rss_mb']:9.0f}")
    w = report["same_seed"]
    verdict = ("yes, every array bit for bit" if w["identical"] else
               f"NO (largest difference {w['max_abs_difference']}{'; ' + w['why'] if 'why' in w else ''})")
    lines += ["", f"same seed, same weights (round 0 trained twice, {w['arrays']} arrays): {verdict}"]
    return "\n".join(lines)


def build_report(check_dir: Path, max_images: int) -> dict:
    import tensorflow as tf

    from deeplab.experiment import stage_log
    from deeplab.experiment.job import Job

    main_dir, repeat_dir = check_dir / "main", check_dir / "repeat"
    for d in (main_dir, repeat_dir):
        if not (d / "config.json").is_file():
            raise MissingFile(f"{d} holds no job: run `bash bash_files/paper_check.sh` (it "
                              "writes the check folder this report reads)")
    exp = Job.open(main_dir)
    rounds = [t for t in range(exp.config.rounds) if exp.done(t, "train")]
    if not rounds:
        raise CannotContinue(f"{main_dir}: no round finished training; run paper_check.sh again")
    val = exp.descriptor.list_split(exp.data_root, "val") if exp.evaluable else []
    counts = {"train": len(exp.samples), "val": len(val)}
    first = exp.descriptor.read_image(exp.samples[0])
    stages = stage_rows(stage_log.read_log(check_dir / "stages.jsonl"), counts)
    training = {t: json.loads((exp.round_dir(t) / "train" / "train_done.json").read_text())
                for t in rounds}
    gpus = tf.config.list_logical_devices("GPU")
    top = max(stages, key=lambda r: r["max_rss_mb"])
    c = exp.config
    return {
        "device": f"GPU x{len(gpus)}" if gpus else f"CPU ({os.cpu_count()} cores), no GPU",
        "setting": {"dataset": c.dataset, "data_root": str(exp.data_root), "images_train": counts["train"],
                    "images_val": counts["val"], "height": int(first.shape[0]), "width": int(first.shape[1]),
                    "model_variant": c.model_variant, "train_crop_size": c.train_crop_size,
                    "train_batch_size": c.train_batch_size, "train_steps": c.train_steps,
                    "superpixel_method": c.superpixel_method, "num_superpixels": c.num_superpixels,
                    "inference_scale": c.inference_scale},
        "training": {t: {k: v for k, v in info.items() if k in
                         ("images_per_second", "steps", "seconds", "gpu_peak_bytes")}
                     for t, info in training.items()},
        "inference": inference_speed(exp, rounds[-1], max_images),
        "peak_rss_mb": top["max_rss_mb"], "peak_rss_stage": f"{top['stage']}, round {top['round']}",
        "stages": stages,
        "same_seed": same_weights(main_dir / "round_00" / "train" / "final_weights.npz",
                                  repeat_dir / "round_00" / "train" / "final_weights.npz"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check_dir", required=True, help="the folder paper_check.sh wrote")
    p.add_argument("--inference_images", type=int, default=8, help="val images timed in inference")
    args = p.parse_args(argv)
    from deeplab import io_utils

    check_dir = Path(args.check_dir)
    report = build_report(check_dir, max(1, args.inference_images))
    io_utils.write_json(check_dir / "paper_check.json", report)
    print(format_report(report))
    print(f"\n{check_dir / 'paper_check.json'}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
