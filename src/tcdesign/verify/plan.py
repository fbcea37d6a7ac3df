"""What a verification will compute, before any Quantum ESPRESSO run: ``tcdesign verify --plan``.

The cost of a DFPT electron-phonon run grows with the number of irreducible q-points times the
phonon modes per q-point, and both follow from the cell and its symmetry alone, so they can be
known in a second: a two-atom cubic crystal may need 8 q-points and a distorted one of the same
size 18, the difference between an hour and a day on one core. The plan uses the cell as given
(verify relaxes it first, which can change a grid by one division) and the same rules as
:func:`tcdesign.verify.workflow.verify`: the standard primitive cell, the preset's grids, the
pseudopotential choice and cutoffs. Irreducible q-points are counted with spglib's irreducible
mesh (time reversal included), which gave ph.x's own count on every crystal we ran (fcc and
simple-cubic Al, NbN, VRu, MnN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import spglib
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from tcdesign.verify import inputs
from tcdesign.verify.pseudo import PseudopotentialError, choose_pseudopotentials, default_pseudo_dir
from tcdesign.verify.settings import VerifySettings
from tcdesign.verify.workflow import may_be_magnetic, primitive_cell

PLAN_COLUMNS = [
    "id",
    "formula",
    "n_atoms",
    "spacegroup",
    "q_grid",
    "irreducible_q_points",
    "phonon_modes",
    "k_grid",
    "k_fit_grid",
    "ecutwfc_Ry",
    "ecutrho_Ry",
    "magnetism_check",
    "problem",
]


def irreducible_q_points(structure: Structure, grid: tuple[int, int, int]) -> int:
    """Irreducible points of an unshifted ``grid`` (Gamma included) under the crystal's point
    group and time reversal, as ph.x lists them for ``ldisp``."""
    cell = (
        structure.lattice.matrix,
        structure.frac_coords,
        [site.specie.Z for site in structure],
    )
    mapping, _ = spglib.get_ir_reciprocal_mesh(
        list(grid), cell, is_shift=[0, 0, 0], is_time_reversal=True, symprec=1e-5
    )
    return len(np.unique(mapping))


def _grid_text(grid: tuple[int, int, int]) -> str:
    return "x".join(str(n) for n in grid)


def phonon_q_points(structure: Structure, settings: VerifySettings) -> tuple[str, int]:
    """The q-grid verify would use on ``structure`` (e.g. ``"4x4x4"``) and its number of
    irreducible q-points, from the standard primitive cell as verify builds it."""
    cell = primitive_cell(structure)
    grid = inputs.epc_grids(cell, settings)["q"]
    return _grid_text(grid), irreducible_q_points(cell, grid)


def plan_row(
    structure: Structure,
    settings: VerifySettings,
    pseudo_dir: str | Path | None = None,
    structure_id: str = "structure",
) -> dict[str, Any]:
    """One row of the plan (columns :data:`PLAN_COLUMNS`); ``problem`` says why the run could
    not start (a missing pseudopotential), else it is empty."""
    cell = primitive_cell(structure)
    grids = inputs.epc_grids(cell, settings)
    try:
        spacegroup = SpacegroupAnalyzer(cell, symprec=0.1).get_space_group_symbol()
    except (TypeError, ValueError):  # spglib found no cell it could use
        spacegroup = "?"
    row: dict[str, Any] = {
        "id": structure_id,
        "formula": cell.composition.reduced_formula,
        "n_atoms": len(cell),
        "spacegroup": spacegroup,
        "q_grid": _grid_text(grids["q"]),
        "irreducible_q_points": irreducible_q_points(cell, grids["q"]),
        "phonon_modes": 3 * len(cell),
        "k_grid": _grid_text(grids["k"]),
        "k_fit_grid": _grid_text(grids["k_fit"]),
        "ecutwfc_Ry": None,
        "ecutrho_Ry": None,
        "magnetism_check": bool(settings.magnetism_check and may_be_magnetic(cell)),
        "problem": "",
    }
    directory = Path(pseudo_dir) if pseudo_dir is not None else default_pseudo_dir()
    if directory is None:
        row["problem"] = "no --pseudo-dir given and /usr/share/espresso/pseudo does not exist"
        return row
    elements = sorted({site.specie.symbol for site in cell})
    try:
        pseudos = choose_pseudopotentials(elements, directory, settings.pseudopotentials)
    except PseudopotentialError as exc:
        row["problem"] = str(exc)
        return row
    row["ecutwfc_Ry"], row["ecutrho_Ry"] = inputs.cutoffs(pseudos, settings)
    return row
