"""run_many through the shared executor: rows in input order, failures as rows, dask the same."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tcdesign.data.io import StructureRecord
from tcdesign.verify.executor import run_many, safe_name
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
    assert "Nb" in table.error[1] and table.folder[1].endswith(safe_name("nb v"))
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


def test_safe_names_are_distinct_and_stay_inside_the_folder():
    ids = ["JVASP-1", "x 1", "x_1", "x/1", "..", ".", "", "gen-00047-NbRu"]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)  # "x 1" and "x/1" used to share the folder of "x_1"
    assert names[0] == "JVASP-1" and names[2] == "x_1" and names[-1] == "gen-00047-NbRu"
    assert names[1].startswith("x_1-") and names[3].startswith("x_1-")
    for name in names:
        assert name not in (".", "..", "") and "/" not in name
    assert safe_name("x 1") == safe_name("x 1")  # reruns find their folders
