"""One whole AL round's per-image work at Cityscapes scale, on each executor, with figures to
extrapolate a full Cityscapes round from.

Generates --images synthetic street scenes of --height x --width (default 1024x2048) in the
Cityscapes layout, makes their SEEDS superpixels (--num_superpixels, default 8192), runs the
warm-up round's selection, answers and labels, then round 1 exactly as the driver does
(adaptive regions with statistics, class-balanced selection, answers, labels with sieving,
TFRecords), for every executor of --configs (`local:1 local:2 ray:2`: kind and workers).

The model is replaced by STAND-IN PROBABILITIES (a noisy softmax around the ground truth,
computed in the driver process image by image, as the model's output would stream); training,
inference and evaluation are not part of the figures. Per stage it prints the CPU seconds per
image spent in tasks (whatever process ran them) and in the driver, wall time, and the disk
written; then, from the wall times with 1 and 2 local workers (model: wall per image = a + b / W),
the wall time of a round on --extrapolate_images images with --extrapolate_cores cores.

  python scripts/benchmark_rounds.py                       # 8 images, local:1 local:2 ray:2
  python scripts/benchmark_rounds.py --images 4 --configs "local:1 local:2"
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROUND_STAGES = ("regions", "select", "annotate", "data")


class StandInPredictor:
    """Streams noisy softmax maps around the ground truth (as the model's output would stream),
    made before any stage is timed and kept in memory, so that the figures hold the AL work
    alone: the images are still decoded for it, as for the model."""

    _probs: dict = {}

    def __init__(self, descriptor, samples):
        sys.path.insert(0, str(Path(__file__).parent))
        from benchmark_kernels import synthetic_probs

        for s in samples:
            if s.name not in self._probs:
                self._probs[s.name] = synthetic_probs(descriptor.read_label(s), descriptor.num_classes,
                                                      np.random.default_rng(zlib.crc32(s.name.encode())))

    def stream(self, items):
        for name, _image in items:
            yield name, self._probs[name]


class _Kept:
    """The benchmark's one executor, handed to every stage and closed at the end (a stage of
    the drivers starts its own: that start-up is measured once, as `worker start-up`)."""

    def __init__(self, ex):
        self.ex = ex

    def __enter__(self):
        return self.ex

    def __exit__(self, *exc):
        pass

    def __getattr__(self, name):
        return getattr(self.ex, name)


def warm_task(seconds: float) -> int:
    """Imports what the stages import (TensorFlow for the TFRecord shards, kneed for sieving),
    then waits, so that each of the first W tasks lands on its own worker."""
    import os

    import kneed  # noqa: F401
    import tensorflow  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def touch_task(task: dict) -> float:
    """Receives one probability map (warming the executor's shared-memory blocks)."""
    return float(task["probs"].flat[0])


class DecodeClock:
    """CPU seconds the driver's threads spend decoding images for the model (inference's
    input, reported apart from the AL work)."""

    _instance = None

    @classmethod
    def once(cls) -> "DecodeClock":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        import threading

        from deeplab.datasets.descriptors import DatasetDescriptor

        self.seconds = 0.0
        original = DatasetDescriptor.read_image
        clock = self

        def read_image(descriptor, sample):
            if threading.current_thread() is threading.main_thread():
                return original(descriptor, sample)
            c0 = time.thread_time()
            try:
                return original(descriptor, sample)
            finally:
                clock.seconds += time.thread_time() - c0

        DatasetDescriptor.read_image = read_image


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_config(kind: str, workers: int, data: Path, work: Path, args) -> dict:
    from deeplab import parallel
    from deeplab.experiment import simulated, stages, tasks
    from deeplab.experiment.settings import ExperimentConfig
    from deeplab.experiment.job import Job

    job = work / f"{kind}{workers}" / "job"
    shutil.rmtree(job.parent, ignore_errors=True)
    config = ExperimentConfig(
        job_dir=str(job), dataset="synthetic", dataset_dir=str(data), rounds=2,
        clicks_per_round=args.clicks_per_image * args.images, superpixel_method="seeds",
        num_superpixels=args.num_superpixels, regions="adaptive", acquisition="class_balanced",
        sieve=True, num_workers=workers, executor=kind).validate()
    config.save_or_check()
    exp = Job(config)
    standin = StandInPredictor(exp.descriptor, exp.samples)
    stages.predictor_for_round = lambda e, t: standin
    decode = DecodeClock.once()
    steps = {
        "regions": lambda t: stages.regions_stage(exp, t, write_overlays=False),
        "select": lambda t: stages.select_stage(exp, t, progress=False),
        "annotate": lambda t: simulated.oracle_round(exp, t, progress=False),
        "data": lambda t: stages.data_stage(exp, t, max_overlays=0, progress=False),
    }
    rows = []

    def measure(label, fn):
        parallel.CPU_SECONDS.clear()
        w0, d0, decode0 = time.perf_counter(), time.process_time(), decode.seconds
        info = fn()
        wall = time.perf_counter() - w0
        decoded = decode.seconds - decode0
        driver = time.process_time() - d0 - decoded
        # In-process tasks (one worker) count in both; keep them once, as task time.
        tasks = sum(parallel.CPU_SECONDS.values())
        if kind == "local" and workers == 1:
            driver -= tasks
        rows.append({"stage": label, "task_cpu_per_image": tasks / args.images,
                     "driver_cpu_per_image": max(driver, 0.0) / args.images,
                     "decode_cpu_per_image": decoded / args.images,
                     "wall_s": wall, "wall_per_image": wall / args.images})
        return info

    ex = parallel.make_executor(kind, workers)
    exp.executor = lambda: _Kept(ex)
    t0 = time.perf_counter()
    pids = list(ex.imap(warm_task, [1.0] * workers, max_in_flight=workers))
    startup = time.perf_counter() - t0 - 1.0
    # Steady state: the shared-memory blocks that carry the probabilities exist already, as
    # after the first few images of a real split.
    probs = next(iter(StandInPredictor._probs.values()))
    list(ex.imap(touch_task, [{"probs": probs}] * (4 * workers)))
    measure("base superpixels (SEEDS, once per data set)",
            lambda: tasks.extract_base(exp.descriptor, exp.samples, exp.base_dir, "seeds",
                                      n_segments=args.num_superpixels, executor=ex, progress=False))
    for stage in ("select", "annotate", "data"):  # the warm-up round's labels (no model)
        exp.mark(0, stage, measure(f"round 0 {stage}", lambda: steps[stage](0)))
    exp.mark(0, "train", {"stand_in": True})
    for stage in ROUND_STAGES:
        exp.mark(1, stage, measure(f"round 1 {stage}", lambda: steps[stage](1)))
    ex.close()
    r1 = exp.round_dir(1)
    disk = {"round_1_regions": du(r1 / "regions"), "round_1_labels": du(r1 / "labels"),
            "round_1_tfrecords": du(r1 / "tfrecord"), "cache_superpixels": du(exp.cache.root / "superpixels"),
            "ledger": exp.ledger.path.stat().st_size}
    regions = exp.manifest(1)["regions"]
    return {"config": f"{kind}:{workers}", "rows": rows, "disk": disk, "startup_s": startup,
            "worker_pids": len(set(pids)),
            "regions_per_image": [regions.get("regions_per_image_before"),
                                  regions.get("regions_per_image_after")],
            "data": exp.manifest(1)["data"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8, help="generated scenes")
    p.add_argument("--height", type=int, default=1024, help="their height")
    p.add_argument("--width", type=int, default=2048, help="their width")
    p.add_argument("--num_superpixels", type=int, default=8192, help="base superpixels per image")
    p.add_argument("--clicks_per_image", type=int, default=17, help="the paper: 50,000 over 2975 images")
    p.add_argument("--configs", default="local:1 local:2 ray:2", help="kind:workers, space separated")
    p.add_argument("--work_dir", default=None, help="default: a temporary folder, removed after")
    p.add_argument("--extrapolate_images", type=int, default=2975,
                   help="the pool size the figures are extrapolated to (Cityscapes: 2975)")
    p.add_argument("--extrapolate_cores", type=int, default=16, help="the cores the figures are extrapolated to")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    from deeplab.datasets import synthetic

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_rounds_"))
    data = work / "data"
    t0 = time.perf_counter()
    synthetic.generate(data, num_train=args.images, num_val=1, height=args.height, width=args.width, seed=0)
    print(f"{args.images} synthetic images of {args.height}x{args.width} in {data} "
          f"({time.perf_counter() - t0:.0f} s); {args.num_superpixels} SEEDS superpixels each; "
          f"{args.clicks_per_image} clicks per image per round; STAND-IN probabilities, no model")
    results = []
    for spec in args.configs.split():
        kind, workers = spec.split(":")
        res = run_config(kind, int(workers), data, work, args)
        results.append(res)
        print(f"\n== {res['config']}: worker start-up (with TensorFlow's import) {res['startup_s']:.1f} s "
              f"on {res['worker_pids']} process(es); regions per image {res['regions_per_image'][0]:.0f} base -> "
              f"{res['regions_per_image'][1]:.0f} adaptive; labelled px {res['data']['labelled_px']}, "
              f"sieved {res['data']['sieved_px']}")
        print(f"{'stage':46s} {'task CPU s/img':>14s} {'driver CPU s/img':>16s} "
              f"{'decode s/img':>12s} {'wall s':>8s}")
        for r in res["rows"]:
            print(f"{r['stage']:46s} {r['task_cpu_per_image']:14.3f} {r['driver_cpu_per_image']:16.3f} "
                  f"{r['decode_cpu_per_image']:12.3f} {r['wall_s']:8.1f}")
        print("disk: " + ", ".join(f"{k} {v / 2**20:.1f} MiB ({v / args.images / 2**20:.2f} MiB/img)"
                                   for k, v in res["disk"].items()))
    by = {r["config"]: r for r in results}
    if "local:1" in by and "local:2" in by:
        n, cores = args.extrapolate_images, args.extrapolate_cores
        print(f"\n== extrapolation to {n} images on {cores} cores ("
              f"from the CPU seconds above and the speed-up from local:1 to local:2)")
        startup = len(ROUND_STAGES) * by["local:2"]["startup_s"]  # each stage starts its workers
        print(f"{'worker start-up, once per stage':46s} {by['local:2']['startup_s']:.1f} s x "
              f"{len(ROUND_STAGES)} stages")
        print(f"{'':46s} {'speed-up':>8s} {'sum min':>8s} {'overlap min':>11s}")
        totals = [startup, startup]
        for r1, r2 in zip(by["local:1"]["rows"], by["local:2"]["rows"]):
            if not r1["stage"].startswith("round 1"):
                continue
            speedup = r1["wall_per_image"] / r2["wall_per_image"]
            # The tasks' CPU spread over the cores at the efficiency measured from 1 to 2
            # workers; the driver's CPU (sending arrays, bookkeeping) serial: added to it
            # (sum), or overlapping with it as the stream lets it (overlap).
            eff = min(1.0, speedup / 2)
            spread = r2["task_cpu_per_image"] / (cores * eff)
            driver = r2["driver_cpu_per_image"]
            totals[0] += n * (driver + spread)
            totals[1] += n * max(driver, spread)
            print(f"{r1['stage']:46s} {speedup:8.2f} {n * (driver + spread) / 60:8.1f} "
                  f"{n * max(driver, spread) / 60:11.1f}")
        print(f"{'one round (everything but training, inference)':46s} {'':8s} "
              f"{totals[0] / 60:8.1f} {totals[1] / 60:11.1f}")
        decode = sum(r["decode_cpu_per_image"] for r in by["local:2"]["rows"] if r["stage"].startswith("round 1"))
        print(f"(not included: decoding the images for the model, {decode:.3f} CPU s per image per "
              f"round in the driver's threads; inference's input)")
        tf_bytes = by["local:1"]["disk"]["round_1_tfrecords"] / args.images
        print(f"round TFRecords: {tf_bytes / 2**20:.2f} MiB per image -> "
              f"{tf_bytes * n / 2**30:.1f} GiB per round (deleted after its evaluation)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
