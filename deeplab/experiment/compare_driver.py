"""The comparison driver (`bash bash_files/compare.sh`, which runs `python scripts/compare.py run`):
every arm of ARMS for every seed of SEEDS, each arm an ordinary job run by the round drivers
(bash_files/warm_up.sh, then adaptive_superpixel.sh, with the arm's REGIONS / ACQUISITION / SIEVE /
PROPAGATE / SELF_TRAIN), plus the fully supervised reference `full`; then the report
(deeplab/experiment/compare.py) or, with BUDGETS, the budget map (budget_map.py).

Its own variables are below (`DRIVER`); every variable of bash_files/settings.sh is a setting too,
resolved as settings.sh resolves it (the environment, then SETTINGS_PROFILE, by default
`benchmark`, then the table's defaults) and handed to the round drivers it starts. Re-running
resumes: finished jobs are skipped by their drivers, and every run's wall time is appended to
wall_clock.txt, whatever ends it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from deeplab import parallel
from deeplab.errors import BadInput
from deeplab.experiment import budget_map, compare, settings

ROOT = Path(__file__).resolve().parents[2]

# name -> (default, help): the comparison's own variables (`python scripts/compare.py run --help`
# lists them; docs/benchmark.md describes them). Empty means the default, but for SEEDS and ARMS,
# which are refused empty.
DRIVER = {
    "SETTINGS_PROFILE": ("benchmark", "the settings profile: the benchmark past the cold start "
                         "(docs/benchmark.md); camvid_benchmark for real street scenes"),
    "SEEDS": ("0 1 2", "the seeds every arm runs"),
    "ARMS": ("full random class_balanced adaptive paper", "the arms (deeplab/experiment/compare.py)"),
    "SHARE_WARM_UP": ("1", "0: every arm trains its own (identical) warm-up round"),
    "SYNTH_TRAIN": ("400", "the embedded pool's train images (DATASET=synthetic, no DATA_DIR)"),
    "SYNTH_VAL": ("100", "its val images"),
    "SYNTH_HEIGHT": ("128", "its image height (superpixels stay one per 256 px)"),
    "SYNTH_WIDTH": ("256", "its image width"),
    "STANDIN_DIR": ("models", "where the stand-in's .npz is kept"),
    "STANDIN_FLAGS": ("", "flags of scripts/build_standin.py, e.g. '--steps 3000'"),
    "NUMERICS_CHECK": ("1", "1: the first seed's arms again with oneDNN flipped (P5)"),
    "NUMERICS_ARMS": ("random class_balanced paper", "the arms P5 runs again (those in ARMS)"),
    "BUDGETS": ("", "the budget map: per-round budgets, e.g. '0.3% 1% 3% 10%'"),
    "PARALLEL_ARMS": ("1", "arms of a seed run at once after their shared warm-up, each into "
                      "logs/{job}.log (same results: docs/measured.md)"),
}
TF_NOISE = re.compile(parallel.TF_NOISE)  # kept out of the output of the scripts run here
ROUND_DRIVERS = ("bash_files/warm_up.sh", "bash_files/adaptive_superpixel.sh")
STOP_WAIT_SECS = 60  # how long a stopped comparison waits for the drivers it stops


def variables_help() -> str:
    """The comparison's own variables with their defaults, one per line."""
    return "\n".join(f"  {name} (default '{default}'): {help}" for name, (default, help) in DRIVER.items())


def _variable(environ, name: str) -> str:
    default = DRIVER[name][0]
    if name in ("SEEDS", "ARMS"):  # unset: the default; set but empty: refused (check_arms, check_seeds)
        return environ.get(name, default)
    return environ.get(name) or default


def _flag(environ, name: str) -> bool:
    value = _variable(environ, name)
    if value not in ("0", "1"):
        raise BadInput(f"{name} must be 0 or 1, got '{value}'")
    return value == "1"


def _parallel_arms(environ) -> int:
    value = _variable(environ, "PARALLEL_ARMS")
    if not re.fullmatch(r"[1-9][0-9]?", value):
        raise BadInput(f"PARALLEL_ARMS must be a whole number from 1 to 99 (arms run at once), got '{value}'")
    return int(value)


@dataclass
class Arm:
    """One job of the comparison: its environment, the round drivers still to run, and (run in
    the background) its log."""
    env: dict
    job_dir: Path
    drivers: list = field(default_factory=lambda: list(ROUND_DRIVERS))
    log: Path | None = None
    proc: subprocess.Popen | None = None


class Comparison:
    def __init__(self, environ=None):
        environ = dict(os.environ if environ is None else environ)
        self.values = settings.resolve(environ, _variable(environ, "SETTINGS_PROFILE"))
        self.arms = compare.check_arms(_variable(environ, "ARMS").split())
        self.seeds = compare.check_seeds(_variable(environ, "SEEDS").split())
        self.budgets = compare.check_budgets(_variable(environ, "BUDGETS").split())
        self.parallel = _parallel_arms(environ)
        self.share = _flag(environ, "SHARE_WARM_UP")
        self.numerics = _flag(environ, "NUMERICS_CHECK")
        self.numerics_arms = [a for a in _variable(environ, "NUMERICS_ARMS").split() if a in self.arms]
        self.synth = {k: _variable(environ, f"SYNTH_{k.upper()}") for k in ("train", "val", "height", "width")}
        self.standin_dir = _variable(environ, "STANDIN_DIR")
        self.standin_flags = _variable(environ, "STANDIN_FLAGS").split()
        self.onednn = environ.get("TF_ENABLE_ONEDNN_OPTS") or "1"  # TensorFlow's default on x86: on
        self.stage_log = environ.get("STAGE_LOG", "")
        self.name = self.values["JOB_NAME"]
        self.dir = Path(self.values["WORK_DIR"]) / self.name
        # What every job's drivers get: the resolved settings (no profile left to apply), this
        # process as the driver the scripts it starts follow, and quieter progress bars in logs.
        base = {k: v for k, v in environ.items() if k != "SETTINGS_PROFILE"}
        base.update(self.values)
        base.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        base[parallel.DRIVER_ENV] = str(os.getpid())
        if not sys.stderr.isatty():
            base.setdefault("TQDM_MININTERVAL", "10")
        self.env = base
        self.running: list[Arm] = []

    # ------------------------------------------------------------------ scripts run here
    def script(self, *args: str, env: dict | None = None, capture: bool = False) -> str:
        """Runs `PYTHON script args...` (through the stage log when STAGE_LOG is set), its
        stderr without TensorFlow's start-up notices; a failure stops the comparison with the
        script's exit status. Returns its stdout when `capture`."""
        env = self.env if env is None else env
        command = list(args)
        if self.stage_log:
            command = ["-m", "deeplab.experiment.stage_log", "--log", self.stage_log, "--", *command]
        proc = subprocess.Popen([env["PYTHON"], *command], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE,
                                preexec_fn=parallel.die_with_parent)
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True) if capture else None
        if reader:
            reader.start()
        try:
            _pass_stderr(proc.stderr.fileno())
            status = proc.wait()
        except BaseException:
            _end([proc])
            raise
        if reader:
            reader.join()
        if status:
            raise SystemExit(status)
        return b"".join(out).decode(errors="replace")

    def init_job(self, env: dict) -> None:
        self.script("scripts/init_experiment.py", *settings.init_flags(env), env=env)

    def arm_env(self, arm: str, seed: int, sub: str = "", extra: dict | None = None) -> tuple[dict, Path]:
        reference = str(self.dir / compare.job_name(compare.REFERENCE, seed))
        env = {**self.env, **(extra or {}), **compare.arm_values(arm, reference)}
        env["SEED"] = str(seed)
        env["JOB_NAME"] = f"{self.name}/{sub + '/' if sub else ''}{compare.job_name(arm, seed)}"
        env["JOB_DIR"] = f"{env['WORK_DIR']}/{env['JOB_NAME']}"
        return env, Path(env["JOB_DIR"])

    # ------------------------------------------------------------------ the data and the stand-in
    def prepare(self) -> None:
        v = self.values
        if v["DATASET"] == "synthetic" and not v["DATA_DIR"]:
            s = self.synth
            data = f"datasets/synthetic_{s['train']}_{s['val']}"
            if (s["height"], s["width"]) != ("128", "256"):
                data += f"_{s['height']}x{s['width']}"
            self.script("scripts/make_synthetic.py", "--dataset_dir", data, "--num_train", s["train"],
                        "--num_val", s["val"], "--height", s["height"], "--width", s["width"])
            v["DATA_DIR"] = self.env["DATA_DIR"] = data
        if not v["INIT_CHECKPOINT"] and v["STANDIN"] == "1":
            path = self.script("scripts/build_standin.py", "--model_variant", v["MODEL_VARIANT"],
                               "--work_dir", v["WORK_DIR"], "--models_dir", self.standin_dir,
                               *self.standin_flags, capture=True).strip().splitlines()[-1]
            v["INIT_CHECKPOINT"] = self.env["INIT_CHECKPOINT"] = path

    # ------------------------------------------------------------------ the reference
    def run_reference(self, seed: int) -> None:
        """The reference reads no budget: with BUDGETS it runs once per seed (at
        CLICKS_PER_ROUND) and every budget's report compares against it."""
        env, job_dir = self.arm_env(compare.REFERENCE, seed)
        print(f"=== {self.name}: reference, seed {seed} ({job_dir})", flush=True)
        self.init_job(env)
        self.script("scripts/build_tfrecords.py", "--job_dir", str(job_dir), "--splits", env["EVAL_SPLIT"],
                    "--skip_existing", env=env)
        self.script("scripts/extract_superpixels.py", "--job_dir", str(job_dir), env=env)
        self.script("scripts/train_full.py", "--job_dir", str(job_dir), env=env)

    # ------------------------------------------------------------------ the arms
    def run_arms(self, sub: str = "", arms: list[str] | None = None, seeds: list[int] | None = None,
                 extra: dict | None = None) -> None:
        """The arms (but the reference) for every seed, under the comparison's folder `sub`
        ("": its own folder); the first arm of a seed trains the warm-up round the others share."""
        for seed in self.seeds if seeds is None else seeds:
            first = None
            for arm in self.arms if arms is None else arms:
                if arm == compare.REFERENCE:
                    continue
                env, job_dir = self.arm_env(arm, seed, sub, extra)
                where = f"{sub}, " if sub else ""
                print(f"=== {self.name}: {where}arm {arm}, seed {seed} ({job_dir})", flush=True)
                if first is not None and self.share:  # the job made first, to receive the round
                    self.init_job(env)
                    print(compare.share_warm_up(first, job_dir), flush=True)
                else:
                    first = job_dir
                job = Arm(env, job_dir)
                if self.parallel == 1:
                    self.start(job)
                    self.wait_all()
                    continue
                if first == job_dir and self.share:  # the shared warm-up first: the others copy it
                    job.drivers = [ROUND_DRIVERS[0]]
                    self.start(job)
                    self.wait_all()
                    job.drivers = [ROUND_DRIVERS[1]]  # the rest of the arm in the background
                while len(self.running) >= self.parallel:
                    self.wait_one()
                job.log = self.dir / "logs" / f"{job_dir.relative_to(self.dir)}.log"
                job.log.parent.mkdir(parents=True, exist_ok=True)
                print(f"    running in the background; its output: {job.log}", flush=True)
                self.start(job)
            self.wait_all()

    def start(self, job: Arm) -> None:
        """Starts the job's next round driver (in the foreground, or appending to its log)."""
        out = open(job.log, "a") if job.log else None
        try:
            job.proc = subprocess.Popen(["bash", job.drivers.pop(0)], cwd=ROOT, env=job.env,
                                        stdout=out, stderr=subprocess.STDOUT if out else None,
                                        preexec_fn=parallel.die_with_parent)
        finally:
            if out:
                out.close()
        self.running.append(job)

    def wait_one(self) -> None:
        """Waits until a running driver ends: the job's next driver is started, or the job is
        finished (its results table printed from its log); a failed job stops the comparison
        once the others have ended (re-running resumes)."""
        while True:
            for job in self.running:
                status = job.proc.poll()
                if status is None:
                    continue
                self.running.remove(job)
                if status == 0 and job.drivers:
                    self.start(job)
                elif status == 0:
                    if job.log:
                        print(f"=== {self.name}: finished, {job.log}")
                        print(_results_table(job.log.read_text()), end="", flush=True)
                else:
                    self.failed(job, status)
                return
            time.sleep(0.5)

    def wait_all(self) -> None:
        while self.running:
            self.wait_one()

    def failed(self, job: Arm, status: int) -> None:
        if job.log:
            print(f"error: an arm failed (exit {status}); the last lines of {job.log}:", file=sys.stderr)
            print("".join(job.log.read_text().splitlines(keepends=True)[-15:]), end="", file=sys.stderr)
        for other in list(self.running):  # the others finish their current driver
            other.drivers.clear()
            other.proc.wait()
        self.running.clear()
        raise SystemExit(status)

    def stop(self) -> None:
        """Stops the round drivers still running (each stops the script it runs)."""
        _end([job.proc for job in self.running])
        self.running.clear()

    # ------------------------------------------------------------------ the whole comparison
    def title(self, clicks: str) -> str:
        """A report's title: the comparison, its data and model, and the clicks per round."""
        v = self.values
        return (f"{self.name}: {v['DATASET']}, {v['MODEL_VARIANT']}, {v['TRAIN_STEPS']} steps/round, "
                f"{clicks} clicks/round")

    def run(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        start = int(time.time())  # every run's wall time is appended (P8 sums them over resumed runs)
        try:
            return self._run(start)
        finally:
            self.stop()
            with open(self.dir / compare.WALL_CLOCK, "a") as f:
                f.write(f"{start} {int(time.time())}\n")

    def _run(self, start: int) -> int:
        self.prepare()
        with_reference = compare.REFERENCE in self.arms
        if not self.budgets:
            for seed in self.seeds:
                if with_reference:
                    self.run_reference(seed)
                self.run_arms(seeds=[seed])
            if self.numerics and self.numerics_arms:
                # P5: the first seed's arms of NUMERICS_ARMS, every round, again under the other
                # oneDNN setting (merge_bound still reads the main run's reference)
                other = str(1 - int(self.onednn == "1"))
                print(f"=== {self.name}: numerics check, seed {self.seeds[0]}, TF_ENABLE_ONEDNN_OPTS={other}",
                      flush=True)
                self.run_arms(f"{compare.NUMERICS_PREFIX}{other}", self.numerics_arms, self.seeds[:1],
                              {"TF_ENABLE_ONEDNN_OPTS": other})
            print(compare.write_report(self.dir, self.arms, self.seeds, self.title(self.values["CLICKS_PER_ROUND"]),
                                       self.onednn, start))
            for name in ("comparison.csv", "comparison.png", "comparison.md"):
                print(self.dir / name)
            return 0
        if with_reference:
            for seed in self.seeds:
                self.run_reference(seed)
        for budget in self.budgets:
            sub = compare.budget_folder(budget)
            self.run_arms(sub, extra={"CLICKS_PER_ROUND": budget})
            # the report covers every seed of the budget: a seed added later joins the others
            seeds = sorted(set(budget_map.budget_seeds(self.dir / sub, self.arms)) | set(self.seeds))
            compare.write_report(self.dir / sub, self.arms, seeds, self.title(budget), self.onednn, None,
                                 self.dir)
        print(budget_map.write_budget_map(self.dir, self.budgets, self.arms, start))
        for name in ("budget_map.csv", "budget_map.png", "budget_map.md"):
            print(self.dir / name)
        return 0


def _pass_stderr(fd: int) -> None:
    """Copies a script's stderr to this one's until it closes, line by line, without TensorFlow's
    start-up notices; a progress bar's redraw (a piece ending in a carriage return) passes at once."""
    pending = b""
    while chunk := os.read(fd, 65536):
        pending += chunk
        pieces = re.split(rb"(?<=[\r\n])", pending)
        pending = pieces.pop()  # the unfinished piece (b"" after a line end)
        _write_stderr(pieces)
    _write_stderr([pending])


def _write_stderr(pieces: list[bytes]) -> None:
    shown = [p for p in pieces if p and not TF_NOISE.search(p.decode(errors="replace"))]
    if shown:
        sys.stderr.buffer.write(b"".join(shown))
        sys.stderr.buffer.flush()


def _results_table(log: str) -> str:
    """A finished job's results table: its log's last lines from the table's header on."""
    lines = log.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if re.match(r"round +clicks", line)]
    return "".join(lines[starts[-1]:]) if starts else ""


_stopped_by: list[int] = []  # the signal that stopped this driver


def _stop(signum, frame):
    """Ctrl-C and SIGTERM stop the comparison alike (its wall time recorded, its drivers ended)."""
    _stopped_by.append(signum)
    raise KeyboardInterrupt


def _end(procs: list[subprocess.Popen]) -> None:
    """Ends the processes this driver started. After Ctrl-C they got the same signal (one process
    group) and are given STOP_WAIT_SECS to end on their own (a script saves and says "stopped");
    otherwise, or then, they get SIGTERM (a round driver's scripts end with it), SIGKILL last."""
    procs = [p for p in procs if p.poll() is None]
    deadline = time.monotonic() + STOP_WAIT_SECS
    for sig in ((None,) if signal.SIGINT in _stopped_by else ()) + (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            if sig is not None and p.poll() is None:
                p.send_signal(sig)
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        procs = [p for p in procs if p.poll() is None]
        if not procs:
            return
        deadline = time.monotonic() + STOP_WAIT_SECS


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    comparison = Comparison()
    try:
        return comparison.run()
    except SystemExit as e:  # a script or driver failed: it has said why
        return int(e.code or 0)
