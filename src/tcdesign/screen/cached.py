"""Run per-candidate jobs and append each result to a JSON-lines cache as it finishes.

Shared by the stages that run only for the candidates passing the rules (CHGNet phonons,
:mod:`tcdesign.screen.phonons`; DFT N(E_F), :mod:`tcdesign.screen.electrons`). Each cache line
is ``{"id", "key", "result"}``; :func:`tcdesign.jsonio.read_keyed_results` reads them back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tcdesign import jsonio
from tcdesign.executor import run_tasks


def run_and_append(
    function: Callable[[Any], dict[str, Any]],
    jobs: Sequence[Any],
    keys: Sequence[tuple[str, str]],
    path: Path,
    failed: Callable[[str], dict[str, Any]],
    *,
    desc: str,
    workers: int = 1,
    scheduler: str | None = None,
    threads: int = 0,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """``function(job)`` for every job (``keys[i]`` is job i's ``(id, key)``), fanned out by
    :func:`tcdesign.executor.run_tasks`; each result, or ``failed(reason)`` for a job that
    raised, is appended to ``path`` as it finishes. Returns the results keyed by id."""
    results: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(jobs), desc=desc, unit="crystal", disable=not progress)
    try:
        with path.open("a") as handle:
            for outcome in run_tasks(
                function, jobs, workers=workers, scheduler=scheduler, threads=threads
            ):
                candidate_id, key = keys[outcome.index]
                result = outcome.value if outcome.error is None else failed(outcome.error)
                entry = {"id": candidate_id, "key": key, "result": result}
                handle.write(jsonio.dumps(entry) + "\n")
                handle.flush()
                results[candidate_id] = result
                bar.update()
    finally:
        bar.close()
    return results
