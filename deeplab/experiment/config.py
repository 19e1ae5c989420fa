"""An experiment's settings (`ExperimentConfig`: the drivers' variables, validated once and
kept in the job's config.json, checked on every resume) and the names they may take."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from deeplab import io_utils, parallel
from deeplab.active import acquisition, superpixels
from deeplab.datasets import get_dataset
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
    executor: str = "local"  # parallel.EXECUTORS: where the per-image stages run
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
        if self.executor not in parallel.EXECUTORS:
            raise ValueError(f"EXECUTOR '{self.executor}' is unknown; valid: "
                             f"{', '.join(parallel.EXECUTORS)}")
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
