"""One executor for every per-image stage: a local process pool (`NUM_WORKERS`) by default, Ray
(`EXECUTOR=ray`, `RAY_ADDRESS`) when the data outgrow one machine. The same task function runs on
both; results come back in task order, and at most `max_in_flight` tasks are out at a time, so a
producer that streams large inputs (the model's probabilities) never runs ahead of the workers
by more than that and never waits for them while there is room.

Only the driver writes the ledger, manifests and selection; tasks write one file per image each,
atomically.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Callable, Iterable, Iterator

import numpy as np

from deeplab.errors import BadInput, MissingPackage, Unavailable

EXECUTORS = ("local", "ray")

# CPU seconds spent inside tasks (in whichever process ran them), by task function name, summed
# over every executor of this process: what scripts/benchmark_rounds.py reports per stage.
CPU_SECONDS: dict[str, float] = collections.defaultdict(float)
TASKS: dict[str, int] = collections.defaultdict(int)


# Arrays at least this large travel to pool workers through shared memory, not the pipe (a
# 1024x2048x19 probability map is 160 MB: through a pipe the driver alone would spend about
# 0.1 s per image on it, for every image of the split).
SHARED_MIN_BYTES = 1 << 20


class _SharedArray:
    """A numpy array copied by the driver into a shared-memory block, read in place by a worker.
    Blocks are reused from task to task (their pages stay mapped: one memcpy per array)."""

    def __init__(self, array, shm):
        self.shm = shm
        self.name, self.shape, self.dtype = shm.name, array.shape, array.dtype.str
        np.ndarray(array.shape, array.dtype, buffer=shm.buf)[...] = array

    def __getstate__(self):
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.shm = None


class _Blocks:
    """The driver's shared-memory blocks: taken for a task's arrays, given back when its result
    is in, unlinked when the executor closes."""

    def __init__(self):
        self.free: list = []
        self.all: list = []

    def take(self, nbytes: int):
        from multiprocessing import shared_memory

        fits = [b for b in self.free if b.size >= nbytes]
        if fits:
            block = min(fits, key=lambda b: b.size)
            self.free.remove(block)
            return block
        block = shared_memory.SharedMemory(create=True, size=max(1, nbytes))
        self.all.append(block)
        return block

    def give_back(self, shared: list) -> None:
        self.free.extend(a.shm for a in shared)

    def close(self) -> None:
        for block in self.all:
            block.close()
            block.unlink()
        self.free, self.all = [], []


def _fields(task) -> dict | None:
    """A task record's fields (a dataclass instance), else None."""
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        return {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
    return None


def _share(task, shared: list, blocks: _Blocks):
    """`task` with its large arrays (the task itself, or a field of a task record or a value of
    a dict, one level deep) put in shared memory."""
    if isinstance(task, np.ndarray) and task.nbytes >= SHARED_MIN_BYTES:
        shared.append(_SharedArray(task, blocks.take(task.nbytes)))
        return shared[-1]
    if isinstance(task, dict):
        return {k: _share(v, shared, blocks) for k, v in task.items()}
    fields = _fields(task)
    if fields is not None:
        return dataclasses.replace(task, **{k: _share(v, shared, blocks) for k, v in fields.items()
                                            if isinstance(v, np.ndarray)})
    return task


def _attach(task, opened: list):
    if isinstance(task, _SharedArray):
        from multiprocessing import shared_memory

        # Spawned workers share the driver's resource tracker; the driver unlinks the block.
        shm = shared_memory.SharedMemory(name=task.name)
        opened.append(shm)
        return np.ndarray(task.shape, np.dtype(task.dtype), buffer=shm.buf)
    if isinstance(task, dict):
        return {k: _attach(v, opened) for k, v in task.items()}
    fields = _fields(task)
    if fields is not None:
        return dataclasses.replace(task, **{k: _attach(v, opened) for k, v in fields.items()
                                            if isinstance(v, _SharedArray)})
    return task


def _timed(fn, task):
    """Runs one task; returns (fn name, CPU seconds of this process spent in it, result)."""
    import time

    start = time.process_time()
    opened: list = []
    try:
        out = fn(_attach(task, opened))
    finally:
        for shm in opened:
            shm.close()
    return fn.__name__, time.process_time() - start, out


def _unpack(timed):
    name, cpu, out = timed
    CPU_SECONDS[name] += cpu
    TASKS[name] += 1
    return out


class Executor:
    """Maps a picklable, module-level function over tasks."""

    kind = "local"

    def __init__(self, num_workers: int = 1):
        if int(num_workers) < 1:
            raise BadInput(f"NUM_WORKERS must be >= 1, got {num_workers}")
        self.num_workers = int(num_workers)
        self.expected_tasks: int | None = None

    # subclasses: submit(fn, task) -> handle; result(handle) -> value
    def submit(self, fn, task):
        raise NotImplementedError

    def result(self, handle):
        raise NotImplementedError

    def imap(self, fn: Callable, tasks: Iterable, max_in_flight: int | None = None) -> Iterator:
        """Yields fn(task) for every task, in order, with a bounded number in flight."""
        limit = max_in_flight or 2 * self.num_workers
        pending: collections.deque = collections.deque()
        for task in tasks:
            if len(pending) >= limit:
                yield self.result(pending.popleft())
            pending.append(self.submit(fn, task))
        while pending:
            yield self.result(pending.popleft())

    def map(self, fn: Callable, tasks: list, desc: str = "", progress: bool = True,
            unit: str = "img") -> list:
        from tqdm import tqdm

        self.expected_tasks = len(tasks)  # a pool started for them needs no more workers
        return list(tqdm(self.imap(fn, tasks), total=len(tasks), desc=desc, unit=unit,
                         disable=not progress))

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        """Stops at once, dropping the tasks in flight (on an error or Ctrl-C)."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        # A stage that failed or was interrupted does not wait for the tasks still queued
        # (a pool's close-and-join would, and Ctrl-C would hang in it).
        if exc_type is None:
            self.close()
        else:
            self.terminate()


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _ignore_sigint() -> None:
    """A pool worker leaves Ctrl-C to the process that runs the stage: that one stops the pool
    (workers that each raised KeyboardInterrupt would leave the pool's shutdown hanging)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor(Executor):
    """In this process when num_workers is 1, else a pool of spawned processes (no fork after
    TensorFlow's or OpenMP's threads exist)."""

    def __init__(self, num_workers: int = 1):
        super().__init__(num_workers)
        self._pool = None
        self._blocks = _Blocks()

    def submit(self, fn, task):
        if self.num_workers == 1:
            return _Done(_timed(fn, task))
        if self._pool is None:
            import multiprocessing as mp

            # NUM_WORKERS=100 for 4 images starts 4 processes, not 100
            size = min(self.num_workers, max(2, self.expected_tasks or self.num_workers))
            self._pool = mp.get_context("spawn").Pool(size, initializer=_ignore_sigint)
        shared: list = []
        return self._pool.apply_async(_timed, (fn, _share(task, shared, self._blocks))), shared

    def result(self, handle):
        if isinstance(handle, _Done):
            return _unpack(handle.get())
        async_result, shared = handle
        try:
            return _unpack(async_result.get())
        finally:
            self._blocks.give_back(shared)

    def close(self) -> None:
        self._stop(drop_queued=False)

    def terminate(self) -> None:
        self._stop(drop_queued=True)

    def _stop(self, drop_queued: bool) -> None:
        if self._pool is not None:
            (self._pool.terminate if drop_queued else self._pool.close)()
            self._pool.join()
            self._pool = None
        self._blocks.close()


class RayExecutor(Executor):
    """Ray tasks: on the cluster at `address` (or RAY_ADDRESS), else on a local Ray started with
    `num_workers` CPUs. Every node needs this package installed (`pip install -e ".[ray]"`)."""

    kind = "ray"

    def __init__(self, num_workers: int = 1, address: str | None = None):
        super().__init__(num_workers)
        try:
            import ray
        except ImportError:
            raise MissingPackage('EXECUTOR=ray needs Ray: pip install -e ".[ray]"') from None
        self._ray = ray
        self._remote = ray.remote(num_cpus=1)(_timed)
        address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = not ray.is_initialized()
        if self._started:
            # Workers log what the driver would (TensorFlow's start-up notices kept out).
            env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1")}
            kwargs = {"include_dashboard": False, "log_to_driver": True,
                      "configure_logging": False, "runtime_env": {"env_vars": env}}
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=self.num_workers, **kwargs)
            except ConnectionError as e:  # nothing answers at RAY_ADDRESS
                raise Unavailable(f"no Ray cluster answers at {address or 'this machine'} ({e}): "
                                  "start it (`ray start --head`) or unset RAY_ADDRESS") from None
            if address:  # a cluster: as many tasks in flight as it has CPUs
                self.num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def submit(self, fn, task):
        return self._remote.remote(fn, task)

    def result(self, handle):
        return _unpack(self._ray.get(handle))

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(kind: str = "local", num_workers: int = 1, address: str | None = None) -> Executor:
    """The executor named by EXECUTOR (`local` | `ray`)."""
    if kind == "local":
        return LocalExecutor(num_workers)
    if kind == "ray":
        return RayExecutor(num_workers, address)
    raise BadInput(f"EXECUTOR '{kind}' is unknown; valid: {', '.join(EXECUTORS)}")


def prefetch(fn: Callable, items: Iterable, threads: int = 4) -> Iterator:
    """Yields fn(item) for every item, in order, computed by `threads` background threads up to
    2 x threads items ahead (decoding images for the model while it runs on earlier ones)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()


DRIVER_ENV = "AL_DRIVER_PID"  # the driver shell's pid: a script it starts ends with it
# TensorFlow's start-up notices on a machine without a GPU (the absl pre-init line, the CUDA stub,
# "failed call to cuInit", the oneDNN banner), kept out of the drivers' output (an extended regular
# expression: grep -E in bash_files/settings.sh, which is generated with it, and Python's re).
TF_NOISE = (r"All log messages before absl::InitializeLog|cudart_stub\.cc.*Could not find cuda drivers|"
            r"cuda_platform\.cc.*failed call to cuInit|oneDNN custom operations are on")


def die_with_parent() -> bool:
    """Have Linux send this process SIGTERM when its parent exits, however the parent ends
    (PR_SET_PDEATHSIG); False where it cannot (not Linux). Also run in a child before it starts
    (Popen's preexec_fn), so that a child ends with the process that started it."""
    import signal

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False
    return True


def end_with_parent(parent_pid) -> bool:
    """If this process's parent is `parent_pid` (a driver's shell, or the wrapper that stands
    between a driver and a script), have Linux send this process SIGTERM when that parent exits
    (PR_SET_PDEATHSIG), so nothing a stopped driver started runs on behind it as a second
    writer. False where it does not apply (another parent, no pid, not Linux)."""
    import os
    import signal

    pid = str(parent_pid or "")
    if not pid.isascii() or not pid.isdigit() or os.getppid() != int(pid):
        return False
    if not die_with_parent():  # not Linux: the driver's lock still keeps a rerun out
        return False
    if os.getppid() != int(pid):  # the parent ended before the call above
        os.kill(os.getpid(), signal.SIGTERM)
    return True
