"""JARVIS-DFT ``dft_3d`` records as CSVs in the JARVIS/CDVAE layout that tcdesign reads.

jarvis-tools' ``jarvis.db.figshare.data("dft_3d")`` returns a list of dicts, one per material,
with keys such as

- ``jid``: the JARVIS id, e.g. ``"JVASP-816"``;
- ``atoms``: the relaxed structure, a dict with ``lattice_mat`` (3x3, rows are the lattice
  vectors a, b, c in Angstrom), ``coords`` (n x 3; fractional, or Cartesian in Angstrom when
  ``cartesian`` is true), ``elements`` (n symbols), and informational ``abc``, ``angles``,
  ``props``;
- ``Tc_supercon``: electron-phonon critical temperature in K, or the string ``"na"`` when JARVIS
  has none; ``formation_energy_peratom`` (eV/atom), ``optb88vdw_bandgap`` (eV), ``ehull``
  (eV/atom) and many more, all ``"na"`` when missing.

The conversion functions here are pure and need neither jarvis-tools nor a network; only
:func:`fetch_dft_3d` imports jarvis-tools (lazily) and downloads the data set.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

logger = logging.getLogger(__name__)

TC_KEY = "Tc_supercon"  # dft_3d key of the electron-phonon Tc (K)
MISSING = "na"  # how dft_3d marks a missing value
DATASET = "dft_3d"


class UnknownKeyError(ValueError):
    """No dft_3d record has the requested key (most likely a misspelt key)."""


def is_missing(value: Any) -> bool:
    """True for the ways a dft_3d value can be absent: ``"na"``, ``None``, empty or NaN."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in (MISSING, "", "nan", "none")
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def jarvis_atoms_to_structure(atoms: Mapping[str, Any]) -> Structure:
    """A pymatgen Structure from a JARVIS ``atoms`` dict (the format of ``Atoms.to_dict()``).

    ``lattice_mat`` rows are the lattice vectors (Angstrom); ``coords`` are Cartesian
    (Angstrom) when ``atoms["cartesian"]`` is true, fractional otherwise. ``abc``, ``angles``
    and ``props`` are not needed. Raises ValueError naming what is malformed.
    """
    for key in ("lattice_mat", "coords", "elements"):
        if key not in atoms:
            raise ValueError(f"JARVIS atoms dict has no {key!r}")
    lattice = np.asarray(atoms["lattice_mat"], dtype=float)  # (3, 3) Angstrom
    if lattice.shape != (3, 3):
        raise ValueError(f"lattice_mat must be 3x3, got shape {lattice.shape}")
    coords = np.asarray(atoms["coords"], dtype=float).reshape(-1, 3)  # (n_atoms, 3)
    elements = [str(symbol).strip() for symbol in atoms["elements"]]  # (n_atoms,)
    if len(elements) != len(coords):
        raise ValueError(f"{len(elements)} elements but {len(coords)} coordinates")
    if not elements:
        raise ValueError("JARVIS atoms dict has no atoms")
    cartesian = bool(atoms.get("cartesian", False))
    try:
        return Structure(Lattice(lattice), elements, coords, coords_are_cartesian=cartesian)
    except Exception as exc:  # pymatgen raises several types on bad symbols or lattices
        raise ValueError(f"cannot build a structure: {exc}") from None


def records_to_frame(
    records: Iterable[Mapping[str, Any]],
    target: str = TC_KEY,
    extra_keys: Sequence[str] = (),
) -> pd.DataFrame:
    """dft_3d records as a DataFrame in the JARVIS/CDVAE CSV layout.

    Columns: ``material_id`` (the ``jid``), ``cif`` (pymatgen CIF text, P1) and, for
    ``target="Tc_supercon"``, ``prop`` = -Tc (K; negated as in CDVAE, so Tc = -prop). For any
    other target key the value is written, unchanged and in its JARVIS units, in a column named
    after the key and there is no ``prop`` column. Each of ``extra_keys`` becomes a column too
    (missing values as NaN).

    Records whose target is missing (``"na"``, None, NaN or absent) are skipped, and so are
    records whose ``atoms`` cannot be converted; how many is logged and stored in
    ``frame.attrs["n_skipped_missing_target"]`` and ``frame.attrs["n_skipped_bad_structure"]``.
    Raises :class:`UnknownKeyError` (a ValueError) if no record has the target key at all
    (most likely a misspelt key).
    """
    rows: list[dict[str, Any]] = []
    n_seen = n_missing = n_bad = 0
    key_seen = False
    for record in records:
        n_seen += 1
        key_seen = key_seen or target in record
        value = record.get(target)
        if is_missing(value):
            n_missing += 1
            continue
        jid = str(record.get("jid", n_seen - 1))
        try:
            number = float(value)
            structure = jarvis_atoms_to_structure(record["atoms"])
        except (KeyError, TypeError, ValueError) as exc:
            n_bad += 1
            logger.warning("%s: skipped (%s)", jid, exc)
            continue
        row: dict[str, Any] = {"material_id": jid, "cif": str(CifWriter(structure))}
        if target == TC_KEY:
            row["prop"] = -number  # -Tc (K)
        else:
            row[target] = number
        for key in extra_keys:
            extra = record.get(key)
            row[key] = np.nan if is_missing(extra) else extra
        rows.append(row)
    if n_seen and not key_seen:
        raise UnknownKeyError(f"no record has the key {target!r}")
    value_columns = ["prop"] if target == TC_KEY else [target]
    columns = ["material_id", "cif", *value_columns]
    columns += [key for key in extra_keys if key not in columns]
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["n_skipped_missing_target"] = n_missing
    frame.attrs["n_skipped_bad_structure"] = n_bad
    if n_missing or n_bad:
        logger.info(
            "%d of %d records kept; %d skipped with no %s, %d with an unusable structure",
            len(frame),
            n_seen,
            n_missing,
            target,
            n_bad,
        )
    return frame


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CDVAE does: an unnamed row-index column first, then the columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=True)
    return path


def fetch_dft_3d(
    target: str = TC_KEY,
    out_csv: str | Path | None = None,
    extra_keys: Sequence[str] = (),
    store_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Download JARVIS ``dft_3d`` with jarvis-tools and convert it (:func:`records_to_frame`).

    Needs jarvis-tools (``pip install jarvis-tools``) and internet access; jarvis-tools caches
    the download in ``store_dir`` (its own default when None). Writes the CSV to ``out_csv``
    when given. Raises RuntimeError when jarvis-tools is not installed.
    """
    try:
        from jarvis.db.figshare import data as jarvis_data
    except ImportError as exc:
        raise RuntimeError(
            "reading JARVIS dft_3d needs jarvis-tools: pip install jarvis-tools "
            "(or pip install 'tcdesign[jarvis]'), or pass a CSV in the JARVIS/CDVAE layout "
            f"instead ({exc})"
        ) from None
    kwargs = {} if store_dir is None else {"store_dir": str(store_dir)}
    records = jarvis_data(DATASET, **kwargs)
    frame = records_to_frame(records, target=target, extra_keys=extra_keys)
    if out_csv is not None:
        write_csv(frame, out_csv)
    return frame
