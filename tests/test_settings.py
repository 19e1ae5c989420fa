"""The settings table is the one source: ExperimentConfig, the flags of init_experiment.py, the
resume rules, bash_files/settings.sh's defaults and docs/settings.md come from it; a default
written a second time in a driver fails here; bad values get one line naming the setting."""

import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deeplab.experiment import settings
from deeplab.experiment.settings import MERGE_ONLY, MUTABLE, ExperimentConfig

ROOT = Path(__file__).parents[1]
DRIVERS = sorted((ROOT / "bash_files").glob("*.sh"))


def second_defaults(text: str) -> list[str]:
    """Lines outside the generated block that give a table variable a default of their own
    (`${NAME:-value}`, `${NAME:=value}`, with a value)."""
    if settings.BEGIN in text:
        head, rest = text.split(settings.BEGIN, 1)
        text = head + rest.split(settings.END, 1)[1]
    found = []
    for line in text.splitlines():
        for name in re.findall(r"\$\{(\w+):[-=][^}]", line):
            if name in settings.BY_ENV:
                found.append(line.strip())
    return found


def test_a_resumed_job_takes_run_settings_and_refuses_what_it_computes(tmp_path):
    """The resume rules on a saved job: where and how it runs may change (NUM_WORKERS, CACHE_DIR,
    SAVE_INTERVAL_SECS); what it computes may not (TRAIN_STEPS, SEED); the merge's own settings
    (EPS) bind a job of adaptive regions only."""
    adaptive = ExperimentConfig(job_dir=str(tmp_path / "a"), dataset_dir=str(tmp_path))
    base = dataclasses.replace(adaptive, job_dir=str(tmp_path / "b"), regions="base")
    for job in (adaptive, base):
        job.save_or_check()
        dataclasses.replace(job, num_workers=7, cache_dir=str(tmp_path / "c"), save_interval_secs=5.0).save_or_check()
        for change, words in (({"train_steps": 301}, "train_steps: 300 -> 301"), ({"seed": 4}, "seed: 0 -> 4")):
            with pytest.raises(settings.BadInput, match=words):
                dataclasses.replace(job, **change).save_or_check()
    dataclasses.replace(base, eps=0.3).save_or_check()
    with pytest.raises(settings.BadInput, match="eps: 0.1 -> 0.3"):
        dataclasses.replace(adaptive, eps=0.3).save_or_check()
    assert {"num_workers", "cache_dir", "executor"} <= set(MUTABLE) and "train_steps" not in MUTABLE
    assert set(MERGE_ONLY) == {"eps", "merge_model"}
    # what round 0 does not read: arms that differ only there share their warm-up round
    assert {"regions", "acquisition", "sieve", "eps", "warm_start"} <= set(settings.NOT_IN_ROUND_0)
    assert "seed" not in settings.NOT_IN_ROUND_0 and "train_steps" not in settings.NOT_IN_ROUND_0


def test_generated_files_are_fresh():
    sh = (ROOT / "bash_files" / "settings.sh").read_text()
    assert settings.replace_block(sh) == sh, "run: python -m deeplab.experiment.settings --write"
    assert (ROOT / "docs" / "settings.md").read_text() == settings.reference_markdown(), \
        "run: python -m deeplab.experiment.settings --write"


@pytest.mark.parametrize("driver", DRIVERS, ids=lambda p: p.name)
def test_no_driver_defines_a_default_twice(driver):
    assert second_defaults(driver.read_text()) == []


def test_a_planted_second_default_is_found():
    sh = (ROOT / "bash_files" / "settings.sh").read_text()
    planted = sh + 'BASE_LEARNING_RATE="${BASE_LEARNING_RATE:-0.02}"\n'
    assert second_defaults(planted) == ['BASE_LEARNING_RATE="${BASE_LEARNING_RATE:-0.02}"']
    assert second_defaults('JOB="${JOB_NAME:-}"\nX="${SEEDS:-0 1}"') == []  # empty, or not a setting


def test_the_module_prints_the_table_as_tsv():
    out = subprocess.run([sys.executable, "-m", "deeplab.experiment.settings"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert rows[0] == ["name", "default", "help"] and all(len(r) == 3 for r in rows)
    got = {r[0]: r[1] for r in rows[1:]}
    assert got["BASE_LEARNING_RATE"] == "0.07" and got["CLICKS_PER_ROUND"] == "1000" and got["SIEVE"] == "1"
    bench = subprocess.run([sys.executable, "-m", "deeplab.experiment.settings", "--profile", "benchmark"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "BASE_LEARNING_RATE\t0.02\t" in bench and "CLICKS_PER_ROUND\t0.3%\t" in bench


def test_profile_fills_only_what_the_environment_leaves_unset():
    """A driver with SETTINGS_PROFILE reads the profile's NAME=value lines into the variables the
    environment leaves unset or empty; the others keep the environment's value."""
    assert settings.profile_lines("benchmark").splitlines()[:2] == ["JOB_NAME=compare", "CLICKS_PER_ROUND=0.3%"]
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in settings.TABLE if s.env}}
    env.update(SETTINGS_PROFILE="benchmark", TRAIN_STEPS="7", JOB_NAME="", PYTHON=sys.executable,
               PYTHONPATH=str(ROOT))
    out = subprocess.run(["bash", "-c", 'set -euo pipefail; source bash_files/settings.sh; '
                          'echo "$TRAIN_STEPS $BASE_LEARNING_RATE $JOB_NAME $ROUNDS"'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7", "0.02", "compare", "3"]
    bad = subprocess.run(["bash", "-c", "set -euo pipefail; source bash_files/settings.sh; echo reached"],
                         cwd=ROOT, env=dict(env, SETTINGS_PROFILE="nope"), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0 and "reached" not in bad.stdout and "unknown profile 'nope'" in bad.stderr
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        settings.profile_values("nope")


def test_settings_lines_are_read_as_data_never_run():
    """read_settings (bash_files/settings.sh, which reads a profile's NAME=value lines with it) sets
    the variables named in the lines to the values as written: a value holding shell syntax is a
    string, never run."""
    weird = "/tmp/x y/$(touch SHOULD_NOT_EXIST)/`touch ALSO_NOT`;a=b"
    lines = f"REGIONS=adaptive\nSIEVE=1\nMERGE_MODEL={weird}\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHON=sys.executable)
    out = subprocess.run(["bash", "-c", 'set -euo pipefail; source bash_files/settings.sh; REGIONS=base; '
                          'read_settings <<< "$LINES"; printf "%s\n" "$REGIONS" "$SIEVE" "$MERGE_MODEL"'],
                         cwd=ROOT, env=dict(env, LINES=lines), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["adaptive", "1", weird]
    assert not (ROOT / "SHOULD_NOT_EXIST").exists() and not (ROOT / "ALSO_NOT").exists()


def test_the_comparison_resolves_settings_as_settings_sh_does(tmp_path):
    """compare.sh's Python driver gives the round drivers the values settings.sh would: the
    environment's where set and not empty, else the profile's, else the table's default."""
    from deeplab.experiment import compare_driver

    environ = {"SETTINGS_PROFILE": "benchmark", "TRAIN_STEPS": "7", "EPS": "", "WORK_DIR": str(tmp_path)}
    c = compare_driver.Comparison(environ)
    script = ('source bash_files/settings.sh; for n in $SETTINGS; do printf "%s=%s\n" "$n" "${!n}"; done')
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHON=sys.executable, **environ))
    assert out.returncode == 0, out.stderr
    from_bash = dict(line.split("=", 1) for line in out.stdout.splitlines())
    from_bash["PYTHON"] = "python"  # set for this test's bash only
    assert c.values == from_bash
    assert c.values["TRAIN_STEPS"] == "7" and c.values["JOB_NAME"] == "compare" and c.values["EPS"] == "0.1"
    env, job_dir = c.arm_env("merge_bound", 3, "budget_1pct")
    assert env["JOB_NAME"] == "compare/budget_1pct/merge_bound_s3" and env["SEED"] == "3"
    assert env["MERGE_MODEL"] == str(tmp_path / "compare" / "full_s3" / "round_00" / "train")
    assert "SETTINGS_PROFILE" not in env and job_dir == tmp_path / "compare" / "budget_1pct" / "merge_bound_s3"


def test_profiles_name_only_settings_and_hold_valid_values():
    for name, values in settings.PROFILES.items():
        for env, value in values.items():
            s = settings.BY_ENV[env]
            if env == "CLICKS_PER_ROUND":
                settings.parse_budget(value)
            else:
                s.check(settings.parse_value(s, settings.bash_value(value)))


@pytest.mark.parametrize("field,value,message", [
    ("eps", math.nan, "EPS must be a finite number"), ("eps", math.inf, "EPS must be a finite number"),
    ("base_learning_rate", -1.0, "BASE_LEARNING_RATE must be > 0"),
    ("base_learning_rate", 0.0, "BASE_LEARNING_RATE must be > 0"),
    ("batch_norm_decay", 5.0, "BATCH_NORM_DECAY must be > 0 and <= 1"),
    ("save_interval_secs", -1.0, "SAVE_INTERVAL_SECS must be > 0"),
    ("lease_secs", math.inf, "LEASE_SECS must be a finite number"),
    ("train_crop_size", 1, "TRAIN_CROP_SIZE must be >= 17"),
    ("rounds", 0, "ROUNDS must be >= 1"), ("seed", 2**32, "SEED must be >= 0 and <= 4294967295"),
    ("regions", "nope", "REGIONS 'nope' is unknown; valid: adaptive, base, oracle"),
    ("train_batch_size", 99999999999999999999, "TRAIN_BATCH_SIZE must be at most 2147483647"),
    ("train_steps", 2**31, "TRAIN_STEPS must be at most 2147483647"),
])
def test_bad_values_are_refused_by_name(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ExperimentConfig(job_dir=str(tmp_path / "j"), **{field: value}).validate()


@pytest.mark.parametrize("flags,message", [
    (["--eps", "nan"], "EPS must be a finite number"), (["--rounds", "3.5"], "ROUNDS must be an integer"),
    (["--sieve", "2"], "SIEVE must be 0 or 1"), (["--eps", "abc"], "EPS must be a number"),
    (["--clicks_per_round", "5%%"], "CLICKS_PER_ROUND must be"),
    (["--clicks_per_round=-1%"], "CLICKS_PER_ROUND must be"),
    (["--bogus", "1"], "unrecognized arguments: --bogus"),
])
def test_flag_errors_are_one_line(tmp_path, flags, message):
    out = subprocess.run([sys.executable, "scripts/init_experiment.py", "--job_dir", str(tmp_path / "w" / "j"),
                          "--work_dir", str(tmp_path / "w"), *flags], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and message in out.stderr, out.stderr
    assert not (tmp_path / "w" / "j" / "config.json").exists()


def test_train_eval_and_export_flags_come_from_their_dataclasses(capsys):
    """deeplab/train.py's flags are TrainConfig's and ModelOptions' fields with their defaults
    (DeepLab's names); eval's and export's are EvalConfig's and ExportConfig's; a bad value is
    one line."""
    import dataclasses

    from deeplab import train
    from deeplab.model import ModelOptions
    from deeplab.training.trainer import TrainConfig

    p, fields = train.parser()
    args = p.parse_args(["--train_logdir", "x", "--tfrecord_dir", "y"])
    defaults = TrainConfig(train_logdir="x", tfrecord_dir="y")
    assert set(fields) == {f.name for f in dataclasses.fields(TrainConfig)} - set(train.NOT_FLAGS)
    for name in fields:
        assert getattr(args, name) == getattr(defaults, name), name
    assert train.model_options_from(args, 19) == ModelOptions(num_classes=19)
    args = p.parse_args(["--train_logdir", "x", "--tfrecord_dir", "y", "--train_crop_size", "513,257",
                         "--batch_norm_decay", "0.9", "--seed", "none", "--deterministic", "1"])
    assert args.train_crop_size == (513, 257) and args.batch_norm_decay == 0.9 and args.seed is None
    assert args.deterministic is True
    for bad in (["--base_learning_rate", "nan"], ["--train_batch_size", "4.5"], ["--deterministic", "maybe"]):
        with pytest.raises(SystemExit) as e:
            p.parse_args(["--train_logdir", "x", "--tfrecord_dir", "y"] + bad)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and bad[0] in err[0], err
    from deeplab import eval as evaluation, export_model
    from deeplab.training.evaluate import EvalConfig
    from deeplab.training.export import ExportConfig

    for module, cls in ((evaluation, EvalConfig), (export_model, ExportConfig)):
        with pytest.raises(SystemExit):
            module.main(["--help"])
        shown = capsys.readouterr().out
        for f in dataclasses.fields(cls):
            assert f"--{f.name}" in shown, (cls.__name__, f.name)


def test_init_experiment_help_lists_every_setting():
    """--help prints (a help text with a % in it once broke argparse's formatting)."""
    out = subprocess.run([sys.executable, "scripts/init_experiment.py", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "--clicks_per_round" in out.stdout and "P% of the train split" in out.stdout


def test_the_config_is_a_typed_dataclass_that_editors_can_read():
    """ExperimentConfig's fields are written in its class body with their types (what editors
    and type checkers read; no make_dataclass), and each carries its row of the table."""
    import ast
    import inspect
    import typing

    source = inspect.getsource(ExperimentConfig)
    declared = {n.target.id: ast.unparse(n.annotation) for n in ast.parse(source).body[0].body
                if isinstance(n, ast.AnnAssign)}
    rows = {s.field: s for s in settings.TABLE if s.field}
    assert set(declared) == {"job_dir", *rows}
    hints = typing.get_type_hints(ExperimentConfig)
    for name, row in rows.items():
        assert declared[name] == row.kind.__name__ and hints[name] is row.kind
        meta = {f.name: f.metadata for f in dataclasses.fields(ExperimentConfig)}[name]
        assert meta["env"] == row.env and meta["help"] == row.help
    assert rows["rounds"].low == 1 and rows["propagate_eps"].default == 0.2
    assert rows["eps"].binds == settings.MERGE and rows["num_workers"].binds == settings.RUN
    assert [s.name for s in settings.TABLE[:2]] == ["WORK_DIR", "JOB_NAME"]


def test_a_job_written_under_a_renamed_field_reads_and_resumes(tmp_path):
    """A config.json from before a rename (sieving's `knee`, now `curve_points`) loads with its
    value under the new name, and resuming it with the same settings is not refused."""
    import json

    config = ExperimentConfig(job_dir=str(tmp_path), dataset_dir=str(tmp_path), curve_points=7)
    config.save_or_check()
    old = json.loads(config.path.read_text())
    old["knee"] = old.pop("curve_points")
    config.path.write_text(json.dumps(old))
    assert ExperimentConfig.load(tmp_path).curve_points == 7
    config.save_or_check()  # the same settings: accepted, and written under the new name
    assert json.loads(config.path.read_text())["curve_points"] == 7
    with pytest.raises(settings.BadInput, match="curve_points: 7 -> 20"):
        ExperimentConfig(job_dir=str(tmp_path), dataset_dir=str(tmp_path)).save_or_check()


def test_model_options_written_before_the_rename_load():
    """model_options.json next to a model trained before `bn_momentum` became `batch_norm_decay`
    (the drivers' and DeepLab's name for it) loads with its value."""
    import json

    from deeplab.model import ModelOptions

    text = ModelOptions(model_variant="xception_light", batch_norm_decay=0.9).to_json()
    old = json.loads(text)
    old["bn_momentum"] = old.pop("batch_norm_decay")
    assert ModelOptions.from_json(json.dumps(old)).batch_norm_decay == 0.9
    assert ModelOptions.from_json(text) == ModelOptions.from_json(json.dumps(old))


def test_the_comparisons_own_variables_are_listed_by_its_help():
    from deeplab.experiment import compare_driver

    out = subprocess.run([sys.executable, "scripts/compare.py", "run", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    for name, (default, _) in compare_driver.DRIVER.items():
        assert f"  {name} (default '{default}'): " in out.stdout
    assert "  PARALLEL_ARMS (default '1'): " in out.stdout
