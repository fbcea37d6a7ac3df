"""Settings of the electron-phonon workflow: two presets, overridable from the CLI or a TOML file.

``coarse`` is for tests and laptops (fcc Al end to end in well under a minute on one core);
``standard`` is a convergence-minded production choice. Grids are given as reciprocal-space
spacings (1/A, including the 2 pi) so that one preset fits any cell; each k-grid is rounded up to
a multiple of the q-grid, which the interpolated electron-phonon method needs (k + q must fall on
the grid), and the dense la2F grid to a multiple of the k-grid (ph.x interpolates from one to the
other by integer division of the two and gives wrong lambdas, without an error, otherwise).

Cutoffs: ``ecutwfc_ry`` / ``ecutrho_ry`` set explicitly win; otherwise the largest suggestion
among the chosen pseudopotential files, and the preset's value when no file suggests one. The
density cutoff is at least ``dual`` (4 for norm-conserving sets, 8 with ultrasoft or PAW files)
times the wavefunction cutoff.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Preset = Literal["coarse", "standard"]


@dataclass(frozen=True)
class VerifySettings:
    """Every knob of one verification run (units in the names; Ry for energies)."""

    preset: Preset = "coarse"
    mu_star: float = 0.1  # Coulomb pseudopotential of the Allen-Dynes formula
    relax: bool = True  # vc-relax with pw.x before the phonons
    ecutwfc_ry: float | None = None  # None: from the pseudopotentials, else the preset default
    ecutrho_ry: float | None = None
    default_ecutwfc_ry: float = 25.0  # used when no pseudopotential suggests a cutoff
    smearing: str = "mv"  # Marzari-Vanderbilt cold smearing, non-spin-polarised metals
    degauss_ry: float = 0.02
    k_spacing: float = 0.35  # 1/A, scf (and relax) k-grid for ph.x
    fit_k_spacing: float = 0.18  # 1/A, dense la2F k-grid for the double-delta average
    q_spacing: float = 0.7  # 1/A, DFPT q-grid
    dos_q_spacing: float = 0.17  # 1/A, matdyn mesh for phonon DOS and alpha2F
    dos_delta_cm1: float = 2.0  # matdyn energy step of the DOS and alpha2F (cm^-1)
    conv_thr_ry: float = 1e-9  # scf convergence per cell
    tr2_ph: float = 1e-12  # ph.x self-consistency threshold
    el_ph_sigma_ry: float = 0.005  # first electronic broadening and step of the sweep
    el_ph_nsigma: int = 10  # number of broadenings
    press_conv_thr_kbar: float = 0.5  # vc-relax stress threshold
    relax_max_steps: int = 100  # vc-relax ionic steps; the last geometry is used if reached
    spread_tolerance: float = 0.1  # converged when lambda spread over middle broadenings <= this
    imaginary_tolerance_cm1: float = 10.0  # stable unless a mode is below -tolerance
    # stop the phonons at the first q-point with a mode below -imaginary_tolerance_cm1: status
    # 'unstable', no Tc, and the hours the remaining q-points would take are saved
    stop_if_unstable: bool = False
    # a spin-polarised scf (ferromagnetic start) of crystals with d- or f-block elements before
    # the phonons: a crystal that keeps a moment above the tolerance (Bohr magnetons per atom,
    # absolute magnetisation) gets status 'magnetic' and no phonons, since a non-spin-polarised
    # electron-phonon Tc would describe a state it is not in
    magnetism_check: bool = True
    magnetic_moment_tol: float = 0.05
    np: int = 1  # MPI ranks for pw.x and ph.x (mpirun when > 1)
    # irreducible q-points computed at once after the first (each with its own copy of the scf
    # scratch and np ranks, so q_workers * np cores); results equal one at a time
    q_workers: int = 1
    timeout_s: float = 6 * 3600.0  # per QE step (each ph.x q-point is one)
    pseudopotentials: dict[str, str] = field(default_factory=dict)  # element -> file name

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    "coarse": {},
    "standard": {
        "default_ecutwfc_ry": 45.0,
        "degauss_ry": 0.02,
        "k_spacing": 0.2,
        "fit_k_spacing": 0.08,
        "q_spacing": 0.35,
        "dos_q_spacing": 0.08,
        "dos_delta_cm1": 1.0,
        "conv_thr_ry": 1e-10,
        "tr2_ph": 1e-14,
        "press_conv_thr_kbar": 0.2,
        "timeout_s": 48 * 3600.0,
    },
}


def settings_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(VerifySettings)}


def make_settings(preset: Preset = "coarse", **overrides: Any) -> VerifySettings:
    """A preset with overrides (unknown names raise ValueError naming them)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    unknown = set(overrides) - settings_fields()
    if unknown:
        raise ValueError(f"unknown verify setting(s): {', '.join(sorted(unknown))}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return VerifySettings(preset=preset, **values)


def read_settings_toml(path: str | Path) -> dict[str, Any]:
    """Overrides from a TOML file: top-level keys named like the fields of VerifySettings.

    A ``[verify]`` table is used when present; ``[pseudopotentials]`` maps element to file.
    Raises ValueError naming the file on unreadable TOML or unknown keys.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read TOML ({exc})") from None
    table = dict(data.get("verify", data))
    if "verify" in data and "pseudopotentials" in data:  # a top-level table beside [verify]
        table.setdefault("pseudopotentials", data["pseudopotentials"])
    unknown = set(table) - settings_fields()
    if unknown:
        raise ValueError(f"{path}: unknown verify setting(s): {', '.join(sorted(unknown))}")
    return table
