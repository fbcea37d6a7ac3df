"""Pseudopotential discovery and choice: one UPF file per element, one functional for all.

The element, functional, kind (NC / US / PAW) and suggested cutoffs are read from each file's
header (UPF v1 and v2), not guessed from the file name. Choice, in order:

1. files given explicitly (``pseudopotentials = {Al = "Al.pz-vbc.UPF"}`` in a TOML config) win;
2. fully relativistic files (``relativistic="full"`` or ``rel-`` in the name: they need
   spin-orbit runs) and non-UPF files are skipped;
3. the functional must be the same for every element (pw.x refuses mixed ones); among the
   functionals that cover all elements the first of ``FUNCTIONAL_PREFERENCE`` wins (PBEsol as in
   the paper, then PBE, then LDA), else the one with the most files;
4. per element, within that functional: a file that suggests cutoffs (a norm-conserving file
   that suggests none may need far more than the preset's cutoff, e.g. Troullier-Martins carbon),
   then norm-conserving, then ultrasoft, then PAW (NC is the most robust in DFPT electron-phonon
   runs), then the newest pslibrary version in the name, then the name;
5. all-electron Coulomb potentials (``H.coulomb-ae.UPF``: ``is_coulomb``, type ``1/r``) are never
   chosen automatically (they need cutoffs of hundreds of Ry); name one explicitly to use it.

Every element without a usable file is listed in one :class:`PseudopotentialError`, raised before
anything runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DEBIAN_PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
PSEUDO_DIR_ENV = "TCDESIGN_PSEUDO_DIR"  # overrides the default folder
DEFAULT_HELP = (  # the --pseudo-dir flags' account of the default
    "default: $TCDESIGN_PSEUDO_DIR, else the SSSP library 'tcdesign fetch-pseudos' writes, "
    "else Debian's /usr/share/espresso/pseudo, which lacks most transition metals"
)
FUNCTIONAL_PREFERENCE = ("pbesol", "pbe", "lda")
KIND_PREFERENCE = ("NC", "US", "PAW")
HEADER_BYTES = 200_000  # headers sit at the top; PP_INFO can be long


class PseudopotentialError(ValueError):
    """No usable set of pseudopotentials for a structure (names every missing element, also in
    ``missing``)."""

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


@dataclass(frozen=True)
class Pseudopotential:
    """What a UPF file declares about itself; cutoffs in Ry (0 when the file suggests none)."""

    element: str
    path: Path
    functional: str  # normalised: pbesol, pbe, lda, or the file's own label in lower case
    kind: str  # NC, US, PAW, or AE (an all-electron Coulomb potential)
    wfc_cutoff_ry: float
    rho_cutoff_ry: float
    relativistic: str  # scalar, full, no or unknown

    @property
    def filename(self) -> str:
        return self.path.name

    def as_dict(self) -> dict[str, object]:
        return {
            "element": self.element,
            "file": self.filename,
            "path": str(self.path),
            "functional": self.functional,
            "kind": self.kind,
            "wfc_cutoff_ry": self.wfc_cutoff_ry,
            "rho_cutoff_ry": self.rho_cutoff_ry,
        }


def default_pseudo_dir() -> Path | None:
    """The pseudopotential folder used without ``--pseudo-dir``, the first of:
    ``$TCDESIGN_PSEUDO_DIR`` when set (as given, so that a wrong path is reported by name); the
    library ``tcdesign fetch-pseudos`` writes (:func:`tcdesign.verify.fetch.user_pseudo_dir`)
    when it exists; Debian's ``quantum-espresso-data`` folder; else None."""
    from tcdesign.verify.fetch import SOURCE_FILE, user_pseudo_dir

    if os.environ.get(PSEUDO_DIR_ENV):
        return Path(os.environ[PSEUDO_DIR_ENV])
    fetched = user_pseudo_dir()
    if (fetched / SOURCE_FILE).is_file():
        return fetched
    return DEBIAN_PSEUDO_DIR if DEBIAN_PSEUDO_DIR.is_dir() else None


def normalise_functional(label: str) -> str:
    """Map a UPF functional label (``SLA PW PBX PBC``, ``PBE``, ``SLA PZ NOGX NOGC``) to a name."""
    words = label.upper().replace("-", " ").split()
    joined = " ".join(words)
    if "PBESOL" in joined or {"PSX", "PSC"} & set(words):
        return "pbesol"
    if "PBE" in words or {"PBX", "PBC"} <= set(words):
        return "pbe"
    if joined in ("PZ", "LDA", "SLA PZ", "SLA PW") or (
        {"NOGX", "NOGC"} <= set(words) and ({"PZ", "PW", "VWN"} & set(words))
    ):
        return "lda"
    return "-".join(words).lower() or "unknown"


def _attribute(header: str, name: str) -> str | None:
    match = re.search(rf'\b{name}\s*=\s*"([^"]*)"', header, flags=re.IGNORECASE)
    return match.group(1).strip() if match else None


def _float(text: str | None) -> float:
    try:
        return float(str(text).lower().replace("d", "e"))
    except ValueError:
        return 0.0


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in ("T", "TRUE", ".TRUE.")


def _read_v2(text: str, path: Path) -> Pseudopotential | None:
    start = text.find("<PP_HEADER")
    end = text.find(">", start)
    if start < 0 or end < 0:
        return None
    header = text[start:end]
    element = _attribute(header, "element")
    if not element:
        return None
    kind = (_attribute(header, "pseudo_type") or "NC").upper()
    if _true(_attribute(header, "is_coulomb")) or kind == "1/R":
        kind = "AE"
    elif _true(_attribute(header, "is_paw")):
        kind = "PAW"
    elif kind == "USPP" or kind.startswith("US"):
        kind = "US"
    elif kind not in KIND_PREFERENCE:  # NC, and SL (semilocal norm-conserving)
        kind = "NC"
    return Pseudopotential(
        element=element.strip().capitalize(),
        path=path,
        functional=normalise_functional(_attribute(header, "functional") or ""),
        kind=kind,
        wfc_cutoff_ry=_float(_attribute(header, "wfc_cutoff")),
        rho_cutoff_ry=_float(_attribute(header, "rho_cutoff")),
        relativistic=(_attribute(header, "relativistic") or "unknown").lower(),
    )


def _read_v1(text: str, path: Path) -> Pseudopotential | None:
    start = text.find("<PP_HEADER>")
    end = text.find("</PP_HEADER>", start)
    if start < 0 or end < 0:
        return None
    lines = text[start:end].splitlines()[1:]
    element = functional = kind = None
    wfc = rho = 0.0
    for line in lines:
        lower = line.lower()
        if "element" in lower:
            element = line.split()[0]
        elif "exchange-correlation" in lower:
            functional = line.lower().split("exchange")[0]
        elif "pseudopotential" in lower:
            kind = line.split()[0].upper()
        elif "suggested cutoff" in lower:
            values = line.split()
            wfc, rho = _float(values[0]), _float(values[1])
    if not element:
        return None
    kind = {"NC": "NC", "US": "US", "PAW": "PAW"}.get(kind or "NC", "NC")
    return Pseudopotential(
        element.capitalize(),
        path,
        normalise_functional(functional or ""),
        kind,
        wfc,
        rho,
        "unknown",
    )


def read_upf_header(path: Path) -> Pseudopotential | None:
    """Header facts of one UPF file, or None when it is not a readable UPF file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(HEADER_BYTES)
    except OSError:
        return None
    if 'version="2' in text[:200] or "<PP_HEADER " in text or "<PP_HEADER\n" in text:
        return _read_v2(text, path)
    return _read_v1(text, path)


def scan_pseudo_dir(pseudo_dir: Path) -> dict[str, list[Pseudopotential]]:
    """Usable UPF files of a folder grouped by element (fully relativistic ones and all-electron
    Coulomb potentials skipped)."""
    found: dict[str, list[Pseudopotential]] = {}
    for path in sorted(Path(pseudo_dir).iterdir()):
        if not path.is_file() or path.suffix.lower() != ".upf":
            continue
        info = read_upf_header(path)
        if info is None or info.kind == "AE" or info.relativistic == "full" or ".rel-" in path.name:
            continue
        found.setdefault(info.element, []).append(info)
    return found


def _version(name: str) -> tuple[int, ...]:
    match = re.search(r"psl\.(\d+(?:\.\d+)*)", name)
    return tuple(int(v) for v in match.group(1).split(".")) if match else ()


def _rank(info: Pseudopotential) -> tuple:
    kind = KIND_PREFERENCE.index(info.kind) if info.kind in KIND_PREFERENCE else 9
    version = tuple(-v for v in _version(info.filename))
    return (0 if info.wfc_cutoff_ry > 0 else 1, kind, version, info.filename)


def choose_pseudopotentials(
    elements: list[str],
    pseudo_dir: Path,
    explicit: dict[str, str] | None = None,
) -> dict[str, Pseudopotential]:
    """One pseudopotential per element by the preference order of the module doc.

    Raises :class:`PseudopotentialError` naming every element without a usable file, or the
    functionals on offer when no single functional covers all elements.
    """
    pseudo_dir = Path(pseudo_dir)
    if not pseudo_dir.is_dir():
        raise PseudopotentialError(f"pseudopotential folder {pseudo_dir} does not exist")
    explicit = explicit or {}
    available = scan_pseudo_dir(pseudo_dir)
    chosen: dict[str, Pseudopotential] = {}
    problems = []
    for element in elements:
        if element not in explicit:
            continue
        info = read_upf_header(pseudo_dir / explicit[element])
        if info is None:
            problems.append(f"{element}: {pseudo_dir / explicit[element]} is not a readable UPF")
        else:
            chosen[element] = info
    missing = [e for e in elements if e not in chosen and e not in explicit and e not in available]
    if missing or problems:
        detail = "; ".join(problems)
        lacking = (
            f"no pseudopotential in {pseudo_dir} for {', '.join(missing)} ('tcdesign "
            "fetch-pseudos' gets SSSP, every element)"
            if missing
            else ""
        )
        raise PseudopotentialError("; ".join(p for p in (lacking, detail) if p), tuple(missing))
    remaining = [e for e in elements if e not in chosen]
    if not remaining:
        return chosen
    fixed = {p.functional for p in chosen.values()}
    candidates = set.intersection(*({p.functional for p in available[e]} for e in remaining))
    if fixed:
        candidates &= fixed
    if not candidates:
        offer = "; ".join(
            f"{e}: {', '.join(sorted({p.functional for p in available[e]}))}" for e in remaining
        )
        raise PseudopotentialError(
            f"no single functional covers {', '.join(elements)} in {pseudo_dir} ({offer})"
        )
    preferred = [f for f in FUNCTIONAL_PREFERENCE if f in candidates]
    functional = preferred[0] if preferred else sorted(candidates)[0]
    for element in remaining:
        options = [p for p in available[element] if p.functional == functional]
        chosen[element] = sorted(options, key=_rank)[0]
    return {e: chosen[e] for e in elements}
