"""An experiment's settings (`ExperimentConfig`: the drivers' variables, validated once and
kept in the job's config.json, checked on every resume), built from the one table of
`deeplab.experiment.settings`.

  python -m deeplab.experiment.config [--profile NAME] [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from deeplab import io_utils
from deeplab.active import acquisition
from deeplab.datasets import get_dataset
from deeplab.errors import BadInput, MissingFile, UserError
from deeplab.experiment.settings import (  # noqa: F401  (the names callers import from here)
    ANNOTATORS,
    MERGE_ONLY,
    MODEL_VARIANTS,
    MUTABLE,
    REGION_MODES,
    TABLE,
)
from deeplab.paths import require_checkpoint


def read_cost_model(path) -> "acquisition.MeasuredCost":
    """The measured cost model in CLICK_COST_MODEL, or a BadInput naming the file and the fix."""
    return acquisition.MeasuredCost.from_json(
        io_utils.read_json_object(path, "fit it again (scripts/fit_cost_model.py)"))


class _Config:
    """The methods of ExperimentConfig; its fields are the table's (deeplab.experiment.settings)."""

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
        if self.cost_model == acquisition.MEASURED:
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
            old = io_utils.read_json_object(self.path, _DAMAGED_CONFIG)
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
        settings = {k: v for k, v in io_utils.read_json_object(path, _DAMAGED_CONFIG).items()
                    if k in known}
        settings["job_dir"] = str(job_dir)  # the folder it is, not the one it was made in
        return cls(**settings)



_DAMAGED_CONFIG = ("the job's settings are damaged; restore the file (the settings it was started "
                   "with), or start a new JOB_NAME")


ExperimentConfig = dataclasses.make_dataclass(
    "ExperimentConfig",
    [("job_dir", str)] + [(s.field, s.kind, dataclasses.field(default=s.default)) for s in TABLE if s.field],
    bases=(_Config,))
ExperimentConfig.__module__ = __name__
ExperimentConfig.__doc__ = "Every setting of an experiment (the drivers' variables; deeplab.experiment.settings)."

def _same_setting(name: str, old, new) -> bool:
    """Equal settings; a data root given once relative and once absolute is the same root."""
    if name == "dataset_dir" and old and new:
        return Path(old).resolve() == Path(new).resolve()
    return old == new


def main(argv=None) -> int:
    from deeplab.experiment import settings

    p = argparse.ArgumentParser(description="The experiment's settings as TSV (name, default, help).")
    p.add_argument("--profile", default="demo", help=f"one of {', '.join(settings.PROFILES)}")
    p.add_argument("--bash", action="store_true", help="the profile's values as bash lines for a driver")
    p.add_argument("--write", action="store_true",
                   help="regenerate the block of bash_files/settings.sh and docs/settings.md")
    args = p.parse_args(argv)
    try:
        if args.write:
            root = Path(__file__).resolve().parents[2]
            sh = root / "bash_files" / "settings.sh"
            io_utils.write_text(sh, settings.replace_block(sh.read_text()))
            io_utils.write_text(root / "docs" / "settings.md", settings.reference_markdown())
            print(f"wrote {sh} and {root / 'docs' / 'settings.md'}")
        elif args.bash:
            sys.stdout.write(settings.profile_bash(args.profile))
        else:
            sys.stdout.write(settings.tsv(args.profile))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
