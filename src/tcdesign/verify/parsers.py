"""Readers of Quantum ESPRESSO outputs (pw.x, ph.x, matdyn.x, lambda.x); QE 6.x-7.x formats.

Units as QE writes them unless the name says otherwise: a2F.dos* frequencies in Ry, matdyn
phonon DOS and frequencies in cm^-1, lambda.x omega_log in K.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

_FLOAT = r"[-+]?\d*\.?\d+(?:[eEdD][-+]?\d+)?"


def _floats(line: str, pattern: str | re.Pattern[str] = _FLOAT) -> list[float]:
    # float() reads "NaN" in any case; Fortran writes exponents with D
    return [float(v.replace("D", "E").replace("d", "e")) for v in re.findall(pattern, line)]


# lambda.x prints NaN for omega_log and Tc when a q-point has an imaginary mode
_FLOAT_OR_NAN = re.compile(_FLOAT + r"|\bNaN\b", re.IGNORECASE)


def _floats_or_nan(line: str) -> list[float]:
    return _floats(line, _FLOAT_OR_NAN)


def qe_version(text: str) -> str | None:
    """QE version from a program's banner (``Program PWSCF v.6.7MaX starts on ...``)."""
    match = re.search(r"Program\s+\S+\s+v\.(\S+)\s+starts", text)
    return match.group(1) if match else None


def qe_failure(text: str) -> str | None:
    """Why a QE run failed, read from its output; None when it finished normally.

    Looks for QE's ``Error in routine`` block, scf non-convergence and a missing ``JOB DONE``.
    """
    match = re.search(r"Error in routine\s+(\S+)\s*\(\s*-?\d+\s*\):\s*\n\s*(.+)", text)
    if match:
        return f"{match.group(1)}: {match.group(2).strip()}"
    if "convergence NOT achieved" in text:
        line = next(ln for ln in text.splitlines() if "convergence NOT achieved" in ln)
        return line.strip()
    if "JOB DONE" not in text:
        return "the program stopped before JOB DONE"
    return None


def step_limit_reached(text: str) -> bool:
    """True when a pw.x relaxation stopped at ``nstep`` and still finished (exit status 3)."""
    return "maximum number of steps has been reached" in text and "JOB DONE" in text


def relaxation_converged(text: str) -> bool:
    """True when a pw.x (vc-)relax reached its thresholds (bfgs converged)."""
    return "bfgs converged" in text or "End final coordinates" in text


def magnetization(text: str) -> tuple[float, float] | None:
    """(total, absolute) magnetisation per cell in Bohr magnetons at the end of a spin-polarised
    pw.x run; None when the output has none (a non-spin-polarised run)."""
    total = re.findall(r"total magnetization\s*=\s*(\S+)", text)
    absolute = re.findall(r"absolute magnetization\s*=\s*(\S+)", text)
    if not total or not absolute:
        return None
    return float(total[-1]), float(absolute[-1])


def read_relaxed_structure(path: Path) -> Structure:
    """Last structure of a pw.x (vc-)relax output, via ASE's espresso-out reader (A)."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = read(str(path), format="espresso-out", index=-1)
    return AseAtomsAdaptor.get_structure(atoms)


@dataclass(frozen=True)
class A2F:
    """alpha2F of one broadening from matdyn's a2F.dos<i>."""

    frequencies_ry: np.ndarray  # (n_points,)
    total: np.ndarray  # (n_points,) alpha2F summed over modes
    lambda_qe: float | None  # matdyn's own lambda printed at the end of the file


def read_a2f_dos(path: Path) -> A2F:
    """matdyn.x ``a2F.dos<i>``: columns omega (Ry), alpha2F total, alpha2F per mode."""
    rows = []
    lambda_qe = None
    for line in Path(path).read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.lower().startswith("lambda"):
            values = _floats(stripped)
            lambda_qe = values[0] if values else None
            continue
        rows.append(_floats(stripped)[:2])
    if not rows:
        raise ValueError(f"{path}: no alpha2F rows")
    table = np.array(rows)  # (n_points, 2)
    return A2F(table[:, 0], table[:, 1], lambda_qe)


def read_matdyn_lambda(path: Path) -> list[dict[str, float]]:
    """matdyn.x ``lambda`` file: per broadening (Ry) QE's lambda, N(Ef) and omega_ln (K)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if "Broadening" not in line:
            continue
        values = _floats(line)
        row = {"sigma_Ry": values[0], "lambda": values[1], "dos_ef": values[2]}
        if len(values) > 3:
            row["omega_log_K"] = values[3]
        rows.append(row)
    return rows


def read_phonon_dos(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """matdyn.x phonon DOS: (frequencies in cm^-1, total DOS in states/cm^-1)."""
    table = np.loadtxt(path, comments="#", ndmin=2)  # (n_points, 2 + n_atoms)
    return table[:, 0], table[:, 1]


def read_matdyn_freq(path: Path) -> np.ndarray:
    """matdyn.x ``flfrq`` file: (n_qpoints, n_modes) frequencies in cm^-1."""
    text = Path(path).read_text()
    header = re.search(r"nbnd\s*=\s*(\d+)\s*,\s*nks\s*=\s*(\d+|\*+)", text)
    if header is None:
        raise ValueError(f"{path}: no '&plot nbnd=, nks=' header")
    n_modes = int(header.group(1))
    values = _floats(text[text.index("/", header.end()) + 1 :])
    per_q = 3 + n_modes
    # QE writes nks with i4: beyond 9999 q-points it prints ****; count the blocks instead
    n_q = int(header.group(2)) if header.group(2).isdigit() else len(values) // per_q
    if len(values) < n_q * per_q:
        raise ValueError(f"{path}: expected {n_q} q-points with {n_modes} modes")
    table = np.array(values[: n_q * per_q]).reshape(n_q, per_q)  # (n_q, 3 + n_modes)
    return table[:, 3:]


_PH_FREQ = re.compile(r"freq \(\s*\d+\) =\s*" + _FLOAT + r" \[THz\] =\s*(" + _FLOAT + r") \[cm-1\]")
_PH_Q = re.compile(r"q = \(\s*(" + _FLOAT + r")\s+(" + _FLOAT + r")\s+(" + _FLOAT + r")")


def read_ph_frequencies(text: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """ph.x output: [(q in 2 pi / alat (3,), frequencies in cm^-1 (n_modes,))] per q."""
    blocks = []
    for part in text.split("Diagonalizing the dynamical matrix")[1:]:
        q_match = _PH_Q.search(part)
        if q_match is None:
            continue
        q = np.array([float(v) for v in q_match.groups()])
        freqs = _PH_FREQ.findall(part)
        blocks.append((q, np.array([float(f) for f in freqs])))
    return blocks


def read_dyn0(path: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """ph.x ``<fildyn>0``: the q-grid and the irreducible q-points (n_q, 3), 2 pi / alat."""
    lines = Path(path).read_text().split("\n")
    grid = tuple(int(v) for v in lines[0].split()[:3])
    n_q = int(lines[1].split()[0])
    qpoints = np.array([_floats(line)[:3] for line in lines[2 : 2 + n_q]])  # (n_q, 3)
    return (grid[0], grid[1], grid[2]), qpoints


def star_size(path: Path) -> int:
    """Number of q-points in the star written to one ph.x ``<fildyn><i>`` file."""
    return Path(path).read_text().count("Dynamical  Matrix in cartesian axes")


def read_lambda_x(text: str) -> list[dict[str, float]]:
    """lambda.x stdout: per broadening (Ry) lambda, omega_log (K) and its own Allen-Dynes Tc (K).

    Values lambda.x prints as NaN (omega_log and Tc of a crystal with imaginary modes) are NaN.
    """
    rows = []
    for line in text.splitlines():
        if line.strip().startswith("lambda =") and "degauss=" in line:
            values = _floats_or_nan(line)
            rows.append(
                {
                    "lambda": values[0],
                    "omega_log_K": values[2],
                    "dos_ef": values[3],
                    "sigma_Ry": values[4],
                }
            )
    table = text.split("T_c", 1)[1].splitlines()[1:] if "T_c" in text else []
    for row, line in zip(rows, table, strict=False):
        values = _floats_or_nan(line)
        row["tc_K"] = values[2] if len(values) > 2 else float("nan")
    return rows


def ph_representations(log: Path) -> tuple[int, int] | None:
    """(irreducible representations converged, representations of the q-point) from a running
    ph.x log of one q-point, or None before ph.x has listed them."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"There are\s+(\d+)\s+irreducible representations", text)
    if not found:
        return None
    return text.count("Convergence has been achieved"), int(found[-1])
