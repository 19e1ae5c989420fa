"""An active-learning experiment on disk: settings, round folders, manifests, and the numpy
stages (selection, answers, results). No TensorFlow here; the stages that need a model live in
`deeplab.al_pipeline`.

Layout of `$WORK_DIR/$JOB_NAME`:
  config.json                 settings (checked on every resume)
  ledger.jsonl                every answer, append-only (the truth; labels derive from it)
  results.csv, al_curve.png   one row per evaluated round; mIoU against clicks
  round_XX/manifest.json      completed stages with their figures
  round_XX/regions/*.npz      the round's region map and statistics per image (rounds >= 1;
                              round 0 asks the base superpixels)
  round_XX/selection.json     chosen regions
  round_XX/labels/*.png       training labels (all answers so far, sieved)
  round_XX/tfrecord/          the round's training TFRecords
  round_XX/train/             checkpoints, summaries, final weights
  round_XX/eval.json          mIoU, per-class IoU, confusion matrix
  round_XX/overlays/          queried regions and sieved pixels, for a person to look at
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.active import acquisition, annotation, superpixels
from deeplab.active import regions as R
from deeplab.datasets import get_dataset
from deeplab.datasets.descriptors import DatasetDescriptor, Sample
from deeplab.paths import require_checkpoint

REGION_MODES = ("adaptive", "base", "oracle")
# The backbones of deeplab.core.xception.VARIANTS (named here to keep TensorFlow out).
MODEL_VARIANTS = ("xception_41", "xception_65", "xception_71", "xception_light")
STAGES = ("regions", "select", "annotate", "data", "train", "eval")
# Settings that may change between runs of the same job without invalidating it.
MUTABLE = ("rounds", "num_workers")


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
    cost_model: str = "click"  # acquisition.COST_MODELS: clicks a region costs
    warm_start: bool = False  # start each round from the previous round's weights
    fine_tune_batch_norm: bool = True
    inference_scale: float = 1.0
    eps: float = 0.1
    knee: int = 20
    min_size_px: int = 0  # 0: twice the mean base superpixel size
    num_workers: int = 1
    deterministic: bool = True  # deterministic kernels: a seed repeats a run bit for bit

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
        get_dataset(self.dataset)
        if self.init_checkpoint:
            require_checkpoint(self.init_checkpoint, "INIT_CHECKPOINT")
        if self.cost_model not in acquisition.COST_MODELS:
            raise ValueError(f"cost_model '{self.cost_model}' is unknown; valid: "
                             f"{', '.join(acquisition.COST_MODELS)}")
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
            changed = {k: (old.get(k, defaults[k]), v) for k, v in new.items()
                       if k not in MUTABLE and old.get(k, defaults[k]) != v}
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
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})


class Experiment:
    """Paths and state of one job."""

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self.job_dir = Path(config.job_dir)
        self.descriptor: DatasetDescriptor = get_dataset(config.dataset)
        self.data_root = Path(config.dataset_dir) if config.dataset_dir else self.descriptor.default_root()
        self.ledger = annotation.Ledger(self.job_dir / "ledger.jsonl")
        self._samples = None

    @classmethod
    def open(cls, job_dir) -> "Experiment":
        return cls(ExperimentConfig.load(job_dir))

    # ------------------------------------------------------------------ data
    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self.descriptor.list_split(self.data_root, "train")
        return self._samples

    @property
    def val_tfrecord_dir(self) -> Path:
        return self.data_root / "tfrecord"

    @property
    def base_dir(self) -> Path:
        c = self.config
        tag = f"n{c.num_superpixels}" if c.num_superpixels else f"s{c.superpixel_size_px:g}"
        return self.data_root / "superpixels" / f"{c.superpixel_method}_{tag}" / "train"

    @property
    def oracle_dir(self) -> Path:
        return self.data_root / "superpixels" / "oracle" / "train"

    def round_dir(self, t: int) -> Path:
        return self.job_dir / f"round_{t:02d}"

    def map_path(self, t: int, name: str) -> Path:
        """Region map in which round t asked (round 0: the base superpixels)."""
        if t == 0:
            return superpixels.region_path(self.base_dir, name)
        return superpixels.region_path(self.round_dir(t) / "regions", name)

    def load_map(self, t: int, name: str) -> np.ndarray:
        if t == 0:
            return superpixels.load_regions(self.map_path(0, name))
        with np.load(self.map_path(t, name), allow_pickle=False) as z:
            return z["regions"].astype(np.int32)

    def min_size_px(self) -> int:
        """Sieving's minimum size: the setting, else twice the mean base superpixel size."""
        if self.config.min_size_px:
            return int(self.config.min_size_px)
        sizes = [superpixels.load_regions(self.map_path(0, s.name)) for s in self.samples[:8]]
        mean = np.mean([m.size / (m.max() + 1) for m in sizes])
        return int(round(2 * mean))

    def base_regions_total(self) -> int:
        """Base superpixels in the train split (recorded by round 0's selection)."""
        total = self.manifest(0).get("select", {}).get("base_regions_total")
        if total is None:
            total = sum(R.num_slots(superpixels.load_regions(self.map_path(0, s.name)))
                        for s in self.samples)
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

    def require(self, t: int, stage: str) -> None:
        if not self.done(t, stage):
            hint = "bash bash_files/warm_up.sh" if t == 0 else "the driver again"
            raise RuntimeError(f"round {t}: stage '{stage}' has not completed; run {hint}")

    # ------------------------------------------------------------------ answers
    def answers_of(self, name: str, before_round: int | None = None, rows_by_image=None):
        """(maps, answers) by round for one image, rounds < before_round (all if None)."""
        if rows_by_image is None:
            rows_by_image = self.ledger.by_image()
        rows = rows_by_image.get(name, [])
        if before_round is not None:
            rows = [r for r in rows if r["round"] < before_round]
        answers = annotation.answer_luts(rows)
        maps = {t: self.load_map(t, name) for t in answers}
        return maps, answers


# ---------------------------------------------------------------------------- selection
def _round_pool(exp: Experiment, t: int):
    """Per image: (sizes, uncertainty, dominant class, covered pixels) of round t's regions."""
    rows_by_image = exp.ledger.by_image()
    pool = []
    for s in exp.samples:
        if t == 0:
            regions = exp.load_map(0, s.name)
            n = R.num_slots(regions)
            size = R.sizes(regions, n)
            unc = np.zeros(n)
            dom = np.zeros(n, np.int64)
        else:
            with np.load(exp.map_path(t, s.name), allow_pickle=False) as z:
                regions = z["regions"].astype(np.int32)
                size, unc, dom = z["size"], z["uncertainty"], z["dominant_class"]
            n = len(size)
        maps, answers = exp.answers_of(s.name, before_round=t, rows_by_image=rows_by_image)
        if answers:
            cov = annotation.covered(maps, answers)
            cov_px = np.bincount(regions.ravel(), weights=cov.ravel(), minlength=n)
        else:
            cov_px = np.zeros(n)
        pool.append((size, unc, dom, cov_px))
    return pool


def select_round(exp: Experiment, t: int) -> dict:
    """Selection stage: writes round_XX/selection.json; returns its summary."""
    c = exp.config
    method = "random" if t == 0 else c.acquisition
    pool = _round_pool(exp, t)
    counts = np.array([len(p[0]) for p in pool])
    offsets = R.offsets(counts)
    size = np.concatenate([p[0] for p in pool]).astype(np.int64)
    unc = np.concatenate([p[1] for p in pool]).astype(np.float64)
    dom = np.concatenate([p[2] for p in pool]).astype(np.int64)
    cov = np.concatenate([p[3] for p in pool])
    image_index = np.repeat(np.arange(len(pool)), counts)
    region_id = np.arange(len(size)) - offsets[image_index]
    # Eligible: the region exists and fewer than half of its pixels already carry an answer.
    eligible = (size > 0) & (cov < size / 2.0)
    rng = np.random.default_rng([c.seed, t])
    scores = np.zeros(len(size))
    if eligible.any():
        e = np.flatnonzero(eligible)
        scores[e] = acquisition.compute_scores(method, unc[e], dom[e], size[e],
                                               exp.descriptor.num_classes, rng)
    base_total = int((size > 0).sum()) if t == 0 else exp.base_regions_total()
    sel = acquisition.select(scores, eligible, image_index, region_id,
                             acquisition.COST_MODELS[c.cost_model](size), exp.budget_clicks(base_total))
    chosen = [{"image": exp.samples[image_index[i]].name, "region": int(region_id[i]),
               "score": float(scores[i]), "cost": int(cost), "size": int(size[i])}
              for i, cost in zip(sel.index, sel.cost)]
    info = {"method": method, "budget": sel.budget, "spent": sel.spent, "pool": sel.pool_size,
            "regions_total": int((size > 0).sum()), "exhausted": sel.exhausted,
            "base_regions_total": base_total,
            "regions_per_image": float((size > 0).sum() / len(pool)),
            "mean_region_px": float(size[size > 0].mean())}
    io_utils.write_json(exp.round_dir(t) / "selection.json", {"info": info, "regions": chosen})
    if sel.exhausted:
        print(f"round {t}: the budget of {sel.budget} clicks exceeds the eligible pool "
              f"({sel.pool_size} regions): taking the whole pool ({sel.spent} clicks)")
    return info


def annotate_round(exp: Experiment, t: int) -> dict:
    """Answers stage: the simulated annotator answers the selection; appended to the ledger
    once (a resumed run finds the round's rows and does not append them again)."""
    sel = json.loads((exp.round_dir(t) / "selection.json").read_text())["regions"]
    existing = [r for r in exp.ledger.read() if r["round"] == t]
    if existing:
        if len(existing) != len(sel):
            raise RuntimeError(
                f"ledger {exp.ledger.path} holds {len(existing)} answers of round {t} but the "
                f"selection has {len(sel)}: the ledger was edited; restore it")
        rows = existing
    else:
        by_image: dict[str, list] = {}
        for r in sel:
            by_image.setdefault(r["image"], []).append(r)
        samples = {s.name: s for s in exp.samples}
        order = {s.name: i for i, s in enumerate(exp.samples)}
        rows = []
        for name in sorted(by_image, key=order.__getitem__):
            asked = by_image[name]
            regions = exp.load_map(t, name)
            label = exp.descriptor.read_label(samples[name])
            ids = np.array([r["region"] for r in asked])
            answers, sizes = annotation.oracle_answers(regions, label, ids)
            for r, a, n in zip(asked, answers, sizes):
                rows.append({"round": t, "image": name, "region": r["region"], "answer": int(a),
                             "size": int(n), "score": r["score"], "cost": r["cost"]})
        exp.ledger.append(rows)
    answered = [r for r in rows if r["answer"] != exp.descriptor.ignore_label]
    return {"answers": len(rows), "clicks": int(sum(r["cost"] for r in rows)),
            "labelled_answers": len(answered)}


# ---------------------------------------------------------------------------- results
def total_clicks(exp: Experiment, upto_round: int) -> int:
    return int(sum(r["cost"] for r in exp.ledger.read() if r["round"] <= upto_round))


def iou_column(class_name: str) -> str:
    """The results column of a class's IoU (`iou_traffic_light`)."""
    return f"iou_{class_name.replace(' ', '_')}"


def iou_cells(ev: dict, class_names) -> dict:
    """Per-class IoU (%) of an eval.json by column; '' where a class had an empty union."""
    return {iou_column(n): "" if v is None else round(100 * v, 2)
            for n, v in zip(class_names, ev["per_class_iou"])}


def results_rows(exp: Experiment) -> list[dict]:
    """One row per evaluated round, derived from the manifests (so always consistent)."""
    rows = []
    names = exp.descriptor.class_names
    for t in range(exp.config.rounds):
        m = exp.manifest(t)
        if "eval" not in m:
            break
        ev = json.loads((exp.round_dir(t) / "eval.json").read_text())
        row = {"round": t, "clicks": total_clicks(exp, t), "miou": round(100 * ev["miou"], 2)}
        row.update(iou_cells(ev, names))
        sel, data = m.get("select", {}), m.get("data", {})
        row.update({
            "regions_per_image": round(sel.get("regions_per_image", float("nan")), 1),
            "mean_region_px": round(sel.get("mean_region_px", float("nan")), 1),
            "labelled_px": data.get("labelled_px", ""),
            "label_noise_before_sieve": data.get("noise_before", ""),
            "label_noise_after_sieve": data.get("noise_after", ""),
            "sieved_px": data.get("sieved_px", ""),
            "sieved_wrong_share": data.get("sieved_wrong_share", ""),
        })
        rows.append(row)
    return rows


def write_results(exp: Experiment) -> list[dict]:
    """results.csv and al_curve.png at the job root; returns the rows."""
    rows = results_rows(exp)
    if not rows:
        return rows
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    io_utils.write_text(exp.job_dir / "results.csv", buf.getvalue())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot([r["clicks"] for r in rows], [r["miou"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"r{r['round']}", (r["clicks"], r["miou"]), textcoords="offset points", xytext=(4, -10))
    c = exp.config
    ax.set_xlabel("clicks (one per region)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{c.dataset}: {c.regions} regions, {c.acquisition}, sieve={int(c.sieve)}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with io_utils.atomic_path(exp.job_dir / "al_curve.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return rows


def format_results(rows: list[dict]) -> str:
    """The results table, one column per figure, aligned to its widest cell."""
    cols = [("round", "round"), ("clicks", "clicks"), ("miou", "mIoU"),
            ("regions_per_image", "regions/img"), ("labelled_px", "labelled px"),
            ("label_noise_before_sieve", "noise before"), ("label_noise_after_sieve", "noise after"),
            ("sieved_px", "sieved px"), ("sieved_wrong_share", "sieved wrong")]

    def cell(key, v):
        if v == "" or v is None or (isinstance(v, float) and v != v):
            return "-"
        if isinstance(v, float) and key.startswith(("label_noise", "sieved_wrong")):
            return f"{v:.4f}"
        if isinstance(v, float):
            return f"{v:.2f}" if key == "miou" else f"{v:g}"
        return str(v)

    table = [[head for _, head in cols]] + [[cell(k, r.get(k, "")) for k, _ in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in table)
