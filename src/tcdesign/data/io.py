"""Read crystal structures from the inputs every tcdesign verb accepts.

Accepted inputs (../SPEC):
- a CSV in the JARVIS/CDVAE layout: ``cif`` (required), ``material_id`` (optional; else
  an ``id`` column, as tcdesign's own tables have; else the row number is the id), ``prop``
  (optional; minus Tc in K) and any other numeric columns;
- a single CIF or POSCAR file;
- a folder of CIF/POSCAR files (the file stem is the id).

A file that cannot be used at all raises :class:`InputError` (the CLI turns it into one line on
stderr and exit status 2). A bad row inside a usable input (a CIF that does not parse, an unknown
element, atoms closer than 0.5 A, NaN) becomes a :class:`StructureRecord` with ``error`` set, so
that a run over many structures reports it and goes on.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Element, Species, Structure

MIN_DISTANCE = 0.5  # Angstrom; closer atoms make a structure unusable (SPEC)
MAX_Z = 100  # the models' atom features (CGCNN, elemental descriptors) cover Z = 1..100
TC_TARGET = "tc"  # the default target: Tc in K, read as -prop from the CDVAE layout
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
POSCAR_NAMES = ("POSCAR", "CONTCAR")


class InputError(Exception):
    """An input that cannot be read at all (missing, empty, binary, no ``cif`` column)."""


@dataclass
class StructureRecord:
    """One structure of an input, or the reason it could not be used."""

    id: str
    structure: Structure | None
    targets: dict[str, float] = field(default_factory=dict)  # e.g. {"tc": 4.2} (K)
    error: str | None = None  # why the row is unusable; None for a good row
    warning: str | None = None  # a problem that does not stop the row (e.g. NaN reference)

    @property
    def ok(self) -> bool:
        return self.error is None and self.structure is not None

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula if self.structure is not None else ""


def validate_structure(structure: Structure) -> str | None:
    """Return why ``structure`` is unusable, or None when it is fine."""
    if len(structure) == 0:
        return "structure has no atoms"
    for site in structure:
        if not site.is_ordered:
            return f"partial occupancy on a site ({site.species}); only ordered structures work"
        specie = site.specie
        # a DummySpecies (what pymatgen makes of an unknown symbol such as "Xx" in a POSCAR)
        # raises AttributeError on .element, hence getattr with a default
        element = specie if isinstance(specie, Element) else getattr(specie, "element", None)
        if not isinstance(specie, Element | Species) or not isinstance(element, Element):
            return f"unknown element {str(specie)!r}"
        if element.Z > MAX_Z:
            return f"element {element.symbol} (Z = {element.Z}) is not supported (Z 1-{MAX_Z})"
    lattice = structure.lattice.matrix
    if not np.all(np.isfinite(lattice)) or not np.all(np.isfinite(structure.frac_coords)):
        return "lattice or coordinates contain NaN or infinity"
    if not structure.volume > 1e-3:
        return f"degenerate lattice (volume {structure.volume:.3g} A^3)"
    # searched for every structure: even a single atom meets its own periodic image closer than
    # 0.5 A in a skewed cell whose lattice vectors are all longer than that
    centers, neighbors, _, distances = structure.get_neighbor_list(MIN_DISTANCE)
    close = distances < MIN_DISTANCE
    # exclude an atom's zero distance to itself; a periodic image closer than 0.5 A counts
    close &= ~((centers == neighbors) & (distances < 1e-8))
    if close.any():
        k = int(np.argmax(close))
        return (
            f"atoms {centers[k]} and {neighbors[k]} are {distances[k]:.3f} A apart "
            f"(minimum {MIN_DISTANCE} A)"
        )
    return None


def parse_structure(text: str, fmt: str) -> Structure:
    """Parse CIF or POSCAR text; raise ValueError with a short reason when it fails."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structure = Structure.from_str(text, fmt=fmt)
        except Exception as exc:  # pymatgen raises many types on malformed text
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{fmt.upper()} does not parse: {reason}") from None
    bad_symbols = [str(w.message) for w in caught if "is not a valid Element" in str(w.message)]
    if bad_symbols:
        raise ValueError(bad_symbols[0].replace("'", "") + " (unknown element)")
    # a VASP 4 POSCAR has no element line; pymatgen then names the species H, He, Li, ...
    if any("Elements in POSCAR cannot be determined" in str(w.message) for w in caught):
        raise ValueError("POSCAR names no elements (VASP 4 format); add the element line")
    return structure


def _record(
    rid: str, text: str | None, fmt: str, targets: dict[str, float], warning: str | None = None
) -> StructureRecord:
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        return StructureRecord(rid, None, targets, error=f"empty {fmt.upper()}")
    try:
        structure = parse_structure(str(text), fmt)
    except ValueError as exc:
        return StructureRecord(rid, None, targets, error=str(exc))
    problem = validate_structure(structure)
    if problem is not None:
        return StructureRecord(rid, None, targets, error=problem)
    return StructureRecord(rid, structure, targets, warning=warning)


def _target_values(row: pd.Series, targets: Iterable[str]) -> tuple[dict[str, float], str | None]:
    """Numeric targets of one CSV row; the second item names a missing or NaN target."""
    values: dict[str, float] = {}
    for name in targets:
        column = "prop" if name == TC_TARGET and "prop" in row.index else name
        if column not in row.index:
            return values, f"no {column!r} column"
        raw = row[column]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return values, f"{column} is not a number ({raw!r})"
        if not math.isfinite(value):
            return values, f"{column} is {'NaN' if math.isnan(value) else 'infinite'}"
        values[name] = -value if column == "prop" and name == TC_TARGET else value
    return values, None


def read_csv(
    path: Path, targets: Iterable[str] = (), require_targets: bool = False
) -> list[StructureRecord]:
    """Read a CSV in the JARVIS/CDVAE layout.

    ``targets`` are read per row (``tc`` from ``-prop``); with ``require_targets`` a missing or NaN
    target makes the row bad, otherwise it is kept as a warning.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not raw.strip():
        raise InputError(f"{path}: file is empty")
    if b"\x00" in raw[:8192]:
        raise InputError(f"{path}: binary file, expected a CSV with a 'cif' column")
    try:
        frame = pd.read_csv(io.StringIO(raw.decode("utf-8")), dtype={"material_id": str, "id": str})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if "cif" not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:8]))
        raise InputError(f"{path}: no 'cif' column (columns: {columns})")
    present = []
    for name in targets:
        column = "prop" if name == TC_TARGET and "prop" in frame.columns else name
        if column in frame.columns:
            present.append(name)
        elif require_targets:
            raise InputError(f"{path}: no {column!r} column for target {name!r}")
    records = []
    for position, (_, row) in enumerate(frame.iterrows()):
        rid = row.get("material_id", row.get("id"))  # tcdesign's own tables name it 'id'
        rid = str(rid) if isinstance(rid, str) and rid.strip() else str(position)
        values, problem = _target_values(row, present)
        record = _record(rid, row["cif"], "cif", values)
        if problem is not None and record.ok:
            if require_targets:
                record = StructureRecord(rid, None, values, error=problem)
            else:
                record.warning = problem
        records.append(record)
    return records


def _structure_format(path: Path) -> str | None:
    name = path.name
    if path.suffix.lower() == ".cif":
        return "cif"
    if path.suffix.lower() in (".vasp", ".poscar") or name.startswith(POSCAR_NAMES):
        return "poscar"
    return None


def read_structure_file(path: Path) -> StructureRecord:
    """One CIF/POSCAR file as a record (bad content is a bad record, not an exception)."""
    fmt = _structure_format(path) or "cif"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return StructureRecord(path.stem, None, error=f"cannot read {path} ({exc.strerror})")
    if b"\x00" in raw[:8192]:
        return StructureRecord(path.stem, None, error=f"{path.name} is a binary file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return StructureRecord(path.stem, None, error=f"{path.name} is not UTF-8 text")
    return _record(path.stem, text, fmt, {})


def unique_ids(records: Sequence[StructureRecord]) -> list[StructureRecord]:
    """Records with repeated ids renamed ``ID_2``, ``ID_3``... (ids name output rows, files
    and folders, and key resumed runs), each renamed one with a warning saying so.

    The first record of an id keeps it; a repeat takes the lowest suffix that no record of the
    input has and no earlier repeat took (ids ``a, a, a_2`` become ``a, a_3, a_2``).
    """
    used = {record.id for record in records}
    kept: set[str] = set()
    out = []
    for record in records:
        if record.id not in kept:
            kept.add(record.id)
            out.append(record)
            continue
        suffix = 2
        while f"{record.id}_{suffix}" in used:
            suffix += 1
        new_id = f"{record.id}_{suffix}"
        used.add(new_id)
        kept.add(new_id)
        note = f"id {record.id!r} repeated in the input; this row is {new_id!r}"
        warning = f"{record.warning}; {note}" if record.warning else note
        out.append(replace(record, id=new_id, warning=warning))
    return out


def read_structures(
    path: str | Path, targets: Iterable[str] = (), require_targets: bool = False
) -> list[StructureRecord]:
    """Read any accepted input into records, good and bad, in input order, with unique ids
    (:func:`unique_ids`: a repeated id becomes ``ID_2``, with a warning).

    Raises :class:`InputError` when the input cannot be used at all: it does not exist, is empty
    or binary, is a CSV without a ``cif`` column, is a folder with no structure files, or is a
    single structure file that does not parse.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _structure_format(p))
        if not files:
            raise InputError(f"{path}: folder has no CIF or POSCAR files")
        return unique_ids([read_structure_file(p) for p in files])
    if path.suffix.lower() == ".csv":
        return unique_ids(read_csv(path, targets, require_targets))
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    record = read_structure_file(path)
    if record.error is not None:
        raise InputError(f"{path}: {record.error}")
    return [record]
