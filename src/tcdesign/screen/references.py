"""Reference energies for formation energies and the convex hull, computed with CHGNet.

Elemental references: for every element, a handful of candidate ground-state structures (fcc, bcc,
hcp, simple cubic, diamond, ASE's reference state, and the known ground states of the elements that
are none of those: A7 As/Sb/Bi, black P, alpha-Ga, trigonal Se/Te, graphite, alpha-B, beta-Sn;
diatomic molecules in a 12 A box for H, N, O, F, Cl, Br, I) are relaxed with CHGNet, and the lowest
energy per atom is the element's chemical potential. Compound references: the 846 training
crystals, relaxed the same way. Both are stored in one small table shipped in the package,
``data/bundled/chgnet_references.csv`` (columns :data:`COLUMNS`), built once by
``tcdesign screen-references`` (resumable, rows appended as they finish).

Two energy scales for formation energies (``eform_scale`` of the screening settings):

- ``mp``: the CHGNet energies of the relaxed elemental ground states as chemical potentials.
  CHGNet learned Materials Project energies with their MP2020 anion corrections, so these
  formation energies are on the MP scale; against JARVIS OptB88vdW they run 0.09 eV/atom too
  negative on average (MAE 0.112 eV/atom on the 713 labelled training crystals).
- ``jarvis`` (default): compound energies corrected per element (:func:`fit_element_corrections`,
  ridge least squares on the JARVIS formation energies of the labelled training crystals), as
  fitted elemental-phase reference energies (FERE; Stevanovic et al., Phys. Rev. B 85, 115104
  (2012)) and the Materials Project's anion corrections do; elements stay uncorrected.
  ``benchmarks/screening.py``: MAE 0.070 eV/atom in 5-fold cross-validation on those crystals,
  0.080 on val (0.112 and 0.120 uncorrected); ridge 0.1 (0.001-1 gave 0.069-0.071 in an earlier
  cross-validation). This is the scale of the paper's formation-energy labels and rule.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element, Lattice, Structure
from tqdm.auto import tqdm

from tcdesign.screen.relax import relax_structure

REFERENCE_TABLE = "data/bundled/chgnet_references.csv"  # inside the tcdesign package
DFT_LABELS = "data/bundled/dft_labels.csv"  # JARVIS labels of the train and val crystals
SHIFT_RIDGE = 0.1  # of fit_element_corrections, chosen by 5-fold cross-validation on train
COLUMNS = [
    "kind",  # "element" or "train"
    "id",  # element prototype name (e.g. "Nb:bcc") or training material_id
    "formula",  # full cell formula, e.g. "Nb2 Sn6"
    "natoms",
    "energy_per_atom",  # eV/atom, CHGNet after relaxation
    "converged",
    "status",  # ok or failed
    "error",
]
MOLECULES = ("H", "N", "O", "F", "Cl", "Br", "I")  # elemental ground state: diatomic molecule
NOBLE_GASES = ("He", "Ne", "Ar", "Kr", "Xe")
BOX = 12.0  # A, cubic box around a diatomic molecule
# every element CHGNet covers that a crystal can reasonably contain (no Po..Ra)
ELEMENTS = [Element.from_Z(z).symbol for z in (*range(1, 84), *range(89, 95))]

# ground states that are not a simple Bravais lattice: (space group, cell parameters a, b, c in A
# and angles, Wyckoff positions), from the experimental structures
_SPECIAL: dict[str, list[tuple[str, int, tuple[float, ...], list[tuple[float, float, float]]]]] = {
    "As": [("A7", 166, (3.76, 3.76, 10.55, 90, 90, 120), [(0, 0, 0.227)])],
    "Sb": [("A7", 166, (4.31, 4.31, 11.27, 90, 90, 120), [(0, 0, 0.2336)])],
    "Bi": [("A7", 166, (4.546, 4.546, 11.86, 90, 90, 120), [(0, 0, 0.2341)])],
    "P": [
        ("black", 64, (3.314, 10.478, 4.376, 90, 90, 90), [(0, 0.1017, 0.0806)]),
        ("A7", 166, (3.52, 3.52, 8.81, 90, 90, 120), [(0, 0, 0.2258)]),
    ],
    "Ga": [("alpha", 64, (4.520, 7.663, 4.526, 90, 90, 90), [(0, 0.1549, 0.0810)])],
    "Se": [("trigonal", 152, (4.366, 4.366, 4.954, 90, 90, 120), [(0.2254, 0, 1 / 3)])],
    "Te": [("trigonal", 152, (4.457, 4.457, 5.929, 90, 90, 120), [(0.2633, 0, 1 / 3)])],
    "S": [("chain", 152, (4.0, 4.0, 4.5, 90, 90, 120), [(0.22, 0, 1 / 3)])],
    "C": [
        ("graphite", 194, (2.464, 2.464, 6.711, 90, 90, 120), [(0, 0, 0.25), (1 / 3, 2 / 3, 0.25)])
    ],
    "B": [
        (
            "alpha",
            166,
            (4.908, 4.908, 12.567, 90, 90, 120),
            [(0.1189, -0.1189, 0.8913), (0.1969, -0.1969, 0.0243)],
        )
    ],
    "Sn": [("beta", 141, (5.832, 5.832, 3.182, 90, 90, 90), [(0, 0.75, 0.125)])],
}


def bundled_reference_path() -> Path:
    """Path of the reference energy table shipped in the package."""
    return Path(str(resources.files("tcdesign").joinpath(REFERENCE_TABLE)))


def jarvis_formation_energies(path: str | Path | None = None) -> pd.Series:
    """JARVIS OptB88vdW formation energies (eV/atom) by material id, finite values only
    (default: the bundled labels of the train and val crystals)."""
    path = Path(path) if path is not None else Path(str(resources.files("tcdesign") / DFT_LABELS))
    labels = pd.read_csv(path, dtype={"material_id": str}).set_index("material_id")
    energies = labels["formation_energy_peratom"].astype(float)
    return energies[np.isfinite(energies)]


def fit_element_corrections(
    table: pd.DataFrame,
    labels: pd.Series,
    mu: dict[str, float],
    ridge: float = SHIFT_RIDGE,
) -> dict[str, float]:
    """Per-element energy corrections d (eV per atom of the element) so that a compound's
    formation energy E/N - sum_i x_i d_i - sum_i x_i mu_i best matches ``labels`` (formation
    energies by id).

    Compound rows of ``table`` whose ``id`` has a label and whose elements all have a chemical
    potential in ``mu`` enter a ridge least-squares fit (penalty ``ridge`` * |d|^2, so an element
    seen in few compounds gets a small correction, one seen in none gets none). Raises ValueError
    when no compound is labelled.
    """
    rows = table[table["id"].astype(str).isin(labels.index)]
    fractions: list[dict[str, float]] = []
    residuals: list[float] = []  # computed minus labelled formation energy
    for material_id, formula, energy in zip(
        rows["id"].astype(str), rows.formula, rows.energy_per_atom, strict=True
    ):
        composition = Composition(formula).fractional_composition.get_el_amt_dict()
        if len(composition) < 2 or any(symbol not in mu for symbol in composition):
            continue
        computed = float(energy) - sum(x * mu[symbol] for symbol, x in composition.items())
        fractions.append(composition)
        residuals.append(computed - float(labels[material_id]))
    if not fractions:
        raise ValueError("no labelled compound in the reference table to fit chemical potentials")
    elements = sorted({symbol for composition in fractions for symbol in composition})
    column = {symbol: j for j, symbol in enumerate(elements)}
    design = np.zeros((len(fractions), len(elements)))  # (n_compounds, n_elements)
    for i, composition in enumerate(fractions):
        for symbol, x in composition.items():
            design[i, column[symbol]] = x
    # E/N - x.d - x.mu = label  <=>  x.d = computed - label: ridge regression of the residuals
    normal = design.T @ design + ridge * np.eye(len(elements))
    corrections = np.linalg.solve(normal, design.T @ np.asarray(residuals))
    return {symbol: float(corrections[column[symbol]]) for symbol in elements}


def _bravais(symbol: str, kind: str, distance: float) -> Structure:
    """A one- or two-atom cell of ``kind`` with nearest-neighbour ``distance`` (A)."""
    if kind == "fcc":
        return Structure(Lattice.cubic(distance * math.sqrt(2)), [symbol] * 4, _FCC)
    if kind == "bcc":
        return Structure(Lattice.cubic(2 * distance / math.sqrt(3)), [symbol] * 2, _BCC)
    if kind == "hcp":
        lattice = Lattice.hexagonal(distance, distance * math.sqrt(8 / 3))
        return Structure(lattice, [symbol] * 2, [(1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.75)])
    if kind == "sc":
        return Structure(Lattice.cubic(distance), [symbol], [(0, 0, 0)])
    if kind == "diamond":
        lattice = Lattice.cubic(4 * distance / math.sqrt(3))
        return Structure.from_spacegroup("Fd-3m", lattice, [symbol], [(0, 0, 0)])
    raise ValueError(f"unknown prototype {kind!r}")


_FCC = [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
_BCC = [(0, 0, 0), (0.5, 0.5, 0.5)]


def _molecule(symbol: str) -> Structure:
    from ase.data import atomic_numbers, covalent_radii

    bond = 2 * float(covalent_radii[atomic_numbers[symbol]]) * 0.95
    coords = [(BOX / 2 - bond / 2, BOX / 2, BOX / 2), (BOX / 2 + bond / 2, BOX / 2, BOX / 2)]
    return Structure(Lattice.cubic(BOX), [symbol] * 2, coords, coords_are_cartesian=True)


def element_prototypes(symbol: str) -> list[tuple[str, Structure, bool]]:
    """Candidate ground states of an element: (name, structure, relax the cell?)."""
    from ase.build import bulk
    from ase.data import atomic_numbers, covalent_radii
    from ase.data.vdw import vdw_radii
    from ase.spacegroup import crystal
    from pymatgen.io.ase import AseAtomsAdaptor

    if symbol in MOLECULES:
        return [(f"{symbol}:molecule", _molecule(symbol), False)]
    if symbol in NOBLE_GASES:  # van der Waals solids: contact at twice the vdW radius
        distance = 2 * float(vdw_radii[atomic_numbers[symbol]])
        kinds: tuple[str, ...] = ("fcc",)
    else:
        distance = 2 * float(covalent_radii[atomic_numbers[symbol]])
        kinds = ("fcc", "bcc", "hcp", "sc", "diamond")
    candidates = [(f"{symbol}:{kind}", _bravais(symbol, kind, distance), True) for kind in kinds]
    try:  # ASE's reference state where ase.build knows it (e.g. tetragonal In, rhombohedral Hg)
        atoms = bulk(symbol)
        candidates.append((f"{symbol}:ase", AseAtomsAdaptor.get_structure(atoms), True))
    except (ValueError, KeyError, TypeError, NotImplementedError, RuntimeError):
        pass  # no (primitive) crystal reference state in ASE for this element
    for name, group, cellpar, sites in _SPECIAL.get(symbol, []):
        atoms = crystal(
            [symbol] * len(sites),
            sites,
            spacegroup=group,
            cellpar=list(cellpar),
            primitive_cell=True,
        )
        candidates.append((f"{symbol}:{name}", AseAtomsAdaptor.get_structure(atoms), True))
    return candidates


def _existing_ids(path: Path) -> set[str]:
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    return set(pd.read_csv(path, usecols=["id"], dtype={"id": str}).id)


def _append(path: Path, row: dict[str, object]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()


def _row(
    kind: str, rid: str, structure: Structure, relax_cell: bool, fmax: float, max_steps: int
) -> dict[str, object]:
    result = relax_structure(structure, fmax=fmax, max_steps=max_steps, relax_cell=relax_cell)
    return {
        "kind": kind,
        "id": rid,
        "formula": structure.composition.formula,
        "natoms": len(structure),
        "energy_per_atom": round(result.energy_per_atom, 6) if result.status == "ok" else "",
        "converged": result.converged,
        "status": result.status,
        "error": result.error,
    }


def build_references(
    out_csv: str | Path,
    train_csv: str | Path | None = None,
    elements: Sequence[str] | None = None,
    fmax: float = 0.05,
    max_steps: int = 500,
    progress: bool = True,
) -> pd.DataFrame:
    """Relax elemental prototypes and training crystals with CHGNet into ``out_csv``.

    Rows are appended as each relaxation finishes and ids already in ``out_csv`` are skipped, so
    a killed build continues where it stopped. Elements of the training crystals come first, then
    the training crystals, then the remaining elements. Returns the whole table.
    """
    from tcdesign.data.io import read_structures
    from tcdesign.predict.api import bundled_csv

    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    records = [r for r in read_structures(train_csv or bundled_csv("train")) if r.ok]
    in_train = sorted({str(e) for r in records for e in r.structure.composition.elements})
    wanted = list(elements) if elements is not None else ELEMENTS
    first = [e for e in wanted if e in in_train]
    rest = [e for e in wanted if e not in in_train]
    jobs: list[tuple[str, str, Structure, bool]] = []
    for symbol in first:
        jobs += [("element", name, s, cell) for name, s, cell in element_prototypes(symbol)]
    jobs += [("train", r.id, r.structure, True) for r in records]
    for symbol in rest:
        jobs += [("element", name, s, cell) for name, s, cell in element_prototypes(symbol)]
    done = _existing_ids(out_csv)
    todo = [job for job in jobs if job[1] not in done]
    for kind, rid, structure, relax_cell in tqdm(
        todo, desc="references", unit="structure", disable=not progress
    ):
        row = _row(kind, rid, structure, relax_cell, fmax, max_steps)
        _append(out_csv, row)
    meta = {
        "potential": "CHGNet 0.4.2 pretrained (MPtrj, MP2020-compatible energies)",
        "fmax_eV_per_A": fmax,
        "max_steps": max_steps,
        "train_csv": str(train_csv or "bundled train.csv"),
        "rows": len(jobs),
    }
    out_csv.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return load_references(out_csv)


def load_references(path: str | Path | None = None) -> pd.DataFrame:
    """The reference table (default: the bundled one); only rows with a finite energy."""
    path = Path(path) if path is not None else bundled_reference_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"reference energies missing: {path}; build them with 'tcdesign screen-references'"
        )
    table = pd.read_csv(path, dtype={"id": str, "error": str})
    table = table[(table.status == "ok") & np.isfinite(table.energy_per_atom)]
    return table.reset_index(drop=True)


def elemental_energies(table: pd.DataFrame) -> dict[str, float]:
    """Chemical potential (eV/atom) of each element: the lowest relaxed energy of its
    prototypes and of any elemental training crystal."""
    from pymatgen.core import Composition

    energies: dict[str, float] = {}
    for formula, energy in zip(table.formula, table.energy_per_atom, strict=True):
        elements = Composition(formula).elements
        if len(elements) != 1:
            continue
        symbol = str(elements[0])
        energies[symbol] = min(energies.get(symbol, math.inf), float(energy))
    return energies
