"""An active-learning experiment on disk: settings, the job's layout, round manifests and the
checked ledger. No TensorFlow here. The settings are `deeplab.experiment.settings`, the round's
stages `deeplab.experiment.stages`, its per-image work `deeplab.experiment.tasks`.

A job is its folder: its identity is its settings, never the path it was reached by, so a job
folder that is copied, moved or reached through another path stays resumable.

Layout of `$WORK_DIR/$JOB_NAME`:
  config.json                 settings (checked on every resume)
  ledger.jsonl                every answer, appended and fsync'd line by line, never rewritten
                              (the truth; labels derive from it; undo rows retract an answer)
  results.csv, al_curve.png   one row per evaluated round; mIoU against clicks
  round_XX/manifest.json      completed stages with their figures
  round_XX/regions/*.npz      the round's region map and statistics per image (rounds >= 1;
                              round 0 asks the base superpixels)
  round_XX/selection.json     chosen regions
  round_XX/annotate.lock      held by the process serving the round's annotation page
  round_XX/label_studio/      the round's queries as Label Studio tasks (when exported)
  round_XX/labels/*.png       training labels (all answers so far, sieved)
  round_XX/tfrecord/          the round's training TFRecords (deleted after its evaluation)
  round_XX/train/             checkpoints, summaries, final weights
  round_XX/eval.json          mIoU, per-class IoU, confusion matrix
  round_XX/overlays/          queried regions and sieved pixels, for a person to look at

Derived data that do not depend on the job (base and oracle superpixel maps, val TFRecords) live
in the cache (`deeplab.experiment.cache`, default `$WORK_DIR/cache`), never inside the data root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from deeplab import io_utils, parallel
from deeplab.active import acquisition
from deeplab.active import regions as R
from deeplab.datasets import get_dataset
from deeplab.datasets.descriptors import DatasetDescriptor, Sample
from deeplab.datasets.scaled import ScaledDataset
from deeplab.errors import BadInput, CannotContinue
from deeplab.experiment import ledger, region_maps
from deeplab.experiment.cache import DataCache
from deeplab.experiment.settings import ExperimentConfig, read_cost_model


class Job:
    """Paths and state of one job."""

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self.job_dir = Path(config.job_dir)
        self.descriptor: DatasetDescriptor = get_dataset(config.dataset, config.dataset_dir or None)
        self.data_root = Path(config.dataset_dir) if config.dataset_dir else self.descriptor.default_root()
        self.cache = DataCache(Path(config.cache_dir) if config.cache_dir else self.job_dir.parent / "cache",
                               config.dataset, self.data_root, config.image_scale)
        if config.image_scale != 1:  # every stage reads the resized copies in the cache
            self.descriptor = ScaledDataset(self.descriptor, config.image_scale, self.cache.scaled_dir)
        self.ledger = ledger.Ledger(self.job_dir / "ledger.jsonl", check=self._check_ledger)
        self._samples = None

    @classmethod
    def open(cls, job_dir) -> "Job":
        return cls(ExperimentConfig.load(job_dir))

    # ------------------------------------------------------------------ data
    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            samples = self.descriptor.list_split(self.data_root, "train")
            seen, twice = set(), []
            for s in samples:
                if s.name in seen:
                    twice.append(s.name)
                seen.add(s.name)
            if twice:
                raise BadInput(
                    f"the train split lists {len(twice)} images more than once (first: "
                    f"'{twice[0]}', in {self.descriptor.list_file(self.data_root, 'train')}): a "
                    "region would be asked, and paid for, twice; list each image once")
            self._samples = samples
        return self._samples

    def answers_by_image(self, upto_round: int | None = None) -> dict[str, list[dict]]:
        """The ledger's answers in force by image, with each reviewed answer replaced by the
        review pass's outcome (`review.resolve`): what labels the pixels."""
        from deeplab.active import review

        out = self.ledger.by_image(upto_round)
        reviews = self.ledger.reviews_by_round()
        if not reviews:
            return out
        ignore = self.descriptor.ignore_label
        for name, rows in out.items():
            for k, r in enumerate(rows):
                rv = reviews.get(r["round"], {}).get((name, r["region"]))
                if rv and 1 in rv:
                    third = rv[2]["answer"] if 2 in rv else None
                    rows[k] = {**r, "answer": review.resolve(r["answer"], rv[1]["answer"], third, ignore)}
        return out

    def cost_model(self) -> "acquisition.MeasuredCost":
        """The measured cost model of COST_MODEL=measured (CLICK_COST_MODEL)."""
        return read_cost_model(self.config.click_cost_model)

    def check_splits(self) -> None:
        """Refuses an image of the evaluation split (EVAL_SPLIT) that is also in the train pool
        (it would be evaluated on its own labels)."""
        if not self.evaluable:
            return
        # the same file (names may repeat across splits whose files differ, as in the
        # synthetic set's train/ and val/ folders)
        split = self.config.eval_split
        held = {s.image_path.resolve() for s in self.descriptor.list_split(self.data_root, split)}
        both = [s.name for s in self.samples if s.image_path.resolve() in held]
        if both:
            raise BadInput(
                f"{len(both)} images are in both the train and the {split} split (first: '{both[0]}'): "
                f"the model would be evaluated on images it is trained on; remove them from one "
                f"of {self.descriptor.list_file(self.data_root, 'train')} and "
                f"{self.descriptor.list_file(self.data_root, split)}")

    def check_answered_images(self) -> None:
        """Stops the job when images that earlier answers label are gone from the train split
        (their answers would silently leave the labels while their clicks stay counted), unless
        DROP_MISSING_ANSWERED=1, which leaves them out and says what that forfeits."""
        names = {s.name for s in self.samples}
        gone: dict[str, list[dict]] = {}
        for r in self.ledger.read():
            if r["image"] not in names:
                gone.setdefault(r["image"], []).append(r)
        if not gone:
            return
        rows = [r for rs in gone.values() for r in rs]
        clicks = int(sum(r["cost"] for r in rows))
        first = sorted(gone)[:3]
        what = (f"{len(gone)} answered images are no longer in the train split of {self.data_root} "
                f"({', '.join(repr(n) for n in first)}{', ...' if len(gone) > 3 else ''}): "
                f"{len(rows)} answers, {clicks} clicks")
        if not self.config.drop_missing_answered:
            raise BadInput(f"{what}. Put the images back, or set DROP_MISSING_ANSWERED=1 to go on "
                           "without them (those clicks stay spent)")
        print(f"WARNING: {what} are left out of the labels (DROP_MISSING_ANSWERED=1); those "
              "clicks stay spent", file=sys.stderr)

    def require_labels(self, what: str) -> None:
        """Raises ValueError unless every train image has its ground truth (`what` needs it)."""
        self.descriptor.require_labels(self.samples, "train", what,
                                       "Set ANNOTATOR=human to answer the regions yourself, or add the labels")

    @property
    def evaluable(self) -> bool:
        """Whether the data set has the split to evaluate on (EVAL_SPLIT; a folder may have none)."""
        return self.descriptor.has_split(self.data_root, self.config.eval_split)

    def eval_samples(self) -> list:
        """The evaluation split's samples (EVAL_SPLIT)."""
        return self.descriptor.list_split(self.data_root, self.config.eval_split)

    @property
    def val_tfrecord_dir(self) -> Path:
        return self.cache.tfrecord_dir

    @property
    def base_dir(self) -> Path:
        c = self.config
        return self.cache.base_dir(c.superpixel_method, c.num_superpixels, c.superpixel_size_px)

    @property
    def oracle_dir(self) -> Path:
        return self.cache.oracle_dir()

    def executor(self) -> parallel.Executor:
        """Where this job's per-image stages run (EXECUTOR, NUM_WORKERS, RAY_ADDRESS)."""
        return parallel.make_executor(self.config.executor, self.config.num_workers)

    def round_dir(self, t: int) -> Path:
        return self.job_dir / f"round_{t:02d}"

    def map_path(self, t: int, name: str) -> Path:
        """Region map in which round t asked (round 0: the base superpixels)."""
        if t == 0:
            return region_maps.path(self.base_dir, name)
        return region_maps.path(self.round_dir(t) / "regions", name)

    def load_map(self, t: int, name: str) -> np.ndarray:
        return region_maps.load(self.map_path(t, name))

    def label_source_path(self, t: int, name: str) -> Path:
        """Where round t's data stage writes what labels image `name`'s pixels (labels.SOURCE_*),
        when propagation or self-training is on."""
        return self.round_dir(t) / "label_source" / f"{name}.png"

    def label_sources(self, t: int, name: str) -> np.ndarray | None:
        """uint8 [H, W]: round t's label sources of image `name`; None where the round wrote
        none (both mechanisms off, round 0, or no label in the image)."""
        from deeplab.datasets.descriptors import read_label_png

        if t < 0:
            return None
        path = self.label_source_path(t, name)
        return read_label_png(path) if path.is_file() else None

    def min_size_px(self) -> int:
        """Sieving's minimum size: the setting, else twice the mean base superpixel size."""
        if self.config.min_size_px:
            return int(self.config.min_size_px)
        sizes = [self.load_map(0, s.name) for s in self.samples[:8]]
        mean = np.mean([m.size / (m.max() + 1) for m in sizes])
        return int(round(2 * mean))

    def base_regions_total(self) -> int:
        """Base superpixels in the train split (recorded by round 0's selection)."""
        total = self.manifest(0).get("select", {}).get("base_regions_total")
        if total is None:
            total = sum(R.num_slots(self.load_map(0, s.name)) for s in self.samples)
        return int(total)

    def budget_clicks(self, base_regions_total: int) -> int:
        """Clicks of one round: CLICKS_PER_ROUND, or its share of the base superpixels."""
        c = self.config
        return acquisition.budget_clicks(c.clicks_per_round, c.clicks_percent, base_regions_total)

    # ------------------------------------------------------------------ manifest
    def manifest(self, t: int) -> dict:
        p = self.round_dir(t) / "manifest.json"
        if not p.is_file():
            return {}
        return io_utils.read_json_object(
            p, f"the round's record of finished stages is damaged; restore it, or delete "
               f"{self.round_dir(t)} to run round {t} again")

    def done(self, t: int, stage: str) -> bool:
        return stage in self.manifest(t)

    def mark(self, t: int, stage: str, info: dict) -> None:
        m = self.manifest(t)
        m[stage] = info
        io_utils.write_json(self.round_dir(t) / "manifest.json", m)

    def _check_ledger(self, rows: list[dict], lines: list[int] | None = None) -> None:
        """Every finished round's answers and clicks in the ledger equal what its manifest
        recorded (a deleted or added line stops the job instead of shrinking it), and so does
        each answer, row by row (an edited line stops it too, naming the line)."""
        lines = lines or [0] * len(rows)
        for t in range(self.config.rounds):
            done = self.manifest(t).get("annotate")
            if done is None:
                continue
            mine = [r for r in rows if r["round"] == t]
            where = [n for r, n in zip(rows, lines) if r["round"] == t]
            clicks = int(sum(r["cost"] for r in mine))
            if (len(mine), clicks) != (done["answers"], done["clicks"]):
                raise ledger.LedgerError(
                    f"ledger {self.ledger.path} holds {len(mine)} answers ({clicks} clicks) of round "
                    f"{t}, but {self.round_dir(t).name}/manifest.json recorded {done['answers']} "
                    f"answers ({done['clicks']} clicks): the ledger was edited or lost lines. Restore "
                    f"ledger.jsonl from a backup, or, to ask round {t} again, remove its lines and "
                    f"delete {self.round_dir(t).name} and every later round folder")
            recorded = done.get("rows_sha256")
            if recorded is None:  # recorded before answers had digests
                continue
            got = ledger.row_digests(mine)
            for k, (r, n) in enumerate(zip(mine, where)):
                if got[k] != recorded[k]:
                    raise ledger.LedgerError(
                        f"ledger {self.ledger.path} line {n} (round {t}, region {r['region']} of "
                        f"'{r['image']}') is not the answer round {t} recorded when it was answered: "
                        f"the ledger was edited. Restore that line from a backup (or the whole "
                        f"ledger.jsonl); to ask round {t} again instead, remove its lines and delete "
                        f"{self.round_dir(t).name} and every later round folder")

    def require(self, t: int, stage: str) -> None:
        if not self.done(t, stage):
            hint = "bash bash_files/warm_up.sh" if t == 0 else "the driver again"
            raise CannotContinue(f"round {t}: stage '{stage}' has not completed; run {hint}")


Experiment = Job  # the former name of Job, still importable
