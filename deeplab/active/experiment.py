"""An active-learning experiment on disk: settings, the job's layout, round manifests and the
checked ledger. No TensorFlow here. The round stages live in `deeplab.active.rounds` (selection,
answers), `deeplab.al_pipeline` (the stages that need a model) and `deeplab.active.results`.

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
in the cache (`deeplab.active.cache`, default `$WORK_DIR/cache`), never inside the data root.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import acquisition, annotation, executor, region_maps, superpixels
from deeplab.active import regions as R
from deeplab.active.cache import DataCache
from deeplab.datasets import get_dataset
from deeplab.datasets.descriptors import DatasetDescriptor, Sample
from deeplab.paths import require_checkpoint

REGION_MODES = ("adaptive", "base", "oracle")
# The backbones of deeplab.core.xception.VARIANTS (named here to keep TensorFlow out).
MODEL_VARIANTS = ("xception_41", "xception_65", "xception_71", "xception_light")
STAGES = ("regions", "select", "annotate", "data", "train", "eval")
# Settings that may change between runs of the same job without invalidating it (where and how
# it runs, not what it computes).
MUTABLE = ("job_dir", "rounds", "num_workers", "executor", "cache_dir", "save_interval_secs",
           "annotate_host", "annotate_port", "preselect", "lease_secs", "drop_missing_answered")
# Settings that only the adaptive merge reads: a job on other regions computes the same thing
# whatever they are (so the random arm of an EPS ablation resumes under another EPS).
MERGE_ONLY = ("eps", "merge_model")
ANNOTATORS = ("oracle", "human")


@dataclasses.dataclass
class ExperimentConfig:
    """Every setting of an experiment (the drivers' variables)."""

    job_dir: str
    dataset: str = "synthetic"
    dataset_dir: str = ""
    rounds: int = 3
    clicks_per_round: int = 500
    # > 0: the budget of every round is this share (in %) of the train split's base superpixels
    # (the paper asks 0.2 %), so one setting fits data sets of any size; clicks_per_round is
    # then ignored.
    clicks_percent: float = 0.0
    superpixel_method: str = "seeds"
    num_superpixels: int = 0  # per image; 0: image area / superpixel_size_px
    superpixel_size_px: float = 256.0
    regions: str = "adaptive"
    acquisition: str = "class_balanced"
    sieve: bool = True
    seed: int = 0
    model_variant: str = "xception_light"
    train_steps: int = 300
    train_crop_size: int = 129
    train_batch_size: int = 8
    base_learning_rate: float = 0.02
    batch_norm_decay: float = 0.9
    init_checkpoint: str = ""
    initialize_last_layer: bool = False
    cost_model: str = "click"  # acquisition.COST_MODEL_NAMES: clicks a region costs
    # COST_MODEL=measured: a fit of measured answer times (scripts/fit_cost_model.py)
    click_cost_model: str = ""
    warm_start: bool = False  # start each round from the previous round's weights
    fine_tune_batch_norm: bool = True
    inference_scale: float = 1.0
    eps: float = 0.1
    # A finished training folder whose model's probabilities merge the adaptive regions instead
    # of the previous round's (the merge-quality bound of compare.sh's `merge_bound` arm: the
    # reference's model); scores and sieving still use the previous round's model.
    merge_model: str = ""
    knee: int = 20
    min_size_px: int = 0  # 0: twice the mean base superpixel size
    num_workers: int = 1
    save_interval_secs: float = 1200.0  # checkpoint at least this often while training
    executor: str = "local"  # executor.EXECUTORS: where the per-image stages run
    cache_dir: str = ""  # derived data shared by jobs; "": <the job's parent folder>/cache
    deterministic: bool = True  # deterministic kernels: a seed repeats a run bit for bit
    annotator: str = "oracle"  # ANNOTATORS: the simulated annotator, or people in a browser
    annotate_host: str = "127.0.0.1"  # the annotation page's address (another: token required)
    annotate_port: int = 8765  # 0: any free port
    preselect: bool = False  # the page pre-selects the model's dominant class (may anchor people)
    lease_secs: float = 300.0  # a region handed to one person is held for them this long
    # Answered images no longer in the train split stop the job unless this is set: then their
    # answers are left out of the labels (the clicks they cost stay spent, and say so).
    drop_missing_answered: bool = False
    # The review pass: this share of each round's answers asked again of another annotator
    # (0: off); a disagreement goes to a third answer, or becomes unclear (255).
    review_share: float = 0.0
    # The simulated annotator's error rate: an answer is another class with this probability.
    oracle_noise: float = 0.0

    # ------------------------------------------------------------------ checks
    def validate(self) -> "ExperimentConfig":
        def positive_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name.upper()} must be a positive integer, got '{v}'")

        if not 0 <= self.clicks_percent <= 100:
            raise ValueError(f"CLICKS_PER_ROUND as a share must be in (0, 100] %, got "
                             f"'{self.clicks_percent}%'")
        if not self.clicks_percent:
            positive_int("clicks_per_round")
        for name in ("rounds", "train_steps", "train_crop_size",
                     "train_batch_size", "num_workers", "knee"):
            positive_int(name)
        for name in ("review_share", "oracle_noise"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name.upper()} must be a share in [0, 1], got '{getattr(self, name)}'")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or not 0 <= self.seed < 2**32:
            raise ValueError(f"SEED must be an integer in 0..{2**32 - 1}, got '{self.seed}'")
        if self.acquisition not in acquisition.ACQUISITIONS:
            raise ValueError(f"ACQUISITION '{self.acquisition}' is unknown; valid: "
                             f"{', '.join(acquisition.ACQUISITIONS)}")
        if self.regions not in REGION_MODES:
            raise ValueError(f"REGIONS '{self.regions}' is unknown; valid: {', '.join(REGION_MODES)}")
        if self.superpixel_method not in superpixels.METHODS:
            raise ValueError(f"SUPERPIXEL_METHOD '{self.superpixel_method}' is unknown; valid: "
                             f"{', '.join(superpixels.METHODS)}")
        if self.num_superpixels < 0 or self.superpixel_size_px <= 0:
            raise ValueError("NUM_SUPERPIXELS must be >= 0 and superpixel_size_px > 0")
        if not 0 < self.inference_scale <= 4:
            raise ValueError(f"inference_scale must be in (0, 4], got {self.inference_scale}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.model_variant not in MODEL_VARIANTS:
            raise ValueError(f"MODEL_VARIANT '{self.model_variant}' is unknown; valid: "
                             f"{', '.join(MODEL_VARIANTS)}")
        if self.annotator not in ANNOTATORS:
            raise ValueError(f"ANNOTATOR '{self.annotator}' is unknown; valid: {', '.join(ANNOTATORS)}")
        if not 0 <= self.annotate_port <= 65535 or self.lease_secs <= 0:
            raise ValueError(f"ANNOTATE_PORT must be in 0..65535 (got {self.annotate_port}) and "
                             f"LEASE_SECS > 0 (got {self.lease_secs})")
        get_dataset(self.dataset, self.dataset_dir or None)
        if self.init_checkpoint:
            require_checkpoint(self.init_checkpoint, "INIT_CHECKPOINT")
        if self.merge_model:
            if self.regions != "adaptive":
                raise ValueError(f"MERGE_MODEL is set but REGIONS is '{self.regions}': only "
                                 "adaptive regions are merged")
            weights = Path(self.merge_model) / "final_weights.npz"
            if not weights.is_file():
                raise FileNotFoundError(f"MERGE_MODEL {self.merge_model} holds no finished training "
                                        f"({weights} does not exist): train it first")
        if self.executor not in executor.EXECUTORS:
            raise ValueError(f"EXECUTOR '{self.executor}' is unknown; valid: "
                             f"{', '.join(executor.EXECUTORS)}")
        if self.cost_model == "clicks":
            self.cost_model = "click"
        if self.cost_model not in acquisition.COST_MODEL_NAMES:
            raise ValueError(f"COST_MODEL '{self.cost_model}' is unknown; valid: "
                             f"{', '.join(acquisition.COST_MODEL_NAMES)}")
        if self.cost_model == acquisition.MEASURED:
            if not self.click_cost_model or not Path(self.click_cost_model).is_file():
                raise FileNotFoundError(
                    f"COST_MODEL=measured needs CLICK_COST_MODEL, a fit of measured times "
                    f"(scripts/fit_cost_model.py writes one); got '{self.click_cost_model}'")
            acquisition.MeasuredCost.from_json(json.loads(Path(self.click_cost_model).read_text()))
        return self

    # ------------------------------------------------------------------ persistence
    @property
    def path(self) -> Path:
        return Path(self.job_dir) / "config.json"

    def save_or_check(self) -> None:
        """Writes config.json, or checks that a resumed job keeps its settings."""
        if self.path.is_file():
            old = json.loads(self.path.read_text())
            new = dataclasses.asdict(self)
            # A setting the job's config predates counts as its default.
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            ignored = MUTABLE + (MERGE_ONLY if new["regions"] != "adaptive" else ())
            changed = {k: (old.get(k, defaults[k]), v) for k, v in new.items()
                       if k not in ignored and not _same_setting(k, old.get(k, defaults[k]), v)}
            if changed:
                raise ValueError(
                    f"job {self.job_dir} was started with other settings "
                    f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}); "
                    "use a new JOB_NAME or restore the settings")
        io_utils.write_json(self.path, dataclasses.asdict(self))

    @classmethod
    def load(cls, job_dir: str | Path) -> "ExperimentConfig":
        path = Path(job_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: start the job with bash_files/warm_up.sh "
                                    "(scripts/init_experiment.py)")
        known = {f.name for f in dataclasses.fields(cls)}
        settings = {k: v for k, v in json.loads(path.read_text()).items() if k in known}
        settings["job_dir"] = str(job_dir)  # the folder it is, not the one it was made in
        return cls(**settings)


def _same_setting(name: str, old, new) -> bool:
    """Equal settings; a data root given once relative and once absolute is the same root."""
    if name == "dataset_dir" and old and new:
        return Path(old).resolve() == Path(new).resolve()
    return old == new


class Experiment:
    """Paths and state of one job."""

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self.job_dir = Path(config.job_dir)
        self.descriptor: DatasetDescriptor = get_dataset(config.dataset, config.dataset_dir or None)
        self.data_root = Path(config.dataset_dir) if config.dataset_dir else self.descriptor.default_root()
        self.cache = DataCache(Path(config.cache_dir) if config.cache_dir else self.job_dir.parent / "cache",
                               config.dataset, self.data_root)
        self.ledger = annotation.Ledger(self.job_dir / "ledger.jsonl", check=self._check_ledger)
        self._samples = None

    @classmethod
    def open(cls, job_dir) -> "Experiment":
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
                raise ValueError(
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
        return acquisition.MeasuredCost.from_json(json.loads(Path(self.config.click_cost_model).read_text()))

    def check_splits(self) -> None:
        """Refuses a val image that is also in the train pool (it would be evaluated on its
        own labels)."""
        if not self.evaluable:
            return
        # the same file (names may repeat across splits whose files differ, as in the
        # synthetic set's train/ and val/ folders)
        val = {s.image_path.resolve() for s in self.descriptor.list_split(self.data_root, "val")}
        both = [s.name for s in self.samples if s.image_path.resolve() in val]
        if both:
            raise ValueError(
                f"{len(both)} images are in both the train and the val split (first: '{both[0]}'): "
                f"the model would be evaluated on images it is trained on; remove them from one "
                f"of {self.descriptor.list_file(self.data_root, 'train')} and "
                f"{self.descriptor.list_file(self.data_root, 'val')}")

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
            raise ValueError(f"{what}. Put the images back, or set DROP_MISSING_ANSWERED=1 to go on "
                             "without them (those clicks stay spent)")
        print(f"WARNING: {what} are left out of the labels (DROP_MISSING_ANSWERED=1); those "
              "clicks stay spent", file=sys.stderr)

    def require_labels(self, what: str) -> None:
        """Raises ValueError unless every train image has its ground truth (`what` needs it)."""
        self.descriptor.require_labels(self.samples, "train", what,
                                       "Set ANNOTATOR=human to answer the regions yourself, or add the labels")

    @property
    def evaluable(self) -> bool:
        """Whether the data set has a val split to evaluate on (a folder may have none)."""
        return self.descriptor.has_split(self.data_root, "val")

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

    def executor(self) -> executor.Executor:
        """Where this job's per-image stages run (EXECUTOR, NUM_WORKERS, RAY_ADDRESS)."""
        return executor.make_executor(self.config.executor, self.config.num_workers)

    def round_dir(self, t: int) -> Path:
        return self.job_dir / f"round_{t:02d}"

    def map_path(self, t: int, name: str) -> Path:
        """Region map in which round t asked (round 0: the base superpixels)."""
        if t == 0:
            return region_maps.path(self.base_dir, name)
        return region_maps.path(self.round_dir(t) / "regions", name)

    def load_map(self, t: int, name: str) -> np.ndarray:
        return region_maps.load(self.map_path(t, name))

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
        if c.clicks_percent:
            return max(1, int(round(base_regions_total * c.clicks_percent / 100.0)))
        return int(c.clicks_per_round)

    # ------------------------------------------------------------------ manifest
    def manifest(self, t: int) -> dict:
        p = self.round_dir(t) / "manifest.json"
        return json.loads(p.read_text()) if p.is_file() else {}

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
                raise annotation.LedgerError(
                    f"ledger {self.ledger.path} holds {len(mine)} answers ({clicks} clicks) of round "
                    f"{t}, but {self.round_dir(t).name}/manifest.json recorded {done['answers']} "
                    f"answers ({done['clicks']} clicks): the ledger was edited or lost lines. Restore "
                    f"ledger.jsonl from a backup, or, to ask round {t} again, remove its lines and "
                    f"delete {self.round_dir(t).name} and every later round folder")
            recorded = done.get("rows_sha256")
            if recorded is None:  # recorded before answers had digests
                continue
            got = annotation.row_digests(mine)
            for k, (r, n) in enumerate(zip(mine, where)):
                if got[k] != recorded[k]:
                    raise annotation.LedgerError(
                        f"ledger {self.ledger.path} line {n} (round {t}, region {r['region']} of "
                        f"'{r['image']}') is not the answer round {t} recorded when it was answered: "
                        f"the ledger was edited. Restore that line from a backup (or the whole "
                        f"ledger.jsonl); to ask round {t} again instead, remove its lines and delete "
                        f"{self.round_dir(t).name} and every later round folder")

    def require(self, t: int, stage: str) -> None:
        if not self.done(t, stage):
            hint = "bash bash_files/warm_up.sh" if t == 0 else "the driver again"
            raise RuntimeError(f"round {t}: stage '{stage}' has not completed; run {hint}")
