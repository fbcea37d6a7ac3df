"""Many structures through the verification workflow, one status row each.

Structures run through the shared :mod:`tcdesign.executor`: one after another in this process
(``workers=1``, the default: QE itself is the parallel part, via ``--np``), in a local process pool
with ``workers`` > 1, or on a dask.distributed cluster with ``scheduler`` (``--scheduler
tcp://host:8786``; the workers need QE and the pseudopotentials, and ``out`` on a shared
filesystem). A failing structure is a row with ``status='error'`` and never stops the others.
"""

from __future__ import annotations

import hashlib
import re
import sys
from functools import partial
from pathlib import Path

import pandas as pd

from tcdesign.data.io import StructureRecord
from tcdesign.executor import run_tasks
from tcdesign.verify.settings import VerifySettings
from tcdesign.verify.workflow import EPCResult, stderr_reporter, verify

ROW_COLUMNS = [
    "id",
    "formula",
    "lambda",
    "omega_log_K",
    "tc_K",
    "min_freq_cm1",
    "dynamically_stable",
    "converged",
    "status",
    "error",
    "total_seconds",
    "qe_seconds",
    "folder",
]
_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def safe_name(structure_id: str) -> str:
    """A file or folder name for an id, distinct for distinct ids.

    An id of letters, digits, '.', '-' and '_' (other than '.' and '..') is its own name. In
    any other id those other characters become '_' and a short hash of the id follows
    (``JVASP 1`` -> ``JVASP_1-<hash>``), so that it never takes the folder of an id ``JVASP_1``
    and ``..`` never names the parent folder.
    """
    if _SAFE.fullmatch(structure_id) and structure_id not in (".", ".."):
        return structure_id
    digest = hashlib.sha256(structure_id.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', structure_id) or 'structure'}-{digest}"


def _run_one(
    record: StructureRecord,
    out: Path,
    settings: VerifySettings,
    pseudo_dir: str | None,
    progress: bool = False,
) -> dict[str, object]:
    folder = out / safe_name(record.id)
    if not record.ok:
        return {"id": record.id, "status": "error", "error": record.error, "folder": None}
    report = stderr_reporter(record.id) if progress else None
    result: EPCResult = verify(record.structure, folder, settings, pseudo_dir, record.id, report)
    row = {key: result.data.get(key) for key in ROW_COLUMNS}
    row.update(status=result.status, error=result.error, folder=str(folder))
    return row


def _print_tally(row: dict[str, object], rows: dict[int, dict[str, object]], total: int) -> None:
    """One stderr line when a structure finishes: its outcome and the counts so far."""
    statuses = [str(r.get("status")) for r in rows.values()]
    tc = row.get("tc_K")
    outcome = f"Tc {tc:.2f} K" if row.get("status") == "ok" and isinstance(tc, float) else ""
    outcome = outcome or str(row.get("status"))
    counts = {status: statuses.count(status) for status in ("ok", "magnetic", "unstable")}
    unstable = f"{counts['unstable']} unstable, " if counts["unstable"] else ""
    print(
        f"verify: {row.get('id')} {outcome}; {len(rows)} of {total} done "
        f"({counts['ok']} ok, {counts['magnetic']} magnetic, {unstable}"
        f"{len(statuses) - sum(counts.values())} failed)",
        file=sys.stderr,
        flush=True,
    )


def run_many(
    records: list[StructureRecord],
    out: str | Path,
    settings: VerifySettings,
    pseudo_dir: str | Path | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Verify every record into ``out/<id>/``; write and return ``out/verify.csv`` (input
    order; rewritten as each structure finishes, so a killed run keeps the rows it finished).

    ``progress``: lines on stderr as each QE step of each structure starts and ends, and one
    line with the counts so far as each structure finishes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    directory = str(pseudo_dir) if pseudo_dir is not None else None
    rows: dict[int, dict[str, object]] = {}
    table_path = out / "verify.csv"

    def table() -> pd.DataFrame:
        return pd.DataFrame([rows[k] for k in sorted(rows)], columns=ROW_COLUMNS)

    task = partial(_run_one, out=out, settings=settings, pseudo_dir=directory, progress=progress)
    for outcome in run_tasks(task, records, workers=workers, scheduler=scheduler):
        if outcome.error is not None:  # an unexpected exception in the workflow
            record = records[outcome.index]
            rows[outcome.index] = {"id": record.id, "status": "error", "error": outcome.error}
        else:
            rows[outcome.index] = outcome.value
        table().to_csv(table_path, index=False)
        if progress:
            _print_tally(rows[outcome.index], rows, len(records))
    result = table()
    result.to_csv(table_path, index=False)
    return result
