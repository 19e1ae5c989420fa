"""The experiment's settings as one table: every other definition comes from it.

`ExperimentConfig` (its fields, defaults and checks), the command line of
`scripts/init_experiment.py`, the resume rules (what binds a running job, what round 0 reads,
what only the merge reads), the defaults block of `bash_files/settings.sh`, the settings
reference `docs/settings.md` and the named profiles (the demo, the benchmark, the paper's
setting) are all derived from `TABLE` and `PROFILES` below.

  python -m deeplab.experiment.settings                      # the table as TSV: name, default, help
  python -m deeplab.experiment.settings --profile benchmark  # the same with a profile's values
  python -m deeplab.experiment.settings --write              # regenerate settings.sh's block and docs/settings.md
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from pathlib import Path

from deeplab import io_utils, parallel
from deeplab.active import acquisition as acq
from deeplab.active import superpixels
from deeplab.datasets import DATASET_NAMES, get_dataset
from deeplab.errors import BadInput, MissingFile, UserError
from deeplab.paths import require_checkpoint

REGION_MODES = ("adaptive", "base", "oracle")
# The backbones of deeplab.core.xception.VARIANTS (named here to keep TensorFlow out).
MODEL_VARIANTS = ("xception_41", "xception_65", "xception_71", "xception_light")
ANNOTATORS = ("oracle", "human", "label_studio")

# What a change of the setting does to a job that has already started.
JOB = "job"      # refused: it changes what the job computes (use a new JOB_NAME)
RUN = "run"      # allowed: where and how it runs, not what it computes
MERGE = "merge"  # read by the adaptive merge only: a job on other regions ignores it


INT32_MAX = 2**31 - 1  # the largest whole number a setting may hold (TensorFlow's int32)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: `field` of ExperimentConfig (None: a driver's own variable) and `env`, the
    drivers' variable (None: no variable; the Python API and flag only)."""

    field: str | None
    env: str | None
    kind: type
    default: object
    help: str
    choices: tuple = ()
    low: float | None = None  # inclusive bounds of a number
    high: float | None = None
    low_open: bool = False  # low itself is refused
    binds: str = JOB
    round0: bool = True  # False: round 0 does not read it (arms that differ only in these share it)

    @property
    def name(self) -> str:
        return self.env or self.field.upper()

    def allowed(self) -> str:
        """The allowed values in words (for the reference and the error messages)."""
        if self.choices:
            return " | ".join(self.choices)
        if self.kind is bool:
            return "0 | 1"
        if self.low is None and self.high is None:
            return ""
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {_num(self.low)}"
        hi = "" if self.high is None else f"<= {_num(self.high)}"
        return " and ".join(s for s in (lo, hi) if s)

    def check(self, value) -> None:
        """Raises BadInput naming the setting, the value and what is allowed."""
        def refuse(why):
            raise BadInput(f"{self.name} must be {why}, got '{value}'")

        if self.kind is bool:
            if not isinstance(value, bool):
                refuse("0 or 1")
            return
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                refuse("a number")
            if not math.isfinite(value):
                refuse(f"a finite number ({self.allowed() or 'any'})")
            if self.kind is int and int(value) != value:
                refuse(f"an integer ({self.allowed() or 'any'})")
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                refuse(self.allowed())
            if self.high is not None and value > self.high:
                refuse(self.allowed())
            if self.kind is int and self.high is None and abs(value) > INT32_MAX:
                refuse(f"at most {INT32_MAX} (TensorFlow counts in 32-bit integers)")
        if self.choices and value not in self.choices:
            raise BadInput(f"{self.name} '{value}' is unknown; valid: {', '.join(self.choices)}")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def read_cost_model(path) -> "acq.MeasuredCost":
    """The measured cost model in CLICK_COST_MODEL, or a BadInput naming the file and the fix."""
    return acq.MeasuredCost.from_json(
        io_utils.read_json_object(path, "fit it again (scripts/fit_cost_model.py)"))


_DAMAGED_CONFIG = ("the job's settings are damaged; restore the file (the settings it was started "
                   "with), or start a new JOB_NAME")


def _row(env: str | None, default, help: str, **facts) -> dataclasses.Field:
    """A field of ExperimentConfig with its row of the table: the drivers' variable `env` (None:
    the Python API and flag only), the default, the help and the facts of Setting (choices,
    bounds, binds, round0)."""
    return dataclasses.field(default=default, metadata={"env": env, "help": help, **facts})


@dataclasses.dataclass
class ExperimentConfig:
    """Every setting of an experiment: the drivers' variables, validated once, kept in the job's
    config.json and checked on every resume. Each field's metadata is its row of the table."""

    job_dir: str
    dataset: str = _row("DATASET", "synthetic", "the data set's layout", choices=DATASET_NAMES)
    dataset_dir: str = _row("DATA_DIR", "", "data root in that layout (empty: datasets/<name>; never written into)")
    image_scale: float = _row("IMAGE_SCALE", 1.0,
      "the scale the job sees the data at: images (bilinear) and labels (nearest) resized once into "
      "the cache; evaluation at that scale too", low=0, high=4, low_open=True)
    eval_split: str = _row("EVAL_SPLIT", "val",
      "the split every round and the reference are evaluated on (CamVid's test, where present: "
      "figures on images no setting was chosen on; choose settings on val)")
    rounds: int = _row("ROUNDS", 3, "rounds, the warm-up included (more may be added to a job)", low=1, binds=RUN)
    clicks_per_round: int = _row("CLICKS_PER_ROUND", 1000,
      "clicks (regions asked) per round, or P% of the train split's base superpixels (paper: 0.2%)", low=1)
    clicks_percent: float = _row(None, 0.0, "the budget as a share in %: CLICKS_PER_ROUND=P% (0: a count)",
      low=0, high=100)
    superpixel_method: str = _row("SUPERPIXEL_METHOD", "seeds", "base superpixels", choices=superpixels.METHODS)
    num_superpixels: int = _row("NUM_SUPERPIXELS", 0, "base superpixels per image; 0: one per superpixel_size_px",
      low=0)
    superpixel_size_px: float = _row(None, 256.0, "mean base superpixel size when NUM_SUPERPIXELS=0", low=1)
    regions: str = _row("REGIONS", "adaptive", "the regions asked after the warm-up", choices=REGION_MODES,
      round0=False)
    acquisition: str = _row("ACQUISITION", "class_balanced", "the score after the warm-up",
      choices=acq.ACQUISITIONS, round0=False)
    sieve: bool = _row("SIEVE", True, "drop the pixels of large regions the answer probably does not fit",
      round0=False)
    review_share: float = _row("REVIEW_SHARE", 0.0,
      "share of each round's answers asked again of another annotator (0: off)", low=0, high=1)
    oracle_noise: float = _row("ORACLE_NOISE", 0.0,
      "the simulated annotator answers another class with this probability", low=0, high=1)
    cost_model: str = _row("COST_MODEL", "click",
      "what a region costs (click: one, the paper's; measured: a fit of answer times)",
      choices=acq.COST_MODEL_NAMES)
    click_cost_model: str = _row("CLICK_COST_MODEL", "", "with COST_MODEL=measured: the fit (scripts/fit_cost_model.py)")
    eps: float = _row("EPS", 0.1, "adaptive merge: Jensen-Shannon distance below which neighbours merge",
      low=0, high=1, low_open=True, binds=MERGE, round0=False)
    merge_model: str = _row("MERGE_MODEL", "",
      "a finished training folder whose model merges instead of the previous round's (a bound)",
      binds=MERGE, round0=False)
    curve_points: int = _row(None, 20, "sieving: the points a region's sorted confidences are sub-sampled to, "
                             "about, before the knee is searched", low=1, round0=False)
    min_size_px: int = _row(None, 0, "sieving: smallest region sieved; 0: twice the mean base superpixel",
      low=0, round0=False)
    propagate: bool = _row("PROPAGATE", False,
      "each answer also labels the unasked regions near it that the model finds alike and predicts "
      "as the answer (from round 1; marked in the source maps, never in the ledger)", round0=False)
    propagate_eps: float = _row("PROPAGATE_EPS", 0.2,
      "propagation: Jensen-Shannon distance below which a region counts as alike (chosen on CamVid "
      "train: docs/benchmark_camvid/implied_labels.md)", low=0, high=1,
      low_open=True, round0=False)
    propagate_hops: int = _row("PROPAGATE_HOPS", 1,
      "propagation: how many neighbour steps away from an answered region", low=1, high=100, round0=False)
    self_train: bool = _row("SELF_TRAIN", False,
      "the previous round's most confident pixels, class by class, join the labels outside every "
      "answered region (from round 1)", round0=False)
    self_train_share: float = _row("SELF_TRAIN_SHARE", 0.2,
      "self-training: the share of each class's predicted pixels taken, the most confident first",
      low=0, high=1, low_open=True, round0=False)
    seed: int = _row("SEED", 0, "the job's seed: selection, initialisation, augmentation", low=0, high=2**32 - 1)
    model_variant: str = _row("MODEL_VARIANT", "xception_light", "the backbone (xception_65 for the paper)",
      choices=MODEL_VARIANTS)
    train_steps: int = _row("TRAIN_STEPS", 300, "training steps per round", low=1)
    train_crop_size: int = _row("TRAIN_CROP_SIZE", 129, "training crop (square; 4k+1 keeps strides aligned)",
      low=17)
    train_batch_size: int = _row("TRAIN_BATCH_SIZE", 8, "training batch (over all replicas)", low=1)
    base_learning_rate: float = _row("BASE_LEARNING_RATE", 0.07,
      "poly schedule's start: 0.07 from scratch, 0.007 from ImageNet weights", low=0, high=10, low_open=True)
    batch_norm_decay: float = _row("BATCH_NORM_DECAY", 0.9,
      "batch norm's moving-average decay (0.9997 from ImageNet weights)", low=0, high=1, low_open=True)
    min_scale_factor: float = _row("MIN_SCALE_FACTOR", 0.5, "training augmentation: smallest random image scale",
      low=0, high=4, low_open=True)
    max_scale_factor: float = _row("MAX_SCALE_FACTOR", 2.0, "training augmentation: largest random image scale",
      low=0, high=4, low_open=True)
    class_weights: str = _row("CLASS_WEIGHTS", "none",
      "per-class loss weights from the round's training labels (median_frequency: SegNet's for CamVid; sqrt_median_frequency: its square root, milder)",
      choices=("none", "median_frequency", "sqrt_median_frequency"))
    init_checkpoint: str = _row("INIT_CHECKPOINT", "", "initial weights: converted ImageNet weights (.npz) or a TF1 checkpoint")
    initialize_last_layer: bool = _row(None, False, "restore the logits layer from INIT_CHECKPOINT too")
    warm_start: bool = _row("WARM_START", False, "each round starts from the previous round's weights",
      round0=False)
    fine_tune_batch_norm: bool = _row("FINE_TUNE_BATCH_NORM", True, "0: freeze batch norm's statistics (small batches)")
    inference_scale: float = _row("INFERENCE_SCALE", 1.0, "image scale of acquisition-time inference (paper: 0.5)",
      low=0, high=4, low_open=True)
    num_workers: int = _row("NUM_WORKERS", 2, "processes for the per-image stages (or Ray CPUs)", low=1, binds=RUN)
    executor: str = _row("EXECUTOR", "local", "where the per-image stages run (ray: RAY_ADDRESS for a cluster)",
      choices=parallel.EXECUTORS, binds=RUN)
    cache_dir: str = _row("CACHE_DIR", "", "superpixel maps and val TFRecords, shared by jobs (empty: $WORK_DIR/cache)",
      binds=RUN)
    save_interval_secs: float = _row("SAVE_INTERVAL_SECS", 1200.0, "a checkpoint at least this often while training",
      low=0, low_open=True, binds=RUN)
    deterministic: bool = _row("DETERMINISTIC", True, "deterministic kernels: a seed repeats a run bit for bit")
    annotator: str = _row("ANNOTATOR", "oracle", "who answers (oracle: reads the ground truth; human: people on the web page; label_studio: people in Label Studio)",
      choices=ANNOTATORS)
    annotate_host: str = _row("ANNOTATE_HOST", "127.0.0.1", "the page's address; another than 127.0.0.1 needs the printed token",
      binds=RUN)
    annotate_port: int = _row("ANNOTATE_PORT", 8765, "the page's port; 0: any free port", low=0, high=65535, binds=RUN)
    preselect: bool = _row("PRESELECT", False, "the page pre-selects the model's dominant class", binds=RUN)
    lease_secs: float = _row("LEASE_SECS", 300.0, "a region handed to one person is held for them this long",
      low=0, low_open=True, binds=RUN)
    label_studio_url: str = _row("LABEL_STUDIO_URL", "http://localhost:8080",
      "ANNOTATOR=label_studio: the Label Studio server the queries go to", binds=RUN)
    label_studio_key_file: str = _row("LABEL_STUDIO_KEY_FILE", "",
      "a file holding Label Studio's API key (empty: the LABEL_STUDIO_API_KEY variable; the key is never saved)",
      binds=RUN)
    label_studio_python: str = _row("LABEL_STUDIO_PYTHON", "",
      "the Python of Label Studio's own environment, which runs its client (empty: the one scripts/label_studio.py installs)",
      binds=RUN)
    label_studio_root: str = _row("LABEL_STUDIO_ROOT", "/",
      "the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: image URLs are paths below it", binds=RUN)
    label_studio_poll_secs: float = _row("LABEL_STUDIO_POLL_SECS", 5.0,
      "how often the answers stage asks Label Studio for new answers", low=0, low_open=True, binds=RUN)
    drop_missing_answered: bool = _row("DROP_MISSING_ANSWERED", False,
      "1: go on without answered images removed from DATA_DIR (their clicks stay spent)", binds=RUN)

    # ------------------------------------------------------------------ checks
    def validate(self) -> "ExperimentConfig":
        """Every setting within its table row (type, range, choices; NaN and infinity refused),
        then what the table cannot say: the data set, files named, settings that go together."""
        if self.cost_model == "clicks":
            self.cost_model = "click"
        for s in TABLE:
            if s.field and not (s.field == "clicks_per_round" and self.clicks_percent):
                s.check(getattr(self, s.field))
        if self.min_scale_factor > self.max_scale_factor:
            raise BadInput(f"MIN_SCALE_FACTOR {self.min_scale_factor:g} is above MAX_SCALE_FACTOR "
                           f"{self.max_scale_factor:g}: give the smaller value first")
        get_dataset(self.dataset, self.dataset_dir or None)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.eval_split) or self.eval_split == "train":
            raise BadInput(f"EVAL_SPLIT '{self.eval_split}' is not a split to evaluate on: name one "
                           "beside train (val, test)")
        if self.init_checkpoint:
            require_checkpoint(self.init_checkpoint, "INIT_CHECKPOINT")
        if self.merge_model:
            if self.regions != "adaptive":
                raise BadInput(f"MERGE_MODEL is set but REGIONS is '{self.regions}': only "
                               "adaptive regions are merged")
            weights = Path(self.merge_model) / "final_weights.npz"
            if not weights.is_file():
                raise MissingFile(f"MERGE_MODEL {self.merge_model} holds no finished training "
                                  f"({weights} does not exist): train it first")
        if self.cost_model == acq.MEASURED:
            if not self.click_cost_model or not Path(self.click_cost_model).is_file():
                raise MissingFile(
                    f"COST_MODEL=measured needs CLICK_COST_MODEL, a fit of measured times "
                    f"(scripts/fit_cost_model.py writes one); got '{self.click_cost_model}'")
            read_cost_model(self.click_cost_model)
        return self

    # ------------------------------------------------------------------ persistence
    @property
    def path(self) -> Path:
        return Path(self.job_dir) / "config.json"

    def save_or_check(self) -> None:
        """Writes config.json, or checks that a resumed job keeps its settings."""
        if self.path.is_file():
            old = _renamed(io_utils.read_json_object(self.path, _DAMAGED_CONFIG))
            new = dataclasses.asdict(self)
            # A setting the job's config predates counts as its default.
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            ignored = MUTABLE + (MERGE_ONLY if new["regions"] != "adaptive" else ())
            changed = {k: (old.get(k, defaults[k]), v) for k, v in new.items()
                       if k not in ignored and not _same_setting(k, old.get(k, defaults[k]), v)}
            if changed:
                raise BadInput(
                    f"job {self.job_dir} was started with other settings "
                    f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}); "
                    "use a new JOB_NAME or restore the settings")
        io_utils.write_json(self.path, dataclasses.asdict(self))

    @classmethod
    def load(cls, job_dir: str | Path) -> "ExperimentConfig":
        path = Path(job_dir) / "config.json"
        if not path.is_file():
            raise MissingFile(f"{path} does not exist: start the job with bash_files/warm_up.sh "
                              "(scripts/init_experiment.py)")
        known = {f.name for f in dataclasses.fields(cls)}
        settings = {k: v for k, v in _renamed(io_utils.read_json_object(path, _DAMAGED_CONFIG)).items()
                    if k in known}
        settings["job_dir"] = str(job_dir)  # the folder it is, not the one it was made in
        return cls(**settings)


# The drivers' own variables (no field: they choose where a job lives and how the drivers run).
_DRIVER_HEAD = (
    Setting(None, "WORK_DIR", str, "work_dirs", "where jobs and the cache live"),
    Setting(None, "JOB_NAME", str, "demo", "the job's folder under WORK_DIR"),
)
_DRIVER_TAIL = (
    Setting(None, "STANDIN", bool, True,
      "compare.sh: with INIT_CHECKPOINT empty, every round starts from the stand-in backbone (0: from scratch)"),
    Setting(None, "PYTHON", str, "python", "the interpreter the drivers run"),
    Setting(None, "LOCK_WAIT_SECS", int, 120,
      "a driver started while its job's last driver, killed, still has a stage ending waits this long for it",
      low=0),
)


def _table() -> tuple[Setting, ...]:
    import typing

    kinds = typing.get_type_hints(ExperimentConfig)
    rows = tuple(Setting(f.name, f.metadata["env"], kinds[f.name], f.default, f.metadata["help"],
                         **{k: v for k, v in f.metadata.items() if k not in ("env", "help")})
                 for f in dataclasses.fields(ExperimentConfig) if f.name != "job_dir")
    return _DRIVER_HEAD + rows + _DRIVER_TAIL


TABLE: tuple[Setting, ...] = _table()

BY_ENV = {s.env: s for s in TABLE if s.env}
# The resume rules, derived: what may change on a running job, what only the merge reads, and
# what round 0 does not read (arms differing only in these share their warm-up round).
MUTABLE = ("job_dir",) + tuple(s.field for s in TABLE if s.field and s.binds == RUN)
MERGE_ONLY = tuple(s.field for s in TABLE if s.field and s.binds == MERGE)
NOT_IN_ROUND_0 = ("job_dir",) + tuple(s.field for s in TABLE if s.field and (s.binds == RUN or not s.round0))

# Named profiles: the values that differ from the table's defaults (by variable name). A driver
# that runs a profile fills every variable the environment leaves unset from it.
PROFILES: dict[str, dict[str, object]] = {
    # bash bash_files/warm_up.sh && bash bash_files/adaptive_superpixel.sh: the table's defaults
    "demo": {},
    # bash bash_files/compare.sh: past the cold start, every round from the stand-in backbone
    # (docs/benchmark.md, "The benchmark setting")
    "benchmark": {"JOB_NAME": "compare", "CLICKS_PER_ROUND": "0.3%", "TRAIN_STEPS": 600,
                  "BASE_LEARNING_RATE": 0.02},
    # bash bash_files/compare.sh on real street scenes (DATASET=camvid, DATA_DIR: the CamVid
    # folder): chosen on CamVid train/val (docs/benchmark_camvid/ablation.md: 46.46 mIoU fully
    # supervised over three seeds); from scratch, as the synthetic stand-in did not help real images
    "camvid_benchmark": {"JOB_NAME": "compare_camvid", "DATASET": "camvid", "IMAGE_SCALE": 0.5,
                         "CLICKS_PER_ROUND": "3%", "CLASS_WEIGHTS": "sqrt_median_frequency",
                         "TRAIN_STEPS": 2400, "STANDIN": False},
    # the paper's Cityscapes setting (docs/cityscapes.md)
    "paper": {"DATASET": "cityscapes", "MODEL_VARIANT": "xception_65", "SUPERPIXEL_METHOD": "seeds",
              "NUM_SUPERPIXELS": 8192, "CLICKS_PER_ROUND": 50000, "TRAIN_STEPS": 60000,
              "TRAIN_CROP_SIZE": 769, "TRAIN_BATCH_SIZE": 4, "BASE_LEARNING_RATE": 0.007,
              "BATCH_NORM_DECAY": 0.9997, "INFERENCE_SCALE": 0.5, "ROUNDS": 5},
    # bash bash_files/paper_check.sh from scratch: the paper's model, crop, superpixels and
    # inference scale, a short training, the table's learning rate and batch-norm decay
    "paper_check": {"JOB_NAME": "paper_check", "MODEL_VARIANT": "xception_65", "SUPERPIXEL_METHOD": "seeds", "NUM_SUPERPIXELS": 8192,
                    "CLICKS_PER_ROUND": "0.2%", "TRAIN_STEPS": 100, "TRAIN_CROP_SIZE": 769,
                    "TRAIN_BATCH_SIZE": 4, "INFERENCE_SCALE": 0.5},
}
# paper_check.sh with INIT_CHECKPOINT (ImageNet weights): the paper's optimiser settings too
PROFILES["paper_check_imagenet"] = {**PROFILES["paper_check"], "BASE_LEARNING_RATE": 0.007,
                                    "BATCH_NORM_DECAY": 0.9997}


def parse_budget(text) -> tuple[int, float]:
    """CLICKS_PER_ROUND: a count of clicks ('1000') or a share of the base superpixels ('0.5%'),
    as (clicks_per_round, clicks_percent); ValueError with the two forms otherwise."""
    text = str(text).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if math.isfinite(share) and 0 < share <= 100:
                return 0, share
        else:
            clicks = int(text)
            if clicks >= 1:
                return clicks, 0.0
    except ValueError:
        pass
    raise BadInput(f"CLICKS_PER_ROUND must be a number of clicks (1000) or a share of the base "
                   f"superpixels in (0, 100] % (0.5%), got '{text}'")


def parse_value(setting: Setting, text: str):
    """A setting's value from its text on the command line or in the environment."""
    text = str(text).strip()
    if setting.kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise BadInput(f"{setting.name} must be 0 or 1, got '{text}'")
    if setting.kind is int:
        try:
            return int(text)
        except ValueError:
            raise BadInput(f"{setting.name} must be an integer ({setting.allowed() or 'any'}), "
                           f"got '{text}'") from None
    if setting.kind is float:
        try:
            return float(text)  # its range: ExperimentConfig.validate (Setting.check)
        except ValueError:
            raise BadInput(f"{setting.name} must be a number ({setting.allowed() or 'any'}), "
                           f"got '{text}'") from None
    return text


def profile_values(profile: str) -> dict[str, object]:
    """Every driver variable's value under a profile (the table's defaults, then its values)."""
    if profile not in PROFILES:
        raise BadInput(f"unknown profile '{profile}'; valid: {', '.join(PROFILES)}")
    values = {s.name: s.default for s in TABLE if s.env}
    values.update(PROFILES[profile])
    return values


def resolve(environ, profile: str = "") -> dict[str, str]:
    """Every driver variable's value as bash_files/settings.sh gives it: the environment's where
    set and not empty, else the profile's (when one is named), else the table's default."""
    defaults = profile_values(profile) if profile else {s.env: s.default for s in TABLE if s.env}
    return {s.env: environ.get(s.env) or bash_value(defaults[s.env]) for s in TABLE if s.env}


def init_flags(values: dict[str, str]) -> list[str]:
    """scripts/init_experiment.py's flags for a job of these driver values (what settings.sh's
    init_experiment passes; `=` so that a value may start with '-')."""
    return [f"--job_dir={values['WORK_DIR']}/{values['JOB_NAME']}", f"--work_dir={values['WORK_DIR']}"] + \
        [f"--{s.field}={values[s.env]}" for s in TABLE if s.env and s.field]


def bash_value(value) -> str:
    """A value as the drivers write it (booleans as 0/1)."""
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def tsv(profile: str = "demo") -> str:
    """name, default, help: one line per driver variable (the profile's values as defaults)."""
    values = profile_values(profile)
    rows = ["name\tdefault\thelp"]
    rows += [f"{s.name}\t{bash_value(values[s.name])}\t{s.help}" for s in TABLE if s.env]
    return "\n".join(rows) + "\n"


def profile_lines(profile: str) -> str:
    """The values a profile sets, one `NAME=value` line each (data, not shell code):
    bash_files/settings.sh reads them into every variable the environment leaves unset or empty,
    and gives the rest the table's defaults. A driver runs a profile by setting SETTINGS_PROFILE
    before it sources settings.sh."""
    profile_values(profile)  # known profile
    return "".join(f"{name}={bash_value(v)}\n" for name, v in PROFILES[profile].items())


# ---------------------------------------------------------------------------- generated files
BEGIN = ("# >>> generated from the table in deeplab/experiment/settings.py by "
         "`python -m deeplab.experiment.settings --write`: change a default there, not here")
END = "# <<< end of the generated block"


def bash_block() -> str:
    """bash_files/settings.sh's block: every variable's default with its help, the list of them
    (SETTINGS, which compare.sh exports) and init_experiment(), which passes them all on."""
    lines = [BEGIN,
             "# NAME=value lines (data, never run as code) into the variables of those NAMEs that the",
             "# environment leaves unset or empty (only_unset) or into all of them",
             "read_settings() {",
             "  local name value",
             "  while IFS='=' read -r name value; do",
             '    if [ -n "$name" ] && { [ "${1:-}" != only_unset ] || [ -z "${!name:-}" ]; }; then',
             "      printf -v \"$name\" '%s' \"$value\"",
             "    fi",
             "  done",
             "}",
             'if [ -n "${SETTINGS_PROFILE:-}" ]; then  # a named profile first (docs/settings.md, "Profiles")',
             '  profile_values="$("${PYTHON:-python}" -m deeplab.experiment.settings --profile "$SETTINGS_PROFILE" --values)"',
             '  read_settings only_unset <<< "$profile_values"',
             "fi"]
    for s in TABLE:
        if s.env:
            allowed = f"{s.allowed()}: " if s.choices else ""
            lines.append(f'{s.env}="${{{s.env}:-{bash_value(s.default)}}}"  # {allowed}{s.help}')
    envs = [s.env for s in TABLE if s.env]
    lines.append("SETTINGS=\"" + _wrap(envs, 96, "  ") + "\"")
    from deeplab.parallel import TF_NOISE

    assert "'" not in TF_NOISE
    lines.append(f"TF_NOISE='{TF_NOISE}'  # TensorFlow's start-up notices (deeplab/parallel.py)")
    lines.append("init_experiment() {")
    flags = ['--job_dir "$JOB_DIR"', '--work_dir "$WORK_DIR"']
    flags += [f'--{s.field}="${s.env}"' for s in TABLE if s.env and s.field]  # "=": a value may start with -
    lines.append("  py scripts/init_experiment.py " + _wrap(flags, 92, "    ", " \\\n"))
    lines += ["}", END]
    return "\n".join(lines) + "\n"


def _wrap(words: list[str], width: int, indent: str, sep: str = "\n") -> str:
    out, line = [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            out.append(line)
            line = indent + w
        else:
            line = f"{line} {w}" if line else w
    out.append(line)
    return sep.join(out)


def reference_markdown() -> str:
    """docs/settings.md: the table and the profiles."""
    resume = {JOB: "refused", RUN: "allowed", MERGE: "refused on adaptive regions"}
    lines = ["# Settings reference", "",
             "Generated from the table in `deeplab/experiment/settings.py` (`python -m "
             "deeplab.experiment.settings --write`); `python -m deeplab.experiment.settings` prints it "
             "as TSV. Every variable is read by `bash_files/warm_up.sh`, `adaptive_superpixel.sh` "
             "and `compare.sh` from the environment; a setting without a variable is a field of "
             "`ExperimentConfig` only. *Running job*: what changing it on a job that has started "
             "does. *Round 0*: whether the warm-up round reads it (arms differing only in "
             "settings it does not read share their warm-up round in `compare.sh`).", "",
             "| variable | default | allowed | running job | round 0 | what it sets |",
             "|---|---|---|---|---|---|"]
    for s in TABLE:
        name = f"`{s.env}`" if s.env else f"(`{s.field}`)"
        default = f"`{bash_value(s.default)}`" if bash_value(s.default) != "" else "(empty)"
        if s.field is None:
            lines.append(f"| {name} | {default} | | driver | | {s.help} |")
            continue
        round0 = "read" if s.round0 and s.binds != RUN else "not read"
        allowed = s.allowed().replace(" | ", ", ")
        lines.append(f"| {name} | {default} | {allowed} | {resume[s.binds]} | {round0} | {s.help} |")
    lines += ["", "## Profiles", "",
              "Named settings a driver starts from (the environment still wins); what each sets "
              "besides the defaults above.", "", "| profile | used by | values |", "|---|---|---|"]
    used = {"demo": "`warm_up.sh`, `adaptive_superpixel.sh`", "benchmark": "`compare.sh`",
            "camvid_benchmark": "`compare.sh` on CamVid (docs/benchmark_camvid/run.sh)",
            "paper": "the Cityscapes command of docs/cityscapes.md",
            "paper_check": "`paper_check.sh`", "paper_check_imagenet": "`paper_check.sh` with `INIT_CHECKPOINT`"}
    for name, values in PROFILES.items():
        text = ", ".join(f"`{k}={bash_value(v)}`" for k, v in values.items()) or "the defaults"
        lines.append(f"| {name} | {used.get(name, '')} | {text} |")
    return "\n".join(lines) + "\n"


def replace_block(text: str) -> str:
    """settings.sh's text with its generated block made anew (ValueError without the markers)."""
    if BEGIN not in text or END not in text:
        raise BadInput("bash_files/settings.sh has no generated block (its markers are missing)")
    head, rest = text.split(BEGIN, 1)
    return head + bash_block() + rest.split(END + "\n", 1)[1]


# Fields renamed since jobs were first written: a job's config.json under the old name reads as the new.
RENAMED = {"knee": "curve_points"}


def _renamed(config: dict) -> dict:
    return {RENAMED.get(k, k): v for k, v in config.items()}


def _same_setting(name: str, old, new) -> bool:
    """Equal settings; a data root given once relative and once absolute is the same root."""
    if name == "dataset_dir" and old and new:
        return Path(old).resolve() == Path(new).resolve()
    return old == new


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="The experiment's settings as TSV (name, default, help).")
    p.add_argument("--profile", default="demo", help=f"one of {', '.join(PROFILES)}")
    p.add_argument("--values", action="store_true",
                   help="the values the profile sets, NAME=value lines (bash_files/settings.sh reads them)")
    p.add_argument("--write", action="store_true",
                   help="regenerate the block of bash_files/settings.sh and docs/settings.md")
    args = p.parse_args(argv)
    try:
        if args.write:
            root = Path(__file__).resolve().parents[2]
            sh = root / "bash_files" / "settings.sh"
            io_utils.write_text(sh, replace_block(sh.read_text()))
            io_utils.write_text(root / "docs" / "settings.md", reference_markdown())
            print(f"wrote {sh} and {root / 'docs' / 'settings.md'}")
        elif args.values:
            sys.stdout.write(profile_lines(args.profile))
        else:
            sys.stdout.write(tsv(args.profile))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
