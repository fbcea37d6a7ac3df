"""The shared executor: in-process, a local pool and a dask LocalCluster give the same outcomes."""

from __future__ import annotations

import math

import pytest

from tcdesign.executor import run_tasks, threads_per_worker
from tests.processes import wait_gone

ITEMS = [4.0, 9.0, -1.0, 16.0]  # math.sqrt(-1) raises: an error outcome, not a crash


def outcomes(**options) -> dict[int, tuple[float | None, str | None]]:
    return {o.index: (o.value, o.error) for o in run_tasks(math.sqrt, ITEMS, **options)}


def check(results: dict[int, tuple[float | None, str | None]]) -> None:
    assert results[0] == (2.0, None) and results[1] == (3.0, None) and results[3] == (4.0, None)
    assert results[2][0] is None and results[2][1].startswith("ValueError")


def test_in_process():
    check(outcomes())


def test_local_process_pool():
    check(outcomes(workers=2, threads=1))


def test_dask_local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        check(outcomes(scheduler=cluster.scheduler_address))


def test_empty_and_threads():
    assert list(run_tasks(math.sqrt, [])) == []
    assert threads_per_worker(2, threads=3) == 3
    assert threads_per_worker(1000) == 1


def _pid_after(seconds: float) -> int:
    """A task: sleep, then report which process ran it (module-level, so it pickles)."""
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def test_pool_stopped_early_ends_running_tasks():
    """A consumer that stops (Ctrl-C, SIGTERM, an error) does not wait for long running tasks:
    the pool's workers are ended, not left to finish a minute-long job."""
    import multiprocessing
    import time

    before = {p.pid for p in multiprocessing.active_children()}
    tasks = run_tasks(_pid_after, [0.0, 60.0, 60.0], workers=2, threads=1)
    first = next(tasks)
    workers = [p.pid for p in multiprocessing.active_children() if p.pid not in before]
    assert first.error is None and first.value in workers
    start = time.monotonic()
    tasks.close()
    assert time.monotonic() - start < 10
    assert wait_gone(workers, timeout=10) == []


def test_pool_workers_exit_when_parent_is_killed(tmp_path):
    """SIGKILL on the parent (no clean-up possible there): its workers notice and exit instead of
    lingering as orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pids = tmp_path / "pids"
    script = (
        "import sys\n"
        "from tcdesign.executor import run_tasks\n"
        "from tests.test_executor import _pid_after\n"
        "for outcome in run_tasks(_pid_after, [0.0, 0.0, 120.0, 120.0], workers=2, threads=1):\n"
        f"    open({str(pids)!r}, 'a').write(f'{{outcome.value}}\\n')\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not pids.exists() or len(set(pids.read_text().split())) < 2
        ):
            time.sleep(0.2)
        workers = sorted({int(p) for p in pids.read_text().split()})
        assert len(workers) == 2  # both workers ran a short task and now run a long one
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_gone(workers, timeout=15) == []
    finally:
        parent.kill()


def _die_on_one(item: int) -> int:
    """A task whose worker process dies on item 1 (as under the out-of-memory killer)."""
    import os

    if item == 1:
        os._exit(9)
    return item * 10


def test_a_dying_worker_costs_only_its_own_item():
    """A worker that dies breaks a ProcessPoolExecutor; the run goes on, the item that killed it
    gets an error outcome, every other item its value."""
    from tcdesign.executor import WORKER_DIED

    results = {
        o.index: (o.value, o.error)
        for o in run_tasks(_die_on_one, list(range(8)), workers=2, threads=1)
    }
    assert sorted(results) == list(range(8))
    assert results[1] == (None, WORKER_DIED)
    assert all(results[i] == (i * 10, None) for i in range(8) if i != 1)
