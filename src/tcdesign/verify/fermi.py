"""Electronic density of states at the Fermi level, N(E_F), from one coarse pw.x scf.

McMillan's coupling is lambda = N(E_F) <I^2> / (M <omega^2>): N(E_F) is the electronic half of
it, and the one that needs DFT. Full electron-phonon runs (:mod:`tcdesign.verify.workflow`) take
hours per crystal; this takes 20 s to a few minutes on one core, so it can be had for every
candidate that passes a screen.

Settings (fixed, so that numbers from different runs compare; ``benchmarks/fermi_dos.py``
measured them on the bundled crystals):
- the pseudopotentials :func:`~tcdesign.verify.pseudo.choose_pseudopotentials` picks (an SSSP
  library was used for the benchmark), 35/280 Ry;
- a Monkhorst-Pack grid of spacing 0.25 1/A (2 pi included), Marzari-Vanderbilt smearing of
  0.02 Ry, non-spin-polarised;
- N(E_F) from the scf eigenvalues, each broadened by a Gaussian of width 0.05, 0.1 or 0.2 eV,
  both spins, in states/eV per atom. The 0.2 eV value is the robust one: on small cells the
  0.05 eV value is under-sampled by the coarse k-grid (bcc Ta: 0.39 at 0.05 eV, 1.26 at 0.2 eV,
  1.62 from the dense grid of its electron-phonon run).

A large N(E_F) is also Stoner's condition for ferromagnetism, and a non-spin-polarised scf cannot
tell. :func:`magnetic_moment` runs the same scf spin-polarised from a ferromagnetic start (half
the valence charge of every atom polarised, as ``tcdesign verify``'s magnetism check) and
returns the moment that survives.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase.io import read
from ase.io.espresso import write_espresso_in
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from tcdesign.verify.inputs import STARTING_MAGNETIZATION, grid_from_spacing
from tcdesign.verify.parsers import magnetization, qe_failure
from tcdesign.verify.pseudo import choose_pseudopotentials
from tcdesign.verify.workflow import _die_with_parent

BROADENINGS_EV = (0.05, 0.1, 0.2)
K_SPACING = 0.25  # 1/A, 2 pi included
ECUT_RY = (35.0, 280.0)  # wavefunctions, density
DEGAUSS_RY = 0.02
PREFIX = "dos"


def dos_at_fermi(
    eigenvalues_ev: np.ndarray, weights: np.ndarray, fermi_ev: float, sigma_ev: float
) -> float:
    """States per eV per cell at the Fermi level, both spins, from Gaussian-broadened levels.

    ``eigenvalues_ev`` is (n_k, n_bands), ``weights`` the (n_k,) k-point weights (any
    normalisation).
    """
    eigenvalues_ev = np.asarray(eigenvalues_ev, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if eigenvalues_ev.ndim != 2 or eigenvalues_ev.shape[0] != weights.shape[0]:
        raise ValueError(
            f"eigenvalues {eigenvalues_ev.shape} and weights {weights.shape} do not match"
        )
    if not sigma_ev > 0:
        raise ValueError(f"broadening must be positive, got {sigma_ev}")
    shifted = (eigenvalues_ev - fermi_ev) / sigma_ev
    gauss = np.exp(-0.5 * shifted**2) / (sigma_ev * np.sqrt(2 * np.pi))
    return float(2 * (weights[:, None] * gauss).sum() / weights.sum())


def scf_input(
    structure: Structure, pseudo_dir: Path, spin: bool = False
) -> tuple[str, tuple[int, int, int]]:
    """The pw.x input of the N(E_F) scf and its k-grid; with ``spin``, spin-polarised from a
    ferromagnetic start."""
    pseudos = choose_pseudopotentials(sorted({e.symbol for e in structure.composition}), pseudo_dir)
    kpts = grid_from_spacing(structure, K_SPACING)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    system: dict[str, object] = {}
    if spin:  # ASE writes starting_magnetization(i) from the initial moments
        atoms.set_initial_magnetic_moments([STARTING_MAGNETIZATION] * len(atoms))
        system["nspin"] = 2
    data = {
        "control": {
            "calculation": "scf",
            "prefix": PREFIX + ("_spin" if spin else ""),
            "outdir": "tmp",
            "verbosity": "high",  # prints every k-point's eigenvalues
            "pseudo_dir": str(pseudo_dir),
        },
        "system": {
            "ecutwfc": ECUT_RY[0],
            "ecutrho": ECUT_RY[1],
            "occupations": "smearing",
            "smearing": "mv",
            "degauss": DEGAUSS_RY,
            **system,
        },
        "electrons": {"conv_thr": 1e-6 * len(structure), "mixing_beta": 0.4},
    }
    buffer = io.StringIO()
    write_espresso_in(
        buffer,
        atoms,
        input_data=data,
        pseudopotentials={el: p.filename for el, p in pseudos.items()},
        kpts=kpts,
    )
    return buffer.getvalue(), kpts


def read_fermi_dos(scf_out: Path, n_atoms: int) -> dict[str, float]:
    """``nef_<sigma>`` (states/eV per atom) at each of :data:`BROADENINGS_EV` from a pw.x log."""
    calc = read(scf_out, format="espresso-out").calc
    weights = np.array(calc.get_k_point_weights())  # (n_k,)
    eigenvalues = np.array([calc.get_eigenvalues(kpt=k) for k in range(len(weights))])  # eV
    fermi = calc.get_fermi_level()
    return {
        f"nef_{sigma:g}": dos_at_fermi(eigenvalues, weights, fermi, sigma) / n_atoms
        for sigma in BROADENINGS_EV
    }


def _run_pw(text: str, work: Path, name: str, pw_command: str, timeout: float | None) -> float:
    """Run pw.x on ``text`` as ``work/name.in`` (one thread); seconds. RuntimeError with pw.x's
    own message when it fails."""
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.in").write_text(text)
    started = time.perf_counter()
    with (work / f"{name}.out").open("w") as handle:
        process = subprocess.run(
            [*pw_command.split(), "-in", f"{name}.in"],
            cwd=work,
            stdout=handle,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=timeout,
            check=False,
            # ends with its parent: a pool worker that dies must not leave pw.x running
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    seconds = time.perf_counter() - started
    log = (work / f"{name}.out").read_text(errors="replace")
    failure = qe_failure(log)
    if process.returncode != 0 or failure is not None:
        reason = failure or f"pw.x exited with status {process.returncode}"
        raise RuntimeError(f"{name} (pw.x) failed: {reason}")
    return seconds


def fermi_dos(
    structure: Structure,
    pseudo_dir: Path,
    work: Path,
    *,
    pw_command: str = "pw.x",
    timeout: float | None = None,
) -> dict[str, object]:
    """Run the scf in ``work`` (``scf.in``, ``scf.out``; one thread) and return seconds, k-grid
    and N(E_F) per atom.

    Raises RuntimeError with pw.x's own message when it fails, and
    :class:`~tcdesign.verify.pseudo.PseudopotentialError` when an element has no file.
    """
    text, kpts = scf_input(structure, Path(pseudo_dir))
    work = Path(work)
    seconds = _run_pw(text, work, "scf", pw_command, timeout)
    result: dict[str, object] = {"seconds": round(seconds, 1), "kpts": [int(k) for k in kpts]}
    result.update(read_fermi_dos(work / "scf.out", len(structure)))
    return result


def magnetic_moment(
    structure: Structure,
    pseudo_dir: Path,
    work: Path,
    *,
    pw_command: str = "pw.x",
    timeout: float | None = None,
) -> dict[str, float]:
    """The spin-polarised scf in ``work`` (``spin.in``, ``spin.out``): the absolute and total
    magnetisation that survive a ferromagnetic start, in Bohr magnetons per atom, and seconds.
    Ferromagnetic order only: an antiferromagnet needs a supercell and is not seen."""
    text, _ = scf_input(structure, Path(pseudo_dir), spin=True)
    work = Path(work)
    seconds = _run_pw(text, work, "spin", pw_command, timeout)
    moments = magnetization((work / "spin.out").read_text(errors="replace"))
    if moments is None:
        raise RuntimeError("spin (pw.x): no magnetisation in the output")
    total, absolute = moments
    return {
        "magmom_abs": absolute / len(structure),
        "magmom_total": total / len(structure),
        "seconds": round(seconds, 1),
    }
