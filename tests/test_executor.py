"""The shared executor: in-process, a local pool and a dask LocalCluster give the same outcomes."""

from __future__ import annotations

import math

import pytest

from tcdesign.executor import run_tasks, threads_per_worker

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
