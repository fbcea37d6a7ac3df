"""Many structures through the verification workflow, one status row each.

Structures run one after another in this process (``workers=1``, the default: QE itself is the
parallel part, via ``--np``), or in a local process pool with ``workers`` > 1. A failing
structure is a row with ``status='error'`` and never stops the others. dask.distributed
(``--scheduler``) is not implemented yet; on a Slurm cluster run one ``tcdesign verify`` per
structure as a job array, each with its own ``--out`` folder.
"""

from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from tcdesign.data.io import StructureRecord
from tcdesign.verify.settings import VerifySettings
from tcdesign.verify.workflow import EPCResult, verify

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
    "folder",
]


def safe_name(structure_id: str) -> str:
    """A folder name for an id (anything but letters, digits, '.', '-' and '_' becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", structure_id) or "structure"


def _run_one(
    record: StructureRecord, out: Path, settings: VerifySettings, pseudo_dir: str | None
) -> dict[str, object]:
    folder = out / safe_name(record.id)
    if not record.ok:
        return {"id": record.id, "status": "error", "error": record.error, "folder": None}
    result: EPCResult = verify(record.structure, folder, settings, pseudo_dir, record.id)
    row = {key: result.data.get(key) for key in ROW_COLUMNS}
    row.update(status=result.status, error=result.error, folder=str(folder))
    return row


def run_many(
    records: list[StructureRecord],
    out: str | Path,
    settings: VerifySettings,
    pseudo_dir: str | Path | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Verify every record into ``out/<id>/``; write and return ``out/verify.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    directory = str(pseudo_dir) if pseudo_dir is not None else None
    rows: list[dict[str, object]] = []
    table_path = out / "verify.csv"

    def save() -> None:
        pd.DataFrame(rows, columns=ROW_COLUMNS).to_csv(table_path, index=False)

    if workers <= 1:
        for record in records:
            rows.append(_run_one(record, out, settings, directory))
            save()  # a killed run keeps the rows it finished
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_run_one, r, out, settings, directory) for r in records]
            for future in futures:
                rows.append(future.result())
                save()
    save()
    return pd.DataFrame(rows, columns=ROW_COLUMNS)
