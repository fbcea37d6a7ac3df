"""Quantum ESPRESSO input writers: pw.x (through ASE), ph.x, q2r.x, matdyn.x and lambda.x.

All functions are pure: they return the input text and touch no file. Energies in Ry,
grids as (n1, n2, n3).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import numpy as np
from ase.io.espresso import write_espresso_in
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from tcdesign.verify.pseudo import Pseudopotential
from tcdesign.verify.settings import VerifySettings

PREFIX = "qe"  # pw.x/ph.x prefix of every run
OUTDIR = "tmp"  # scratch folder, relative to the run folder
SPIN_PREFIX = "qe_spin"  # the spin-polarised magnetism check's prefix
STARTING_MAGNETIZATION = 0.5  # fraction of each atom's valence charge polarised at the start
FILDYN = "dyn"  # ph.x dynamical matrices: dyn0 (q-grid), dyn1..dynN
FLFRC = "ifc"  # q2r.x force constants
FLDOS = "phonon.dos"  # matdyn.x phonon DOS
FLFRQ = "matdyn.freq"  # matdyn.x frequencies on the DOS mesh
THZ_PER_RY = 3289.842  # 1 Ry in THz

Grid = tuple[int, int, int]


def grid_from_spacing(structure: Structure, spacing: float, multiple_of: Grid = (1, 1, 1)) -> Grid:
    """Monkhorst-Pack divisions with at most ``spacing`` (1/A, 2 pi included) between points.

    Each division is rounded up to a multiple of ``multiple_of`` (the q-grid for k-grids), and
    axes that a symmetry operation mixes get the largest of their divisions, so that the grid
    keeps the crystal's symmetry (see :func:`symmetry_linked_axes`).
    """
    if not spacing > 0:
        raise ValueError(f"grid spacing must be positive, got {spacing}")
    lengths = structure.lattice.reciprocal_lattice.abc  # (3,) |b_i| in 1/A, with 2 pi
    grid = []
    for length, step in zip(lengths, multiple_of, strict=True):
        n = max(1, math.ceil(length / spacing - 1e-6))
        grid.append(step * math.ceil(n / step))
    for axes in symmetry_linked_axes(structure):
        step = math.lcm(*(multiple_of[i] for i in axes))  # stays a multiple on every axis
        n = step * math.ceil(max(grid[i] for i in axes) / step)
        for i in axes:
            grid[i] = n
    return (grid[0], grid[1], grid[2])


def symmetry_linked_axes(structure: Structure, symprec: float = 1e-3) -> list[list[int]]:
    """Groups of cell axes that a symmetry operation of the crystal mixes.

    A Monkhorst-Pack grid is invariant under the crystal's point group only if every axis in
    such a group has the same number of divisions (a uniform n x n x n grid is the reciprocal
    lattice divided by n, so any lattice symmetry maps it onto itself). ph.x stops with "q-mesh
    breaks symmetry" otherwise, for example 3x4x4 on the equal-length primitive vectors of a
    body-centred cell. ``symprec`` (A) is looser than QE's own tolerance so that no operation
    pw.x finds is missed; an operation found in excess only makes the grid a little denser.
    """
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    parent = [0, 1, 2]

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    rotations = dataset.rotations if dataset is not None else np.eye(3, dtype=int)[None]
    for rotation in rotations:  # integer matrices on fractional coordinates
        for a in range(3):
            for b in range(3):
                if a != b and rotation[a, b] != 0:
                    parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in range(3):
        groups.setdefault(root(i), []).append(i)
    return [axes for axes in groups.values() if len(axes) > 1]


def epc_grids(structure: Structure, settings: VerifySettings) -> dict[str, Grid]:
    """The grids of one electron-phonon run: ``q`` (ph.x), ``k`` (scf, a multiple of q so that
    k + q falls on it), ``k_fit`` (the dense la2F scf, a multiple of k: ph.x interpolates
    between the two by integer division of their sizes and, for any other grid, misplaces
    points and gives wrong lambdas without an error) and ``dos_q`` (matdyn's phonon DOS)."""
    qgrid = grid_from_spacing(structure, settings.q_spacing)
    kgrid = grid_from_spacing(structure, settings.k_spacing, qgrid)
    return {
        "q": qgrid,
        "k": kgrid,
        "k_fit": grid_from_spacing(structure, settings.fit_k_spacing, kgrid),
        "dos_q": grid_from_spacing(structure, settings.dos_q_spacing),
    }


def cutoffs(pseudos: dict[str, Pseudopotential], settings: VerifySettings) -> tuple[float, float]:
    """(ecutwfc, ecutrho) in Ry by the rule in :mod:`tcdesign.verify.settings`."""
    suggested_wfc = max((p.wfc_cutoff_ry for p in pseudos.values()), default=0.0)
    suggested_rho = max((p.rho_cutoff_ry for p in pseudos.values()), default=0.0)
    ecutwfc = settings.ecutwfc_ry or (
        math.ceil(suggested_wfc) if suggested_wfc > 0 else settings.default_ecutwfc_ry
    )
    dual = 4.0 if all(p.kind == "NC" for p in pseudos.values()) else 8.0
    ecutrho = settings.ecutrho_ry or max(dual * ecutwfc, math.ceil(suggested_rho))
    return float(ecutwfc), float(ecutrho)


def _drop_empty_namelists(text: str, keep: Sequence[str]) -> str:
    """Remove empty namelists that ASE writes for newer QE (&FCP, &RISM) unless kept."""

    def replace(match: re.Match) -> str:
        return match.group(0) if match.group(1).upper() in keep else ""

    return re.sub(r"&(\w+)\s*\n/\s*\n", replace, text)


def pw_input(
    structure: Structure,
    pseudos: dict[str, Pseudopotential],
    settings: VerifySettings,
    *,
    calculation: str,
    kpts: Grid,
    pseudo_dir: str,
    la2F: bool = False,
    spin: bool = False,
) -> str:
    """pw.x input for ``calculation`` ('scf' or 'vc-relax'), smeared, non-spin-polarised; with
    ``spin`` a spin-polarised scf from a ferromagnetic start (half the valence charge of every
    atom polarised) under its own prefix (:data:`SPIN_PREFIX`), so that it never overwrites
    the non-spin-polarised charge density the phonons start from."""
    ecutwfc, ecutrho = cutoffs(pseudos, settings)
    system: dict[str, object] = {
        "ecutwfc": ecutwfc,
        "ecutrho": ecutrho,
        "occupations": "smearing",
        "smearing": settings.smearing,
        "degauss": settings.degauss_ry,
    }
    if la2F:
        system["la2F"] = True
    if spin:
        system["nspin"] = 2
    input_data = {
        "control": {
            "calculation": calculation,
            "prefix": SPIN_PREFIX if spin else PREFIX,
            "outdir": OUTDIR,
            "pseudo_dir": pseudo_dir,
            "tprnfor": True,
            "tstress": True,
            **({"nstep": settings.relax_max_steps} if calculation == "vc-relax" else {}),
        },
        "system": system,
        "electrons": {"conv_thr": settings.conv_thr_ry * len(structure), "mixing_beta": 0.5},
        "ions": {},
        "cell": {"press_conv_thr": settings.press_conv_thr_kbar}
        if calculation == "vc-relax"
        else {},
    }
    atoms = AseAtomsAdaptor.get_atoms(structure)
    if spin:  # ASE writes starting_magnetization(i) from the initial moments
        atoms.set_initial_magnetic_moments([STARTING_MAGNETIZATION] * len(atoms))
    buffer = io.StringIO()
    write_espresso_in(
        buffer,
        atoms,
        input_data=input_data,
        pseudopotentials={el: p.filename for el, p in pseudos.items()},
        kpts=kpts,
    )
    keep = ("CONTROL", "SYSTEM", "ELECTRONS") + (
        ("IONS", "CELL") if calculation in ("relax", "vc-relax") else ()
    )
    return _drop_empty_namelists(buffer.getvalue(), keep)


def _namelist(name: str, values: dict[str, object], title: str | None = None) -> str:
    lines = [title] if title is not None else []
    lines.append(f"&{name}")
    for key, value in values.items():
        if isinstance(value, bool):
            text = ".true." if value else ".false."
        elif isinstance(value, str):
            text = f"'{value}'"
        elif isinstance(value, float):
            text = f"{value:.10g}".replace("e", "d") if "e" in f"{value:.10g}" else f"{value:.10g}"
        else:
            text = str(value)
        lines.append(f"  {key} = {text}")
    lines.append("/")
    return "\n".join(lines) + "\n"


def ph_input(
    settings: VerifySettings,
    qgrid: Grid,
    q_index: int | None = None,
    outdir: str = OUTDIR,
) -> str:
    """ph.x input: DFPT on a q-grid with the interpolated electron-phonon coupling; with
    ``q_index`` (1-based, in ph.x's list of irreducible q-points) only that q-point
    (``start_q = last_q = q_index``), which writes its own ``dyn<i>`` and ``elph_dir/*.<i>``;
    ``outdir``: the scratch folder it reads the scf from and writes its restart files to."""
    values: dict[str, object] = {
        "prefix": PREFIX,
        "outdir": outdir,
        "fildyn": FILDYN,
        "fildvscf": "dvscf",
        "tr2_ph": settings.tr2_ph,
        "ldisp": True,
        "nq1": qgrid[0],
        "nq2": qgrid[1],
        "nq3": qgrid[2],
        "trans": True,
        "electron_phonon": "interpolated",
        "el_ph_sigma": settings.el_ph_sigma_ry,
        "el_ph_nsigma": settings.el_ph_nsigma,
    }
    if q_index is not None:
        values["start_q"] = q_index
        values["last_q"] = q_index
    return _namelist("inputph", values, title="electron-phonon coupling")


def q2r_input(el_ph_nsigma: int = 10) -> str:
    """q2r.x input: force constants from the dynamical matrices, with the alpha2F data of
    ``el_ph_nsigma`` broadenings (as many as ph.x wrote)."""
    values: dict[str, object] = {
        "fildyn": FILDYN,
        "flfrc": FLFRC,
        "zasr": "simple",
        "la2F": True,
        "el_ph_nsigma": el_ph_nsigma,
    }
    return _namelist("input", values)


def matdyn_input(dos_grid: Grid, delta_cm1: float, el_ph_nsigma: int = 10) -> str:
    """matdyn.x input: phonon DOS and alpha2F (a2F.dos1..N, lambda; N = ``el_ph_nsigma``, as
    many broadenings as ph.x wrote) on a uniform mesh."""
    values: dict[str, object] = {
        "flfrc": FLFRC,
        "asr": "simple",
        "dos": True,
        "la2F": True,
        "fldos": FLDOS,
        "flfrq": FLFRQ,
        "nk1": dos_grid[0],
        "nk2": dos_grid[1],
        "nk3": dos_grid[2],
        "deltaE": float(delta_cm1),
        "el_ph_nsigma": el_ph_nsigma,
    }
    return _namelist("input", values)


def lambda_input(
    qpoints: np.ndarray,
    weights: Sequence[float],
    elph_files: Sequence[str],
    mu_star: float,
    emax_THz: float,
    degauss_THz: float = 0.12,
) -> str:
    """lambda.x input (its stdin): q-points (2 pi / alat) with star weights and elph files."""
    qpoints = np.asarray(qpoints, dtype=float)  # (n_q, 3)
    if not len(qpoints) == len(weights) == len(elph_files):
        raise ValueError("q-points, weights and elph files differ in number")
    lines = [f"{emax_THz:.4f} {degauss_THz:.4f} 1", str(len(qpoints))]
    lines += [
        f"{q[0]:.10f} {q[1]:.10f} {q[2]:.10f} {w:g}" for q, w in zip(qpoints, weights, strict=True)
    ]
    lines += list(elph_files)
    lines.append(f"{mu_star:g}")
    return "\n".join(lines) + "\n"
