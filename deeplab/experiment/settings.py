"""The experiment's settings as one table: every other definition comes from it.

`ExperimentConfig` (its fields, defaults and checks), the command line of
`scripts/init_experiment.py`, the resume rules (what binds a running job, what round 0 reads,
what only the merge reads), the defaults block of `bash_files/settings.sh`, the settings
reference `docs/settings.md` and the named profiles (the demo, the benchmark, the paper's
setting) are all derived from `TABLE` and `PROFILES` below.

  python -m deeplab.experiment.config                      # the table as TSV: name, default, help
  python -m deeplab.experiment.config --profile benchmark  # the same with a profile's values
  python -m deeplab.experiment.config --write              # regenerate settings.sh's block and docs/settings.md
"""

from __future__ import annotations

import dataclasses
import math

from deeplab import parallel
from deeplab.active import acquisition, superpixels
from deeplab.datasets import DATASET_NAMES
from deeplab.errors import BadInput

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


S = Setting
TABLE: tuple[Setting, ...] = (
    S("dataset", "DATASET", str, "synthetic", "the data set's layout", choices=DATASET_NAMES),
    S("dataset_dir", "DATA_DIR", str, "", "data root in that layout (empty: datasets/<name>; never written into)"),
    S("image_scale", "IMAGE_SCALE", float, 1.0,
      "the scale the job sees the data at: images (bilinear) and labels (nearest) resized once into "
      "the cache; evaluation at that scale too", low=0, high=4, low_open=True),
    S(None, "WORK_DIR", str, "work_dirs", "where jobs and the cache live"),
    S(None, "JOB_NAME", str, "demo", "the job's folder under WORK_DIR"),
    S("rounds", "ROUNDS", int, 3, "rounds, the warm-up included (more may be added to a job)", low=1, binds=RUN),
    S("clicks_per_round", "CLICKS_PER_ROUND", int, 1000,
      "clicks (regions asked) per round, or P% of the train split's base superpixels (paper: 0.2%)", low=1),
    S("clicks_percent", None, float, 0.0, "the budget as a share in %: CLICKS_PER_ROUND=P% (0: a count)",
      low=0, high=100),
    S("superpixel_method", "SUPERPIXEL_METHOD", str, "seeds", "base superpixels", choices=superpixels.METHODS),
    S("num_superpixels", "NUM_SUPERPIXELS", int, 0, "base superpixels per image; 0: one per superpixel_size_px",
      low=0),
    S("superpixel_size_px", None, float, 256.0, "mean base superpixel size when NUM_SUPERPIXELS=0", low=1),
    S("regions", "REGIONS", str, "adaptive", "the regions asked after the warm-up", choices=REGION_MODES,
      round0=False),
    S("acquisition", "ACQUISITION", str, "class_balanced", "the score after the warm-up",
      choices=acquisition.ACQUISITIONS, round0=False),
    S("sieve", "SIEVE", bool, True, "drop the pixels of large regions the answer probably does not fit",
      round0=False),
    S("review_share", "REVIEW_SHARE", float, 0.0,
      "share of each round's answers asked again of another annotator (0: off)", low=0, high=1),
    S("oracle_noise", "ORACLE_NOISE", float, 0.0,
      "the simulated annotator answers another class with this probability", low=0, high=1),
    S("cost_model", "COST_MODEL", str, "click",
      "what a region costs (click: one, the paper's; measured: a fit of answer times)",
      choices=acquisition.COST_MODEL_NAMES),
    S("click_cost_model", "CLICK_COST_MODEL", str, "", "with COST_MODEL=measured: the fit (scripts/fit_cost_model.py)"),
    S("eps", "EPS", float, 0.1, "adaptive merge: Jensen-Shannon distance below which neighbours merge",
      low=0, high=1, low_open=True, binds=MERGE, round0=False),
    S("merge_model", "MERGE_MODEL", str, "",
      "a finished training folder whose model merges instead of the previous round's (a bound)",
      binds=MERGE, round0=False),
    S("knee", None, int, 20, "sieving samples every n // knee-th confidence", low=1, round0=False),
    S("min_size_px", None, int, 0, "sieving: smallest region sieved; 0: twice the mean base superpixel",
      low=0, round0=False),
    S("propagate", "PROPAGATE", bool, False,
      "each answer also labels the unasked regions near it that the model finds alike and predicts "
      "as the answer (from round 1; marked in the source maps, never in the ledger)", round0=False),
    S("propagate_eps", "PROPAGATE_EPS", float, 0.2,
      "propagation: Jensen-Shannon distance below which a region counts as alike (chosen on CamVid "
      "train: docs/benchmark_camvid/implied_labels.md)", low=0, high=1,
      low_open=True, round0=False),
    S("propagate_hops", "PROPAGATE_HOPS", int, 1,
      "propagation: how many neighbour steps away from an answered region", low=1, high=100, round0=False),
    S("self_train", "SELF_TRAIN", bool, False,
      "the previous round's most confident pixels, class by class, join the labels outside every "
      "answered region (from round 1)", round0=False),
    S("self_train_share", "SELF_TRAIN_SHARE", float, 0.2,
      "self-training: the share of each class's predicted pixels taken, the most confident first",
      low=0, high=1, low_open=True, round0=False),
    S("seed", "SEED", int, 0, "the job's seed: selection, initialisation, augmentation", low=0, high=2**32 - 1),
    S("model_variant", "MODEL_VARIANT", str, "xception_light", "the backbone (xception_65 for the paper)",
      choices=MODEL_VARIANTS),
    S("train_steps", "TRAIN_STEPS", int, 300, "training steps per round", low=1),
    S("train_crop_size", "TRAIN_CROP_SIZE", int, 129, "training crop (square; 4k+1 keeps strides aligned)",
      low=17),
    S("train_batch_size", "TRAIN_BATCH_SIZE", int, 8, "training batch (over all replicas)", low=1),
    S("base_learning_rate", "BASE_LEARNING_RATE", float, 0.07,
      "poly schedule's start: 0.07 from scratch, 0.007 from ImageNet weights", low=0, high=10, low_open=True),
    S("batch_norm_decay", "BATCH_NORM_DECAY", float, 0.9,
      "batch norm's moving-average decay (0.9997 from ImageNet weights)", low=0, high=1, low_open=True),
    S("min_scale_factor", "MIN_SCALE_FACTOR", float, 0.5, "training augmentation: smallest random image scale",
      low=0, high=4, low_open=True),
    S("max_scale_factor", "MAX_SCALE_FACTOR", float, 2.0, "training augmentation: largest random image scale",
      low=0, high=4, low_open=True),
    S("class_weights", "CLASS_WEIGHTS", str, "none",
      "per-class loss weights from the round's training labels (median_frequency: SegNet's for CamVid; sqrt_median_frequency: its square root, milder)",
      choices=("none", "median_frequency", "sqrt_median_frequency")),
    S("init_checkpoint", "INIT_CHECKPOINT", str, "", "initial weights: converted ImageNet weights (.npz) or a TF1 checkpoint"),
    S("initialize_last_layer", None, bool, False, "restore the logits layer from INIT_CHECKPOINT too"),
    S("warm_start", "WARM_START", bool, False, "each round starts from the previous round's weights",
      round0=False),
    S("fine_tune_batch_norm", "FINE_TUNE_BATCH_NORM", bool, True, "0: freeze batch norm's statistics (small batches)"),
    S("inference_scale", "INFERENCE_SCALE", float, 1.0, "image scale of acquisition-time inference (paper: 0.5)",
      low=0, high=4, low_open=True),
    S("num_workers", "NUM_WORKERS", int, 2, "processes for the per-image stages (or Ray CPUs)", low=1, binds=RUN),
    S("executor", "EXECUTOR", str, "local", "where the per-image stages run (ray: RAY_ADDRESS for a cluster)",
      choices=parallel.EXECUTORS, binds=RUN),
    S("cache_dir", "CACHE_DIR", str, "", "superpixel maps and val TFRecords, shared by jobs (empty: $WORK_DIR/cache)",
      binds=RUN),
    S("save_interval_secs", "SAVE_INTERVAL_SECS", float, 1200.0, "a checkpoint at least this often while training",
      low=0, low_open=True, binds=RUN),
    S("deterministic", "DETERMINISTIC", bool, True, "deterministic kernels: a seed repeats a run bit for bit"),
    S("annotator", "ANNOTATOR", str, "oracle", "who answers (oracle: reads the ground truth; human: people on the web page; label_studio: people in Label Studio)",
      choices=ANNOTATORS),
    S("annotate_host", "ANNOTATE_HOST", str, "127.0.0.1", "the page's address; another than 127.0.0.1 needs the printed token",
      binds=RUN),
    S("annotate_port", "ANNOTATE_PORT", int, 8765, "the page's port; 0: any free port", low=0, high=65535, binds=RUN),
    S("preselect", "PRESELECT", bool, False, "the page pre-selects the model's dominant class", binds=RUN),
    S("lease_secs", "LEASE_SECS", float, 300.0, "a region handed to one person is held for them this long",
      low=0, low_open=True, binds=RUN),
    S("label_studio_url", "LABEL_STUDIO_URL", str, "http://localhost:8080",
      "ANNOTATOR=label_studio: the Label Studio server the queries go to", binds=RUN),
    S("label_studio_key_file", "LABEL_STUDIO_KEY_FILE", str, "",
      "a file holding Label Studio's API key (empty: the LABEL_STUDIO_API_KEY variable; the key is never saved)",
      binds=RUN),
    S("label_studio_python", "LABEL_STUDIO_PYTHON", str, "",
      "the Python of Label Studio's own environment, which runs its client (empty: the one scripts/label_studio.py installs)",
      binds=RUN),
    S("label_studio_root", "LABEL_STUDIO_ROOT", str, "/",
      "the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: image URLs are paths below it", binds=RUN),
    S("label_studio_poll_secs", "LABEL_STUDIO_POLL_SECS", float, 5.0,
      "how often the answers stage asks Label Studio for new answers", low=0, low_open=True, binds=RUN),
    S("drop_missing_answered", "DROP_MISSING_ANSWERED", bool, False,
      "1: go on without answered images removed from DATA_DIR (their clicks stay spent)", binds=RUN),
    S(None, "STANDIN", bool, True,
      "compare.sh: with INIT_CHECKPOINT empty, every round starts from the stand-in backbone (0: from scratch)"),
    S(None, "PYTHON", str, "python", "the interpreter the drivers run"),
    S(None, "LOCK_WAIT_SECS", int, 120,
      "a driver started while its job's last driver, killed, still has a stage ending waits this long for it",
      low=0),
)
del S

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


def profile_bash(profile: str) -> str:
    """Lines that give every variable the environment leaves unset the profile's value (only
    those the profile sets; bash_files/settings.sh gives the rest the table's defaults). A
    driver runs a profile by setting SETTINGS_PROFILE before it sources settings.sh."""
    profile_values(profile)  # known profile
    return "".join(f': "${{{name}:={bash_value(v)}}}"\n' for name, v in PROFILES[profile].items())


# ---------------------------------------------------------------------------- generated files
BEGIN = ("# >>> generated from the table in deeplab/experiment/settings.py by "
         "`python -m deeplab.experiment.config --write`: change a default there, not here")
END = "# <<< end of the generated block"


def bash_block() -> str:
    """bash_files/settings.sh's block: every variable's default with its help, the list of them
    (SETTINGS, which compare.sh exports) and init_experiment(), which passes them all on."""
    lines = [BEGIN,
             'if [ -n "${SETTINGS_PROFILE:-}" ]; then  # a named profile first (docs/settings.md, "Profiles")',
             '  profile_values="$("${PYTHON:-python}" -m deeplab.experiment.config --profile "$SETTINGS_PROFILE" --bash)"',
             '  eval "$profile_values"',
             "fi"]
    for s in TABLE:
        if s.env:
            allowed = f"{s.allowed()}: " if s.choices else ""
            lines.append(f'{s.env}="${{{s.env}:-{bash_value(s.default)}}}"  # {allowed}{s.help}')
    envs = [s.env for s in TABLE if s.env]
    lines.append("SETTINGS=\"" + _wrap(envs, 96, "  ") + "\"")
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
             "deeplab.experiment.config --write`); `python -m deeplab.experiment.config` prints it "
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
