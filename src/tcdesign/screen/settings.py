"""Settings of a screening run: the rules, the relaxation and how the work fans out.

Every field can be set from a TOML table (``tcdesign screen --config FILE``, a ``[screen]`` table
or top-level keys) or as keyword arguments; unknown names are an error that lists the valid ones.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

# fields that change what is computed per candidate; a rerun into the same folder must match them
STAGE_FIELDS = (
    "relax",
    "fmax",
    "max_steps",
    "optimizer",
    "symmetrize",
    "symprec",
    "tc_model",
    "eform_model",
    "gap_model",
)


NEF_MIN = 0.7  # states/eV/atom: benchmarks/fermi_dos.py, out of fold on the training crystals


@dataclass(frozen=True, kw_only=True)
class ScreenSettings:
    """Rules (paper defaults: Tc > 5 K, E_form < 0 eV/atom, gap < 0.05 eV) and run settings."""

    # rules
    tc_min: float = 5.0  # K; passes when tc - tc_sigma_k * tc_std >= tc_min
    eform_max: float | None = 0.0  # eV/atom; None: no formation-energy rule
    gap_max: float | None = 0.05  # eV; None: no gap rule
    ehull_max: float | None = None  # eV/atom above the hull; None: no hull rule
    tc_sigma_k: float = 0.0  # uncertainty-aware Tc rule: k standard deviations below the mean
    magmom_max: float | None = None  # Bohr magnetons per atom (CHGNet); None: no magnetism rule
    require_stable: bool = False  # pass only candidates without imaginary CHGNet phonon modes
    # CHGNet phonons (tcdesign.screen.phonons) of the candidates that pass the other rules
    phonons: bool = True
    phonon_tolerance: float = 10.0  # cm^-1; a mode below -this is imaginary
    # DFT N(E_F) (tcdesign.screen.electrons: one pw.x scf) of the candidates that pass the
    # other rules; needs Quantum ESPRESSO
    fermi_dos: bool = False
    pseudo_dir: str | None = None  # pseudopotential folder; None: Debian's QE folder
    # with fermi_dos, pass only candidates with N(E_F) >= this (states/eV/atom; None: no rule);
    # the default was set on the training crystals (benchmarks/fermi_dos.py)
    nef_min: float | None = NEF_MIN
    # with fermi_dos, pass only candidates whose spin-polarised scf keeps at most this moment
    # (Bohr magnetons per atom, the dft_magmom column; None: no rule)
    dft_magmom_max: float | None = None
    # relaxation (CHGNet + ASE)
    relax: bool = True  # False: energies of the input structures as they are
    fmax: float = 0.05  # eV/A, force convergence
    max_steps: int = 300  # optimiser step cap
    optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    symmetrize: bool = True  # keep the spglib-refined cell when CHGNet agrees it is no worse
    symprec: float = 0.1  # A, spglib tolerance
    # cost and scale
    prescreen_tc: float | None = None  # K; relax only candidates whose unrelaxed Tc >= this
    workers: int = 1  # local processes (ignored with a scheduler)
    scheduler: str | None = None  # dask.distributed scheduler address, e.g. tcp://host:8786
    threads: int = 0  # torch threads per worker process; 0: cores / workers
    batch_size: int = 32  # structures per Tc forward pass
    # where CHGNet and the Tc (and formation-energy) ensembles run: cpu, cuda, cuda:N, mps or
    # auto; the CGCNN gap model and the optimiser stay on the CPU
    device: str = "cpu"
    # models and references (None: the bundled / default ones)
    tc_model: str | None = None  # ensemble.pt for Tc
    eform_model: str | None = None  # ensemble.pt predicting formation energy (eV/atom)
    gap_model: str | None = None  # ensemble.pt predicting the band gap (eV)
    references: str | None = None  # reference energy table (default: bundled CHGNet table)
    # compound energies corrected to fit JARVIS formation energies, or as CHGNet gives them (MP)
    eform_scale: Literal["jarvis", "mp"] = "jarvis"
    hull_reference: Literal["chgnet", "mp"] = "chgnet"  # mp: Materials Project via mp-api
    # competing crystals per composition built from training prototypes and relaxed for the hull
    # of each candidate that passes the other rules (tcdesign.screen.prototypes); 0: none
    hull_prototypes: int = 0
    novelty_reference: str | None = None  # CSV of known crystals (default: bundled train.csv)

    def __post_init__(self) -> None:
        for name in ("tc_min", "tc_sigma_k", "fmax", "symprec", "phonon_tolerance"):
            _require_number(name, getattr(self, name))
        for name in (
            "eform_max",
            "gap_max",
            "ehull_max",
            "magmom_max",
            "prescreen_tc",
            "nef_min",
            "dft_magmom_max",
        ):
            value = getattr(self, name)
            if value is not None:
                _require_number(name, value)
        for name in ("max_steps", "workers", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if (
            not isinstance(self.hull_prototypes, int)
            or isinstance(self.hull_prototypes, bool)
            or self.hull_prototypes < 0
        ):
            raise ValueError(
                f"hull_prototypes must be an integer >= 0, got {self.hull_prototypes!r}"
            )
        if self.hull_prototypes and self.hull_reference == "mp":
            raise ValueError(
                "hull_prototypes extends the chgnet hull; the Materials Project hull "
                "(hull_reference mp) has its own competing phases"
            )
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {self.threads!r}")
        if self.fmax <= 0 or self.symprec <= 0:
            raise ValueError("fmax and symprec must be positive")
        if self.tc_sigma_k < 0:
            raise ValueError(f"tc_sigma_k must be >= 0, got {self.tc_sigma_k}")
        if self.eform_scale not in ("jarvis", "mp"):
            raise ValueError(f"eform_scale must be jarvis or mp, got {self.eform_scale!r}")
        if self.hull_reference not in ("chgnet", "mp"):
            raise ValueError(f"hull_reference must be chgnet or mp, got {self.hull_reference!r}")
        if self.optimizer not in ("FIRE", "BFGS"):
            raise ValueError(f"optimizer must be FIRE or BFGS, got {self.optimizer!r}")
        if not isinstance(self.device, str) or not self.device.strip():
            raise ValueError(f"device must be a name such as cpu or cuda, got {self.device!r}")
        if self.phonon_tolerance < 0:
            raise ValueError(f"phonon_tolerance must be >= 0, got {self.phonon_tolerance}")
        if self.require_stable and not self.phonons:
            raise ValueError("require_stable needs the phonon check (phonons = true)")
        for name in ("relax", "symmetrize", "phonons", "require_stable", "fermi_dos"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def stage_key(self) -> dict[str, Any]:
        """The settings a finished candidate depends on (compared when a run resumes)."""
        values = asdict(self)
        return {name: values[name] for name in STAGE_FIELDS}

    @classmethod
    def from_dict(cls, table: dict[str, Any], **overrides: Any) -> ScreenSettings:
        """Settings from a mapping (e.g. a TOML table); unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        merged = {**table, **overrides}
        unknown = sorted(set(merged) - names)
        if unknown:
            raise ValueError(
                f"unknown screen setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        return cls(**merged)


def _require_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def read_settings_toml(path: str | Path) -> dict[str, Any]:
    """The ``[screen]`` table of a TOML file, or its top-level keys when it has none."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("screen", data)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [screen] must be a table")
    return dict(table)
