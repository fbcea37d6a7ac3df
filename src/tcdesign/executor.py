"""Fan work out over this process, a local process pool, or a dask.distributed cluster.

One call, :func:`run_tasks`, yields an :class:`Outcome` per item as it finishes (in completion
order; each carries the item's index):

- ``workers=1`` and no scheduler: one after another in this process;
- ``workers=N``: a local ``ProcessPoolExecutor`` of N processes (started with ``spawn``, so a
  parent that already ran torch or OpenMP code cannot deadlock its children);
- ``scheduler="tcp://host:8786"``: tasks go to the dask.distributed scheduler at that address
  (``dask-scheduler`` + ``dask-worker``, or dask-jobqueue's ``SLURMCluster(...).scheduler_address``
  on a Slurm cluster); a ``distributed.Client`` object is accepted too.

The function must be a module-level callable (it is pickled); expensive state such as a loaded
model should live in a per-process cache (``functools.lru_cache``) so each worker loads it once.
A task that raises becomes an Outcome with ``error`` set; the others go on. So does a task whose
worker process dies (killed, out of memory, a crash in compiled code): on the local pool the
culprit is found by rerunning the few items that were in flight one at a time, and the rest go on
(:func:`_run_pool`); dask retries such a task on other workers and then reports it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    """The result of one task: ``value`` or the ``error`` it raised (``Type: message``)."""

    index: int
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class _Task:
    """A picklable wrapper: sets torch's thread count once per process, catches exceptions."""

    function: Callable[..., Any]
    threads: int

    def __call__(self, index: int, item: Any) -> Outcome:
        _set_threads(self.threads)
        try:
            return Outcome(index, self.function(item))
        except Exception as exc:  # a task's failure is reported, never kills the run
            return Outcome(index, error=f"{type(exc).__name__}: {exc}")


_THREADS_SET: list[int] = []


def _set_threads(threads: int) -> None:
    if threads > 0 and [threads] != _THREADS_SET:
        import torch

        torch.set_num_threads(threads)
        _THREADS_SET[:] = [threads]


def threads_per_worker(workers: int, threads: int = 0) -> int:
    """``threads`` if given, else the CPU cores shared evenly by ``workers`` (at least 1)."""
    if threads > 0:
        return threads
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_tasks(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    workers: int = 1,
    scheduler: Any = None,
    threads: int = 0,
) -> Iterator[Outcome]:
    """Yield an :class:`Outcome` for each of ``items`` as it finishes.

    ``threads`` sets torch's threads in each worker process (0: cores / workers; in this process,
    with ``workers=1``, 0 leaves torch's setting alone).
    """
    if not items:
        return
    if scheduler is not None:
        yield from _run_dask(_Task(function, threads), items, scheduler)
    elif workers <= 1:
        task = _Task(function, threads)
        for index, item in enumerate(items):
            yield task(index, item)
    else:
        yield from _run_pool(_Task(function, threads_per_worker(workers, threads)), items, workers)


def _watch_parent(parent: int) -> None:
    """Pool-worker initialiser: exit as soon as the parent process is gone.

    A parent killed outright (SIGKILL, out of memory) cannot stop its workers; without this they
    would finish their task and then sit on the queue as orphans, holding cores and memory.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="tcdesign-parent-watch", daemon=True).start()


PARENT_POLL_S = 1.0  # how often a pool worker checks that its parent is alive


WORKER_DIED = (
    "WorkerDied: the worker process running this item died (killed, out of memory or crashed)"
)


def _run_pool(task: _Task, items: Sequence[Any], workers: int) -> Iterator[Outcome]:
    """Run on a local pool; a worker that dies costs only its own item.

    When a worker process dies, the pool breaks and every unfinished item comes back. Items are
    handed out in order, so the one that killed it is among the first ``workers + 1``
    unfinished ones (those running or queued for a worker): they run again one at a time in a
    fresh single-worker pool, where the first one that does not finish is the culprit and gets
    a :data:`WORKER_DIED` outcome; the rest go back to a full pool.
    """
    queue = list(range(len(items)))
    while queue:
        lost = yield from _pool_round(task, items, queue, workers)
        suspects, queue = lost[: workers + 1], lost[workers + 1 :]
        while suspects:
            unfinished = yield from _pool_round(task, items, suspects, 1)
            if unfinished:
                yield Outcome(unfinished[0], error=WORKER_DIED)
            suspects = unfinished[1:]


def _pool_round(
    task: _Task, items: Sequence[Any], indices: list[int], workers: int
) -> Generator[Outcome, None, list[int]]:
    """Yield the outcomes of ``indices`` on a fresh pool; return, in submission order, those
    that did not finish because the pool broke (a worker process died)."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_watch_parent,
        initargs=(os.getpid(),),
    )
    finished = False
    lost: list[int] = []
    try:
        futures = {pool.submit(task, index, items[index]): index for index in indices}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    lost.append(futures[future])
                    continue
                except Exception as exc:  # e.g. a result that cannot be pickled back
                    outcome = Outcome(futures[future], error=f"{type(exc).__name__}: {exc}")
                yield outcome
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # the consumer stopped early, Ctrl-C or SIGTERM: drop the queue, stop the workers
            _abandon(pool)
    order = {index: position for position, index in enumerate(indices)}
    return sorted(lost, key=order.__getitem__)


def _abandon(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the running tasks now rather than waiting for them
    (a relaxation or DFT step can take minutes; a rerun redoes unfinished items)."""
    # the executor keeps no public handle on its processes; read it defensively
    processes = list(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=False, cancel_futures=True)
    for pid in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


def _run_dask(task: _Task, items: Sequence[Any], scheduler: Any) -> Iterator[Outcome]:
    try:
        from distributed import Client, as_completed
    except ImportError:  # an optional dependency
        raise RuntimeError(
            "--scheduler needs dask.distributed: pip install 'dask[distributed]'"
        ) from None
    own_client = not isinstance(scheduler, Client)
    client = Client(scheduler) if own_client else scheduler
    try:
        futures = [client.submit(task, index, item, pure=False) for index, item in enumerate(items)]
        position = {id(future): index for index, future in enumerate(futures)}
        try:
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # KilledWorker and the like: this item only
                    yield Outcome(position[id(future)], error=f"{type(exc).__name__}: {exc}")
        finally:
            client.cancel([f for f in futures if not f.done()])
    finally:
        if own_client:
            client.close()
