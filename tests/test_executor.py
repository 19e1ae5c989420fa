"""The executor: results in task order, a bounded number of tasks in flight, the same results on
a process pool, inline and on Ray."""

import dataclasses
import numpy as np
import pytest

from deeplab import parallel


def _square_sum(a):
    return int((np.asarray(a) ** 2).sum())


@pytest.mark.parametrize("workers", [1, 3])
def test_results_in_order_with_bounded_in_flight(workers):
    produced = []

    def tasks():
        for i in range(12):
            produced.append(i)
            yield np.full(5, i)

    with parallel.make_executor("local", workers) as ex:
        out = []
        for k, r in enumerate(ex.imap(_square_sum, tasks(), max_in_flight=2)):
            out.append(r)
            # the producer never runs more than the in-flight bound ahead of the consumer
            assert len(produced) <= k + 1 + 2
    assert out == [5 * i * i for i in range(12)]
    assert parallel.TASKS["_square_sum"] >= 12


def test_ray_gives_the_pool_results():
    import ray  # noqa: F401  (the [test] extras install Ray: a missing Ray fails, never skips)
    from deeplab.active.regions import num_slots  # importable on Ray's workers (tests are not)

    tasks = [np.arange(i + 1, dtype=np.int32).reshape(1, -1) * 3 for i in range(9)]
    with parallel.make_executor("ray", 2) as ex:
        got = ex.map(num_slots, tasks, progress=False)
    with parallel.make_executor("local", 2) as ex:
        assert got == ex.map(num_slots, tasks, progress=False) == [3 * i + 1 for i in range(9)]


def test_prefetch_keeps_order():
    assert list(parallel.prefetch(lambda i: i * 2, range(20), threads=3)) == list(range(0, 40, 2))


def test_unknown_executor_and_bad_workers_are_refused():
    with pytest.raises(ValueError, match="EXECUTOR 'spark' is unknown; valid: local, ray"):
        parallel.make_executor("spark", 2)
    with pytest.raises(ValueError, match="NUM_WORKERS must be >= 1"):
        parallel.make_executor("local", 0)


def test_large_arrays_travel_through_shared_memory_and_are_freed():
    import os

    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    big = [np.random.default_rng(i).random((600, 600)) for i in range(4)]  # 2.9 MB each
    assert big[0].nbytes >= parallel.SHARED_MIN_BYTES
    tasks = [{"probs": b, "k": i} for i, b in enumerate(big)]
    records = [_Record(i, b, b[:2, :2].copy()) for i, b in enumerate(big)]  # the small one is pickled
    with parallel.make_executor("local", 2) as ex:
        got = list(ex.imap(_dict_task, tasks))
        from_records = list(ex.imap(_record_task, records))
    assert got == from_records == [(i, float(b.sum())) for i, b in enumerate(big)]
    blocks = parallel._Blocks()
    try:  # a record's large array goes to shared memory, its small one is pickled with it
        shared_record = parallel._share(records[0], [], blocks)
        assert isinstance(shared_record.probs, parallel._SharedArray)
        assert isinstance(shared_record.small, np.ndarray) and shared_record.k == 0
    finally:
        blocks.close()
    if os.path.isdir("/dev/shm"):  # every block the driver made is unlinked
        assert not [n for n in set(os.listdir("/dev/shm")) - before if n.startswith("psm_")]


def _dict_task(task):
    return task["k"], float(task["probs"].sum())


@dataclasses.dataclass(frozen=True)
class _Record:
    k: int
    probs: np.ndarray
    small: np.ndarray


def _record_task(task: _Record):
    assert task.small.shape == (2, 2)
    return task.k, float(task.probs.sum())


def _pid(_):
    import os

    return os.getpid()


def test_a_pool_is_no_larger_than_its_tasks():
    """NUM_WORKERS=100 for 4 tasks starts 4 processes (it used to start 100)."""
    with parallel.make_executor("local", 100) as ex:
        assert len(ex.map(_pid, list(range(4)), progress=False)) == 4
        assert ex._pool._processes == 4
