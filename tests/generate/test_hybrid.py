"""Template-seeded CDVAE refinement: start level, invariants, the bundled model, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Composition, Structure

from tcdesign.cli import main
from tcdesign.data.io import read_structures
from tcdesign.generate.api import load_generator
from tcdesign.generate.cdvae import CDVAE
from tcdesign.generate.data import canonical_cell
from tcdesign.generate.hybrid import (
    RANKINGS,
    HybridSettings,
    RefinedCandidates,
    hybrid_csp,
    refine,
)
from tcdesign.generate.sample import LangevinSchedule
from tcdesign.predict.api import bundled_csv
from tests.generate.test_cdvae import TINY

QUICK = LangevinSchedule(steps_per_level=2, levels=3)


@pytest.fixture(scope="module")
def tiny_model() -> CDVAE:
    torch.manual_seed(0)
    return CDVAE(TINY).eval()


@pytest.fixture(scope="module")
def train_structures() -> list[Structure]:
    return [r.structure for r in read_structures(bundled_csv("train")) if r.ok]


def test_noise_levels_start_late_and_thin() -> None:
    sigmas = torch.tensor(np.geomspace(10.0, 0.01, 50), dtype=torch.float32)
    assert torch.equal(LangevinSchedule().noise_levels(sigmas), sigmas)
    late = LangevinSchedule(start_level=45).noise_levels(sigmas)
    assert torch.equal(late, sigmas[45:])
    thinned = LangevinSchedule(start_level=30, levels=3).noise_levels(sigmas)
    assert torch.equal(thinned, sigmas[[30, 40, 49]])
    with pytest.raises(ValueError, match="start_level"):
        LangevinSchedule(start_level=50).noise_levels(sigmas)


def test_no_steps_at_the_last_level_returns_the_templates(tiny_model, rocksalt, ternary) -> None:
    schedule = LangevinSchedule(steps_per_level=0)
    settings = HybridSettings(start_level=TINY.num_noise_levels - 1)
    refined = refine(tiny_model, [rocksalt, ternary], [-1.0, -2.0], schedule, settings)
    for template, structure in zip([rocksalt, ternary], refined.structures, strict=True):
        cell = canonical_cell(template)
        assert structure.species == cell.species
        np.testing.assert_allclose(structure.lattice.matrix, cell.lattice.matrix, atol=1e-5)
        np.testing.assert_allclose(structure.frac_coords, cell.frac_coords, atol=1e-5)
    assert set(refined.scores) == set(RANKINGS)
    ranked = refined.ranked("template", 2)
    assert [score for _, score in ranked] == [-1.0, -2.0]
    assert ranked[0][0] is refined.structures[0]


def test_refinement_moves_atoms_but_keeps_types_and_cell(tiny_model, ternary) -> None:
    settings = HybridSettings(start_level=40)
    generator = torch.Generator().manual_seed(0)
    refined = refine(tiny_model, [ternary], [0.0], QUICK, settings, generator)
    cell, structure = canonical_cell(ternary), refined.structures[0]
    assert structure.species == cell.species
    np.testing.assert_allclose(structure.lattice.matrix, cell.lattice.matrix, atol=1e-5)
    assert not np.allclose(structure.frac_coords, cell.frac_coords, atol=1e-4)


def test_hybrid_on_the_bundled_model_keeps_the_composition(train_structures) -> None:
    results = hybrid_csp(load_generator(), "Nb6Sn2", train_structures, 2, schedule=QUICK)
    assert 1 <= len(results) <= 2
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    for structure, _ in results:
        parsed = Structure.from_str(structure.to(fmt="cif"), fmt="cif")
        assert parsed.composition == Composition("Nb6Sn2")


def test_csp_cli_hybrid(tmp_path) -> None:
    argv = ["csp", "--formula", "Nb6Sn2", "--n", "2", "--method", "hybrid"]
    argv += ["--out", str(tmp_path), "--steps-per-level", "2", "--levels", "3", "--quiet"]
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "csp.csv")
    assert list(table.columns[:3]) == ["formula", "rank", "cif"]
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert (table.method == "hybrid").all() and (table.status == "ok").all()
    assert np.isfinite(table.energy_per_atom).all()  # the templates' CHGNet static energies
    for cif in table.cif:
        assert Structure.from_str(cif, fmt="cif").composition == Composition("Nb6Sn2")


def test_demoted_candidates_rank_last_whatever_their_score(rocksalt, ternary) -> None:
    structures = [rocksalt, ternary, rocksalt.copy()]
    candidates = RefinedCandidates(
        templates=structures,
        structures=structures,
        scores={"template": np.array([3.0, 2.0, 2.0])},
        demoted=np.array([True, False, False]),
    )
    ranked = candidates.ranked("template", 3)
    assert [score for _, score in ranked] == [2.0, 2.0, 3.0]
    assert ranked[0][0] is ternary and ranked[2][0] is rocksalt  # ties keep the template order
    candidates.demoted = None
    assert [score for _, score in candidates.ranked("template", 2)] == [3.0, 2.0]
