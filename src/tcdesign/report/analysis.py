"""The numbers behind the report's figures: structure sets, Tc values, descriptors and the funnel.

Descriptors follow the paper's analysis (MISSION.md step 5): formula types, densities (g/cm^3,
``tcdesign.generate.metrics.densities``), packing fractions and the per-element probability that
a generated compound has predicted Tc above 3 K.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element, Structure

from tcdesign.data.io import TC_TARGET, parse_structure, read_structures
from tcdesign.generate import metrics
from tcdesign.report.rundata import MethodRun, RunData, as_bool, as_float

TRAINING_CSV = "data/bundled/train.csv"  # inside the tcdesign package
HEATMAP_TC = 3.0  # K; the paper's Fig. 1b counts generated compounds with predicted Tc above this
RADII_NOTE = (
    "empirical atomic radii of Slater (1964) as tabulated by pymatgen (Element.atomic_radius), "
    "calculated radii of Clementi et al. (1967) for elements without one"
)


@dataclass
class StructureSet:
    """A labelled set of structures with their reduced formulas (for the formula-type figure)."""

    label: str
    structures: list[Structure]

    @property
    def compositions(self) -> list[Composition]:
        return [s.composition for s in self.structures]


@dataclass
class TrainingData:
    """The bundled training split: structures and their DFT Tc (K)."""

    structures: list[Structure]
    tc: np.ndarray  # (n_structures,) DFT Tc in K


def training_csv() -> Path:
    """The bundled training split, the file of ``tcdesign.predict.api.bundled_csv("train")``,
    found without importing the predictor (and torch): a report of a screened run needs no
    model."""
    return Path(str(resources.files("tcdesign").joinpath(TRAINING_CSV)))


@lru_cache(maxsize=1)
def training_data() -> TrainingData:
    """The bundled JARVIS-DFT training split (parsed once per process, ~2 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = [r for r in read_structures(training_csv(), [TC_TARGET]) if r.ok]
    tc = np.array([r.targets.get(TC_TARGET, math.nan) for r in records], dtype=float)
    return TrainingData([r.structure for r in records], tc)


def _parse(text: object) -> Structure | None:
    if not isinstance(text, str) or not text.strip():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return parse_structure(text, "cif")
        except ValueError:
            return None


def read_cif_file(path: Path) -> Structure | None:
    """A structure from a CIF file, None when missing or unparsable."""
    try:
        return _parse(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None


def valid_generated(method: MethodRun) -> pd.DataFrame:
    """The generated rows with status ok (an empty frame when there is no generated.csv)."""
    if method.generated is None:
        return pd.DataFrame(columns=["id", "formula", "cif", "status"])
    return method.generated[method.generated.status == "ok"]


def generated_structure(method: MethodRun, row: pd.Series) -> Structure | None:
    """A generated row's structure: the ``cif`` column, else DIR/<method>/structures/ID.cif."""
    structure = _parse(row.get("cif"))
    if structure is None:
        structure = read_cif_file(method.folder / "structures" / f"{row['id']}.cif")
    return structure


def relaxed_path(method: MethodRun, row: pd.Series) -> Path | None:
    """The relaxed CIF of a screened row, when the file exists."""
    value = row.get("relaxed_cif")
    if not isinstance(value, str) or not value.strip():
        value = f"relaxed/{row['id']}.cif"
    path = Path(value) if Path(value).is_absolute() else method.folder / value
    return path if path.is_file() else None


def structure_path(method: MethodRun, row: pd.Series) -> Path | None:
    """The CIF to link for a candidate: relaxed when it exists, else the generated one."""
    relaxed = relaxed_path(method, row) if method.screened is not None else None
    if relaxed is not None:
        return relaxed
    generated = method.folder / "structures" / f"{row['id']}.cif"
    return generated if generated.is_file() else None


def generated_set(method: MethodRun) -> StructureSet:
    """Valid generated structures of a method (as sampled, before relaxation)."""
    rows = valid_generated(method)
    structures = [generated_structure(method, row) for _, row in rows.iterrows()]
    return StructureSet(f"generated ({method.name})", [s for s in structures if s is not None])


def relaxed_set(method: MethodRun) -> StructureSet:
    """Relaxed structures of the screened rows with status ok."""
    structures: list[Structure] = []
    if method.screened is not None:
        for _, row in method.screened[method.screened.status == "ok"].iterrows():
            path = relaxed_path(method, row)
            structure = read_cif_file(path) if path is not None else None
            if structure is not None:
                structures.append(structure)
    return StructureSet(f"relaxed ({method.name})", structures)


def formula_type(composition: Composition) -> str:
    """Stoichiometry pattern of a composition: A, AB, AB2, ABC, AB2C4, ... (letters in order of
    increasing amount in the reduced formula, pymatgen's anonymized formula)."""
    return composition.anonymized_formula


def num_elements_label(count: int) -> str:
    """'A' (unary), 'AB' (binary), 'ABC', 'ABCD', then '5+'."""
    return "ABCD"[:count] if 1 <= count <= 4 else "5+"


def atomic_radius(element: Element) -> float:
    """Atomic radius (A) used for packing fractions: see :data:`RADII_NOTE`; NaN when unknown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for value in (element.atomic_radius, element.atomic_radius_calculated):
            if value is not None and float(value) > 0:
                return float(value)
    return math.nan


def packing_fraction(structure: Structure) -> float:
    """Sum of the atoms' sphere volumes (4/3 pi r^3, r from :func:`atomic_radius`) over the cell
    volume; NaN when an element has no radius or the structure is broken."""
    if not metrics.is_usable(structure):
        return math.nan
    counts = structure.composition.element_composition.get_el_amt_dict()
    volume = sum(
        count * 4.0 / 3.0 * math.pi * atomic_radius(Element(symbol)) ** 3
        for symbol, count in counts.items()
    )
    return float(volume / structure.volume)


def packing_fractions(structures: Sequence[Structure]) -> np.ndarray:
    """Packing fraction of each structure; those with an element lacking a radius are left out."""
    values = np.array([packing_fraction(s) for s in structures], dtype=float)
    return values[np.isfinite(values)]


def unrelaxed_tc(method: MethodRun, predictor_cache: dict[str, object]) -> pd.DataFrame:
    """Predicted Tc (K) of each valid generated structure before relaxation.

    Columns ``id, formula, tc, tc_std, source``: from screened.csv's ``tc_unrelaxed`` where it has
    the row, otherwise predicted now with the bundled ensemble (``source`` says which). Rows of a
    screened.csv without generated.csv are used as they are.
    """
    frames = []
    screened_ids: set[str] = set()
    if method.screened is not None and "tc_unrelaxed" in method.screened.columns:
        screened = method.screened
        screened_ids = set(screened.id)
        std = screened["tc_unrelaxed_std"] if "tc_unrelaxed_std" in screened.columns else math.nan
        part = pd.DataFrame(
            {
                "id": screened.id,
                "formula": screened.formula if "formula" in screened.columns else "",
                "tc": as_float(screened.tc_unrelaxed),
                "tc_std": as_float(pd.Series(std, index=screened.index)),
                "source": "screened",
            }
        )
        frames.append(part[np.isfinite(part.tc)])
    todo = valid_generated(method)
    todo = todo[~todo.id.isin(screened_ids)]
    rows, structures = [], []
    for _, row in todo.iterrows():
        structure = generated_structure(method, row)
        if structure is not None:
            rows.append(row)
            structures.append(structure)
    if structures:
        if "ensemble" not in predictor_cache:
            from tcdesign.predict.ensemble import Ensemble

            predictor_cache["ensemble"] = Ensemble.load()
        tc, tc_std = predictor_cache["ensemble"].predict(structures)
        frames.append(
            pd.DataFrame(
                {
                    "id": [r["id"] for r in rows],
                    "formula": [s.composition.reduced_formula for s in structures],
                    "tc": np.asarray(tc, dtype=float),
                    "tc_std": np.asarray(tc_std, dtype=float),
                    "source": "predicted",
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["id", "formula", "tc", "tc_std", "source"])
    return pd.concat(frames, ignore_index=True)


def element_probabilities(
    formulas: Sequence[str], tc: Sequence[float], threshold: float = HEATMAP_TC
) -> pd.DataFrame:
    """Per element: compounds containing it (``n``), how many have Tc > ``threshold``
    (``n_above``) and the fraction (``probability``). Indexed by element symbol."""
    totals: dict[str, int] = {}
    above: dict[str, int] = {}
    for formula, value in zip(formulas, tc, strict=True):
        try:
            symbols = {e.symbol for e in Composition(formula).elements}
        except (ValueError, KeyError, TypeError):
            continue
        for symbol in symbols:
            totals[symbol] = totals.get(symbol, 0) + 1
            above[symbol] = above.get(symbol, 0) + int(value > threshold)
    frame = pd.DataFrame(
        {"n": pd.Series(totals, dtype=int), "n_above": pd.Series(above, dtype=int)}
    )
    frame["probability"] = frame.n_above / frame.n
    return frame


STAGES = (
    "generated",
    "valid",
    "relaxed",
    "passed",
    "verified",
    "dft_above",
    "stable",
    "dft_above_stable",
)
STAGE_LABELS = {
    "generated": "generated",
    "valid": "valid",
    "relaxed": "relaxed",
    "passed": "passed screening",
    "verified": "verified (DFT ok)",
    "dft_above": "DFT Tc > {tc_min:g} K",
    "stable": "dynamically stable",
    "dft_above_stable": "DFT Tc > {tc_min:g} K and stable",
}


def method_verify(run: RunData, method: str) -> pd.DataFrame | None:
    """The verify rows of one method (None without verify data)."""
    if run.verify is None:
        return None
    return run.verify[run.verify.method == method]


def funnel(run: RunData) -> pd.DataFrame:
    """Stage counts per method (rows: methods; columns: :data:`STAGES`; NaN = stage not run).

    generated: rows of generated.csv; valid: generated status ok; relaxed: screened status ok;
    passed: screened ``passed`` true; verified: verify status ok; dft_above: verified with DFT
    Tc above the run's tc_min; stable: verified and dynamically stable; dft_above_stable: both.
    """
    rows = {}
    for method in run.methods:
        counts: dict[str, float] = dict.fromkeys(STAGES, math.nan)
        if method.generated is not None:
            counts["generated"] = len(method.generated)
            counts["valid"] = int((method.generated.status == "ok").sum())
        if method.screened is not None:
            counts["relaxed"] = int((method.screened.status == "ok").sum())
            if "passed" in method.screened.columns:
                counts["passed"] = int(as_bool(method.screened.passed).sum())
        verify = method_verify(run, method.name)
        if verify is not None:
            ok = verify[verify.status == "ok"]
            above = ok.tc_K > run.tc_min
            counts["verified"] = len(ok)
            counts["dft_above"] = int(above.sum())
            counts["stable"] = int(ok.dynamically_stable.sum())
            counts["dft_above_stable"] = int((above & ok.dynamically_stable).sum())
        rows[method.name] = counts
    if run.verify is not None:
        orphans = run.verify[~run.verify.method.isin([m.name for m in run.methods])]
        if len(orphans):
            ok = orphans[orphans.status == "ok"]
            above = ok.tc_K > run.tc_min
            counts = dict.fromkeys(STAGES, math.nan)
            counts.update(
                verified=len(ok),
                dft_above=int(above.sum()),
                stable=int(ok.dynamically_stable.sum()),
                dft_above_stable=int((above & ok.dynamically_stable).sum()),
            )
            rows["unknown"] = counts
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(STAGES)).astype(float)
