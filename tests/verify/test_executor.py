"""run_many through the shared executor: rows in input order, failures as rows, dask the same."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.data.io import StructureRecord
from tcdesign.verify.executor import run_many
from tcdesign.verify.settings import make_settings
from tests.verify.test_workflow import fake_pseudo_dir


def records() -> list[StructureRecord]:
    nb_v = Structure(Lattice.cubic(3.0), ["Nb", "V"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [
        StructureRecord("bad", None, error="CIF does not parse"),
        StructureRecord("nb v", nb_v),  # no pseudopotentials: an error row, nothing runs
    ]


def check(table: pd.DataFrame, out) -> None:
    assert list(table.id) == ["bad", "nb v"]
    assert list(table.status) == ["error", "error"]
    assert "Nb" in table.error[1] and table.folder[1].endswith("nb_v")
    on_disk = pd.read_csv(out / "verify.csv")
    assert list(on_disk.id) == ["bad", "nb v"]


def test_in_process(tmp_path):
    out = tmp_path / "out"
    check(run_many(records(), out, make_settings("coarse"), fake_pseudo_dir(tmp_path)), out)


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        table = run_many(
            records(),
            out,
            make_settings("coarse"),
            fake_pseudo_dir(tmp_path),
            scheduler=cluster.scheduler_address,
        )
    check(table, out)
