"""Screening of candidate crystals: ``screen_records`` and ``screen_file``.

For every usable input structure: Tc of the unrelaxed structure (cheap, all rows); then, for the
candidates that pass the optional pre-screen, the worker stage of :mod:`tcdesign.screen.candidate`
(CHGNet relaxation, symmetry, energy, relaxed CIF), fanned out by :mod:`tcdesign.executor`; in
this process, as each candidate comes back, Tc (mean, std), the band gap, the formation energy and
the energy above the hull of the relaxed structure. Each finished candidate is appended to
``OUT/screen_progress.jsonl`` with a fingerprint of its input structure; a rerun into the same
folder reuses the rows whose input is unchanged and relaxes only the rest (the rules and the
references may change between runs: formation energies and hull distances are recomputed from
the stored CHGNet energies). At the end: with ``hull_prototypes``, the competing prototypes of
the chemical systems of the candidates that pass the other rules are relaxed
(:mod:`tcdesign.screen.prototypes`) and those candidates' hull distances recomputed with them;
with ``phonons`` (the default), the candidates that pass the other rules get CHGNet phonons
(:mod:`tcdesign.screen.phonons`, cached in ``OUT/phonons.jsonl``); with ``fermi_dos``, the
candidates that still pass get a DFT N(E_F) from one pw.x scf (:mod:`tcdesign.screen.electrons`,
cached in ``OUT/fermi_dos.jsonl``); then novelty against the
training crystals, duplicates among the candidates, the rules, and
``OUT/screened.csv`` sorted by Tc (highest first).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Composition, Structure
from tqdm.auto import tqdm

from tcdesign import jsonio
from tcdesign.data.io import InputError, StructureRecord, read_structures, unique_ids
from tcdesign.executor import run_tasks
from tcdesign.folder_settings import check_folder_settings
from tcdesign.generate.metrics import duplicate_groups, novel_flags
from tcdesign.screen.candidate import (
    CandidateJob,
    reference_energies,
    reference_set,
    screen_candidate,
)
from tcdesign.screen.gap import METAL_THRESHOLD, load_gap_model
from tcdesign.screen.hull import ReferenceSet
from tcdesign.screen.settings import ScreenSettings
from tcdesign.verify.executor import safe_name

PROGRESS_FILE = "screen_progress.jsonl"  # one finished candidate per line
STATE_FILE = "screen_settings.json"  # the per-candidate settings of the run in the folder
TABLE_FILE = "screened.csv"
STREAM_SECONDS = 5.0  # screened.csv is rewritten at most this often while candidates finish
# ... and at most once per this many times the last rewrite took (tables of many thousand rows)
STREAM_COST_FRACTION = 20.0
FINGERPRINT = "input_fingerprint"  # progress-row key: structure_fingerprint of the input

COLUMNS = [
    "id",
    "formula",
    "tc",  # K, bundled (or --tc-model) ensemble on the relaxed structure
    "tc_std",  # K, calibrated ensemble spread
    "e_form",  # eV/atom (CHGNet vs elemental references, or --eform-model)
    "gap",  # eV (CGCNN, 0 for predicted metals; or --gap-model)
    "e_hull",  # eV/atom above the hull (negative: below it)
    "spacegroup",  # Hermann-Mauguin symbol of the relaxed structure (spglib, symprec 0.1)
    "novel",  # matches no training crystal (StructureMatcher)
    "passed",  # ok, passes every rule and is not a duplicate
    "status",  # ok | failed | error | skipped
    "error",  # reason for failed/error rows; a note for ok rows
    "tc_unrelaxed",  # K, Tc of the input structure (every usable row)
    "tc_unrelaxed_std",
    "tc_lower",  # tc - tc_sigma_k * tc_std, the value the Tc rule uses
    "rules_failed",  # names of the rules a candidate fails, ';'-separated
    "duplicate_of",  # id of the earlier candidate this one matches
    "metallic",
    "p_metal",  # probability of being a metal (CGCNN classifier)
    "magmom",  # Bohr magnetons per atom: mean |site moment| CHGNet predicts (relaxed structure)
    "phonon_stable",  # no imaginary CHGNet phonon mode (candidates passing the other rules)
    "phonon_min_freq_cm1",  # lowest CHGNet phonon frequency, cm^-1 (imaginary: negative)
    "phonon_imaginary_fraction",  # mesh-weighted fraction of modes below -phonon_tolerance
    "phonon_error",  # why a phonon check could not be made
    "nef",  # DFT N(E_F), states/eV/atom (fermi_dos stage; candidates passing the other rules)
    "dft_magmom",  # Bohr magnetons per atom kept by a spin-polarised scf (fermi_dos stage)
    "nef_error",  # why the N(E_F) scf could not be made
    "e_form_chgnet",  # eV/atom, always the CHGNet value
    "e_form_source",
    "ehull_reference",  # which reference set the hull used
    "energy_per_atom",  # eV/atom, CHGNet
    "spacegroup_number",
    "spacegroup_initial",  # space group number of the input structure
    "symmetrized",  # the refined (symmetrised) cell was kept
    "nsites",
    "nsites_initial",
    "relax_steps",
    "relax_converged",
    "max_force",  # eV/A at the end of the relaxation
    "volume_change",  # relaxed / input volume
    "stage_seconds",  # wall time of relaxation, symmetry and energies for this candidate
    "relaxed_cif",  # path relative to the output folder
]
INTEGER_COLUMNS = [
    "spacegroup_number",
    "spacegroup_initial",
    "nsites",
    "nsites_initial",
    "relax_steps",
]
# numeric fields of a progress row: NaN is stored as JSON null and read back as NaN
FLOAT_FIELDS = (
    "tc",
    "tc_std",
    "gap",
    "p_metal",
    "e_form",
    "e_form_model",
    "e_form_chgnet",
    "e_hull",
    "energy_per_atom",
    "magmom",
    "max_force",
    "volume_change",
    "stage_seconds",
)


@lru_cache(maxsize=2)
def _known_structures(path: str | None) -> list[Structure]:
    from tcdesign.predict.api import bundled_csv

    records = read_structures(path or bundled_csv("train"))
    return [r.structure for r in records if r.ok]


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _file_stems(ids: Iterable[str]) -> dict[str, str]:
    """File stem (``OUT/relaxed/STEM.cif``) of each id, distinct for distinct ids.

    The stem is :func:`safe_name` (an id that is a safe file name is its own stem; any other id
    gets a short hash of the id, so ``JVASP 1`` never takes the file of an id ``JVASP_1``); an id
    equal to an earlier stem but for letter case gets the hash too (case-insensitive file
    systems). The stem of an id does not depend on the other ids unless they clash, so reruns
    name the same files.
    """
    stems: dict[str, str] = {}
    taken: set[str] = set()  # lower-case stems
    for rid in ids:
        stem = safe_name(rid)
        if stem.lower() in taken:
            stem = f"{stem}-{_short_hash(rid)}"
        taken.add(stem.lower())
        stems[rid] = stem
    return stems


def _fixed(value: float) -> str:
    return f"{round(float(value), 6) + 0.0:.6f}"  # + 0.0 turns -0.0 into 0.0


def _wrapped(coordinate: float) -> float:
    """A fractional coordinate in [0, 1) after rounding (0.9999999 and -1e-9 give 0)."""
    return round(float(coordinate) % 1.0, 6) % 1.0


def structure_fingerprint(structure: Structure) -> str:
    """A short sha256 (16 hex digits) of a structure: its lattice matrix and its sorted species
    and fractional coordinates (wrapped into [0, 1)), rounded to 1e-6; the order of the sites
    does not change it."""
    lattice = ",".join(_fixed(v) for v in np.asarray(structure.lattice.matrix).ravel())
    sites = sorted(
        f"{site.species_string}@" + ",".join(_fixed(_wrapped(x)) for x in site.frac_coords)
        for site in structure
    )
    return _short_hash(lattice + "|" + ";".join(sites), 16)


def _read_progress(path: Path) -> dict[str, dict[str, Any]]:
    """The last row of each id in a progress file (NaN fields come back as NaN, not None)."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    with path.open() as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut short
                continue
            for name in FLOAT_FIELDS:
                if name in row and row[name] is None:
                    row[name] = math.nan
            rows[row["id"]] = row
    return rows


def _split_progress(
    rows: dict[str, dict[str, Any]], fingerprints: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(rows to reuse, rows of an id whose input structure changed since they were computed).

    A row without a fingerprint (a progress file of an older tcdesign) counts as unchanged, and
    so do rows of ids that are not in ``fingerprints``.
    """
    reuse: dict[str, dict[str, Any]] = {}
    changed: dict[str, dict[str, Any]] = {}
    for rid, row in rows.items():
        stored = row.get(FINGERPRINT)
        if stored is not None and rid in fingerprints and stored != fingerprints[rid]:
            changed[rid] = row
        else:
            reuse[rid] = row
    return reuse, changed


def _write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``path`` (screened.csv) atomically: a temporary file in the same folder, then
    ``os.replace``, so a kill mid-write leaves the previous table whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        table.to_csv(temporary, index=False, float_format="%.6g")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _check_state(out_dir: Path, settings: ScreenSettings) -> None:
    """Refuse to mix candidates computed with other per-candidate settings in one folder."""
    check_folder_settings(
        out_dir,
        STATE_FILE,
        settings.stage_key(),
        (out_dir / PROGRESS_FILE).is_file(),
        f"choose another --out or delete {out_dir / PROGRESS_FILE}",
    )


def check_references(settings: ScreenSettings) -> None:
    """Load the reference energies and check what the hull and novelty references need, so that
    a bad table or a missing dependency is an :class:`InputError` before any work starts."""
    if settings.hull_reference == "mp":
        if not os.environ.get("MP_API_KEY"):
            raise InputError("hull_reference 'mp' needs a Materials Project API key in MP_API_KEY")
        try:
            import mp_api.client  # noqa: F401
        except ImportError:
            raise InputError(
                "hull_reference 'mp' needs the Materials Project client: pip install mp-api"
            ) from None
    try:
        reference_set(settings.references, settings.eform_scale)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        if settings.references is None:
            raise  # the bundled table: an internal error
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError | AttributeError):
            reason = f"not a reference table ({reason}; see tcdesign screen-references)"
        raise InputError(f"references {settings.references}: {reason}") from None
    if settings.novelty_reference is not None:
        try:
            known = _known_structures(settings.novelty_reference)
        except InputError as exc:
            raise InputError(f"novelty_reference {exc}") from None
        if not known:
            raise InputError(f"novelty_reference {settings.novelty_reference}: no usable structure")


class _Models:
    """The models applied in this process to each relaxed structure. Loading them also checks
    the references (:func:`check_references`)."""

    def __init__(self, settings: ScreenSettings) -> None:
        from tcdesign.devices import resolve_device
        from tcdesign.predict.ensemble import Ensemble

        check_references(settings)
        device = resolve_device(settings.device)
        self.tc = Ensemble.load(settings.tc_model).to(device)
        self.gap = load_gap_model(settings.gap_model, settings.gap_max or 0.05)
        self.eform = (
            Ensemble.load(settings.eform_model).to(device) if settings.eform_model else None
        )
        self.eform_source = (
            f"model:{Path(settings.eform_model).name}" if settings.eform_model else "chgnet"
        )

    def complete(self, row: dict[str, Any]) -> dict[str, Any]:
        """Add Tc, gap and the model formation energy to a finished worker row (the references
        come later, :func:`with_references`). A model that fails makes the row ``failed``."""
        if row.get("status") != "ok":
            return row
        try:
            structure = Structure.from_dict(row["relaxed_structure"])
            tc, tc_std = self.tc.predict([structure])
            gap, p_metal = self.gap.predict([structure])
            values = {
                "tc": float(tc[0]),
                "tc_std": float(tc_std[0]),
                "gap": float(gap[0]),
                "p_metal": float(p_metal[0]),
                "e_form_source": self.eform_source,
            }
            if self.eform is not None:
                values["e_form_model"] = float(self.eform.predict([structure])[0][0])
        except Exception as exc:  # one odd structure must not end the run
            return _failed(row, f"Tc/gap models: {type(exc).__name__}: {exc}")
        row.update(values)
        return row


def _failed(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """A copy of ``row`` with status failed and the reason (without the relaxed structure, so
    that the row is judged for neither novelty nor duplicates)."""
    failed = {k: v for k, v in row.items() if k != "relaxed_structure"}
    failed.update(status="failed", error=reason)
    return failed


def _referenced(
    row: dict[str, Any],
    settings: ScreenSettings,
    hull: ReferenceSet | None = None,
    composition: Composition | None = None,
) -> dict[str, Any]:
    """:func:`with_references` of a copy of ``row``; when the references fail for this row (e.g.
    the Materials Project cannot be reached), a failed copy with the reason. The stored row is
    left ok, so that a rerun tries the references again without relaxing."""
    try:
        return with_references(dict(row), settings, composition, hull)
    except Exception as exc:
        return _failed(row, f"formation energy/hull: {type(exc).__name__}: {exc}")


def with_references(
    row: dict[str, Any],
    settings: ScreenSettings,
    composition: Composition | None = None,
    hull: ReferenceSet | None = None,
) -> dict[str, Any]:
    """Set an ok row's ``e_form_chgnet``, ``e_hull``, ``ehull_reference`` and ``e_form`` (the
    formation-energy model's value when there is one) for the references in ``settings``
    (``hull``: another reference set for the hull)."""
    if row.get("status") != "ok":
        return row
    if composition is None:
        composition = _composition(row)
    row.update(reference_energies(composition, row["energy_per_atom"], settings, hull))
    row["e_form"] = row.get("e_form_model", row["e_form_chgnet"])
    return row


def _composition(row: dict[str, Any]) -> Composition:
    """The composition of an ok row's relaxed structure."""
    return Structure.from_dict(row["relaxed_structure"]).composition


def _with_prototype_hull(
    finished: dict[str, dict[str, Any]],
    out_dir: Path,
    settings: ScreenSettings,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """``finished`` with the hull of every ok candidate that passes the rules other than the hull
    rule recomputed against the references plus the competing prototypes of its chemical system
    (:mod:`tcdesign.screen.prototypes`, relaxed into ``out_dir/prototype_references.csv``)."""
    from tcdesign.predict.api import bundled_csv
    from tcdesign.screen import prototypes

    others = replace(settings, ehull_max=None)
    contenders = {
        key: _composition(row)
        for key, row in finished.items()
        if row.get("status") == "ok" and not rule_failures(row, others)
    }
    if not contenders:
        return finished
    systems = {frozenset(str(e) for e in c.elements) for c in contenders.values()}
    table = prototypes.build_prototypes(
        out_dir / prototypes.PROTOTYPE_TABLE,
        systems,
        [r for r in read_structures(bundled_csv("train")) if r.ok],
        per_composition=settings.hull_prototypes,
        min_count=prototypes.MIN_PATTERN_COUNT,
        fmax=settings.fmax,
        max_steps=settings.max_steps,
        workers=settings.workers,
        scheduler=settings.scheduler,
        threads=settings.threads,
        progress=progress,
    )
    hull = prototypes.with_prototypes(
        reference_set(settings.references, settings.eform_scale), table
    )
    return {
        key: _referenced(row, settings, hull, contenders[key]) if key in contenders else row
        for key, row in finished.items()
    }


def _contenders(
    finished: dict[str, dict[str, Any]], settings: ScreenSettings
) -> list[tuple[str, str, Structure]]:
    """``(id, input fingerprint, relaxed structure)`` of every ok candidate that passes the
    rules of ``settings``: the input of the stages that run only for those."""
    return [
        (key, str(row.get(FINGERPRINT, "")), Structure.from_dict(row["relaxed_structure"]))
        for key, row in finished.items()
        if row.get("status") == "ok" and not rule_failures(row, settings)
    ]


def _merged(
    finished: dict[str, dict[str, Any]],
    checks: dict[str, dict[str, Any]],
    columns: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """``finished`` with ``columns`` of each candidate's stage result, where it has one."""
    return {
        key: {**row, **{c: checks[key][c] for c in columns}} if key in checks else row
        for key, row in finished.items()
    }


def _with_phonons(
    finished: dict[str, dict[str, Any]],
    out_dir: Path,
    settings: ScreenSettings,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """``finished`` with the CHGNet phonon check (:mod:`tcdesign.screen.phonons`, cached in
    ``out_dir/phonons.jsonl``) of every ok candidate that passes the rules other than
    ``require_stable``."""
    from tcdesign.screen import phonons

    others = replace(settings, require_stable=False, nef_min=None, dft_magmom_max=None)
    contenders = _contenders(finished, others)
    if not contenders:
        return finished
    checks = phonons.check_candidates(
        contenders,
        out_dir,
        phonons.PhononSettings(tolerance_cm1=settings.phonon_tolerance),
        device=settings.device,
        workers=settings.workers,
        scheduler=settings.scheduler,
        threads=settings.threads,
        progress=progress,
    )
    return _merged(finished, checks, phonons.COLUMNS)


def fermi_dos_ready(settings: ScreenSettings) -> str:
    """The pseudopotential folder of the N(E_F) stage; :class:`InputError` when pw.x or the
    folder is missing (checked before anything runs)."""
    import shutil

    from tcdesign.verify.pseudo import default_pseudo_dir

    if shutil.which("pw.x") is None:
        raise InputError(
            "the N(E_F) stage needs Quantum ESPRESSO's pw.x on PATH "
            "(Debian/Ubuntu: apt-get install quantum-espresso)"
        )
    folder = settings.pseudo_dir or default_pseudo_dir()
    if folder is None or not Path(folder).is_dir():
        raise InputError(
            f"the N(E_F) stage needs a pseudopotential folder: {folder} does not exist"
            if folder
            else "the N(E_F) stage needs a pseudopotential folder (pseudo_dir / --pseudo-dir)"
        )
    return str(folder)


def _with_fermi_dos(
    finished: dict[str, dict[str, Any]],
    out_dir: Path,
    settings: ScreenSettings,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """``finished`` with N(E_F) (:mod:`tcdesign.screen.electrons`, cached in
    ``out_dir/fermi_dos.jsonl``) of every ok candidate that passes the rules other than
    ``nef_min`` and ``dft_magmom_max``."""
    from tcdesign.screen import electrons

    contenders = _contenders(finished, replace(settings, nef_min=None, dft_magmom_max=None))
    if not contenders:
        return finished
    checks = electrons.check_candidates(
        contenders,
        out_dir,
        fermi_dos_ready(settings),
        spin_min=settings.nef_min,  # below it a candidate fails whatever its moment
        workers=settings.workers,
        scheduler=settings.scheduler,
        progress=progress,
    )
    return _merged(finished, checks, electrons.COLUMNS)


def tc_lower_bound(row: dict[str, Any], settings: ScreenSettings) -> float:
    """The Tc the rule compares with tc_min: ``tc - tc_sigma_k * tc_std``, and ``tc`` itself
    when the rule ignores the spread (k = 0), also for a model without one (NaN std: a
    one-member ensemble)."""
    if settings.tc_sigma_k == 0:
        return row["tc"]
    return row["tc"] - settings.tc_sigma_k * row["tc_std"]


def rule_failures(row: dict[str, Any], settings: ScreenSettings) -> list[str]:
    """Names of the rules an ok candidate fails (tc, e_form, gap, e_hull, magmom, stable, nef,
    dft_magmom); NaN fails a rule."""
    failed = []
    tc_lower = tc_lower_bound(row, settings)
    if not tc_lower >= settings.tc_min:
        failed.append("tc")
    if settings.eform_max is not None and not row["e_form"] < settings.eform_max:
        failed.append("e_form")
    if settings.gap_max is not None and not row["gap"] < settings.gap_max:
        failed.append("gap")
    if settings.ehull_max is not None and not row["e_hull"] <= settings.ehull_max:
        failed.append("e_hull")
    if settings.magmom_max is not None and not row.get("magmom", math.nan) <= settings.magmom_max:
        failed.append("magmom")
    # unchecked candidates fail it only when they pass the rest (a check that could not be made)
    stable = row.get("phonon_stable")
    if settings.require_stable and (stable is False or (stable is not True and not failed)):
        failed.append("stable")
    if settings.fermi_dos:  # the same for a missing N(E_F) or moment
        for rule, column, limit, passes in (
            ("nef", "nef", settings.nef_min, lambda v, t: v >= t),
            ("dft_magmom", "dft_magmom", settings.dft_magmom_max, lambda v, t: v <= t),
        ):
            if limit is None:
                continue
            value = row.get(column)
            checked = isinstance(value, int | float) and math.isfinite(value)
            if (checked and not passes(value, limit)) or (not checked and not failed):
                failed.append(rule)
    return failed


def _original(
    rows: list[dict[str, Any]], members: list[int], failures: dict[int, list[str]]
) -> int:
    """The row a duplicate group keeps: among its ok rows, the one that passes the rules (first),
    with the highest Tc (then), earliest in the input (last); a group without an ok row keeps
    its first member."""
    ok = [i for i in members if rows[i].get("status") == "ok"]
    if not ok:
        return members[0]

    def rank(i: int) -> tuple[bool, float, int]:
        tc = rows[i].get("tc", math.nan)
        return bool(failures[i]), -tc if math.isfinite(tc) else math.inf, i

    return min(ok, key=rank)


def _finish(
    records: Sequence[StructureRecord],
    unrelaxed: dict[str, tuple[float, float]],
    finished: dict[str, dict[str, Any]],
    selected: set[str],
    settings: ScreenSettings,
    final: bool = True,
) -> pd.DataFrame:
    """The table: novelty, duplicates, rules, sorted by Tc.

    Duplicates: rows (ok candidates, and skipped ones as their input structure) that are the same
    crystal form a group; the best ok copy (:func:`_original`) stays, the others name it in
    ``duplicate_of`` and an ok one fails the ``duplicate`` rule. With ``final=False`` (the table
    streamed while a run goes on) it holds only the candidates finished so far, without the
    novelty and duplicate checks, which need all of them.
    """
    rows: list[dict[str, Any]] = []
    compared: list[Structure | None] = []  # structure judged for novelty and duplicates
    for record in records:
        row: dict[str, Any] = {"id": record.id, "formula": record.formula}
        if record.ok and record.id in selected and record.id not in finished:
            continue  # still to be screened (only while streaming)
        if not record.ok:
            row.update(status="error", error=record.error)
            compared.append(None)
        elif record.id in selected:
            done = dict(finished[record.id])
            structure = done.pop("relaxed_structure", None)
            done.pop(FINGERPRINT, None)
            row.update(done)
            if structure is not None and row.get("status") == "ok":
                relaxed = Structure.from_dict(structure)
                row["formula"] = relaxed.composition.reduced_formula
                compared.append(relaxed)
            else:
                compared.append(None)
        else:
            row.update(status="skipped", error="unrelaxed Tc below the pre-screen")
            compared.append(record.structure)
        if record.ok:
            row["tc_unrelaxed"], row["tc_unrelaxed_std"] = unrelaxed[record.id]
        rows.append(row)
    failures: dict[int, list[str]] = {}
    for index, row in enumerate(rows):
        if row.get("status") == "ok":
            row["metallic"] = bool(row["p_metal"] >= METAL_THRESHOLD)
            row["tc_lower"] = tc_lower_bound(row, settings)
            failures[index] = rule_failures(row, settings)
    if final:
        members = [i for i, structure in enumerate(compared) if structure is not None]
        usable = [compared[i] for i in members]
        novel = novel_flags(usable, _known_structures(settings.novelty_reference))
        groups: dict[int, list[int]] = defaultdict(list)
        for index, flag, group in zip(members, novel, duplicate_groups(usable), strict=True):
            rows[index]["novel"] = bool(flag)
            if group >= 0:  # -1: a broken structure, in no group
                groups[group].append(index)
        for group_members in groups.values():
            original = _original(rows, group_members, failures)
            for index in group_members:
                if index != original:
                    rows[index]["duplicate_of"] = rows[original]["id"]
    for index, row in enumerate(rows):
        if row.get("status") == "ok":
            failed = failures[index]
            if row.get("duplicate_of"):
                failed.append("duplicate")
            row["rules_failed"] = ";".join(failed)
            row["passed"] = not failed
            if not math.isfinite(row.get("e_form_chgnet", math.nan)):
                row["error"] = row.get("ehull_reference", "no reference energy")
        else:
            row["passed"] = False
    table = pd.DataFrame(rows, columns=COLUMNS)
    for column in INTEGER_COLUMNS:
        table[column] = table[column].astype("Int64")
    table["_order"] = np.arange(len(table))
    table = table.sort_values(["tc", "_order"], ascending=[False, True], na_position="last")
    return table.drop(columns="_order").reset_index(drop=True)


def screen_records(
    records: Sequence[StructureRecord],
    out_dir: str | Path,
    settings: ScreenSettings | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Screen records into ``out_dir``; write and return ``out_dir/screened.csv`` (see COLUMNS).

    Bad records are rows with ``status='error'``; a relaxation that fails, or a candidate whose
    models or references fail, is ``failed`` (the reason in ``error``); a candidate below the
    pre-screen is ``skipped``. The models and references are loaded first: a bad reference
    table, novelty reference or model, or a missing dependency, raises :class:`InputError`
    before anything runs.

    Resumable: candidates already in ``out_dir/screen_progress.jsonl`` (same per-candidate
    settings, else :class:`InputError`) are not recomputed. Each progress row stores a
    fingerprint of its input structure (:func:`structure_fingerprint`); ids repeat between
    inputs (row numbers, generated ids), so a row whose id is in the input but whose structure
    changed is not reused: that candidate is computed again (its stale relaxed CIF removed) and
    one line on stderr counts such rows. Rows written by an older tcdesign, without a
    fingerprint, are reused.
    """
    settings = settings or ScreenSettings()
    models = _Models(settings)  # before any work: bad models or references are an InputError
    if settings.fermi_dos:
        fermi_dos_ready(settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_state(out_dir, settings)
    records = unique_ids(records)  # records may come from the API, not read_structures
    good = [r for r in records if r.ok]
    unrelaxed: dict[str, tuple[float, float]] = {}
    if good:
        tc, tc_std = models.tc.predict([r.structure for r in good], settings.batch_size, progress)
        unrelaxed = {r.id: (float(m), float(s)) for r, m, s in zip(good, tc, tc_std, strict=True)}
    threshold = settings.prescreen_tc
    selected = [r for r in good if threshold is None or unrelaxed[r.id][0] >= threshold]
    chosen = {r.id for r in selected}
    fingerprints = {r.id: structure_fingerprint(r.structure) for r in selected}
    progress_path = out_dir / PROGRESS_FILE
    jsonio.drop_partial_line(progress_path)
    finished, changed = _split_progress(_read_progress(progress_path), fingerprints)
    _forget_changed(out_dir, changed, finished)
    if changed:
        print(
            f"tcdesign: {len(changed)} rows of {out_dir} changed input: recomputed",
            file=sys.stderr,
        )
    finished = {k: _referenced(v, settings) for k, v in finished.items() if k in chosen}
    todo = [r for r in selected if r.id not in finished]
    stems = _file_stems(r.id for r in records)
    # absolute: dask workers do not share this process's working directory
    where = str(out_dir.resolve())
    jobs = [CandidateJob(r.id, r.structure, stems[r.id], where, settings) for r in todo]
    counts = {"ok": 0, "failed": 0, "passing": 0}
    # what the bar counts as passing: the rules before the phonon and N(E_F) stages
    before_phonons = replace(settings, require_stable=False, nef_min=None, dft_magmom_max=None)
    bar = tqdm(
        total=len(selected),
        initial=len(selected) - len(todo),
        desc="screen",
        unit="structure",
        disable=not progress,
    )
    # with worker processes on every core, this process's per-candidate Tc and gap predictions
    # take one thread, so that they do not fight the relaxations for the cores
    last_written = -math.inf
    stream_every = STREAM_SECONDS
    busy_cores = settings.workers > 1 or settings.scheduler is not None
    threads_before = torch.get_num_threads()
    if busy_cores:
        torch.set_num_threads(1)
    try:
        with progress_path.open("a") as handle:
            for outcome in run_tasks(
                screen_candidate,
                jobs,
                workers=settings.workers,
                scheduler=settings.scheduler,
                threads=settings.threads,
            ):
                job = jobs[outcome.index]
                if outcome.error is not None:
                    row: dict[str, Any] = {"id": job.id, "status": "failed", "error": outcome.error}
                else:
                    row = models.complete(outcome.value)
                row[FINGERPRINT] = fingerprints[job.id]
                shown = _referenced(row, settings)
                stored = shown if shown["status"] == row["status"] else row
                handle.write(jsonio.dumps(stored) + "\n")
                handle.flush()
                finished[job.id] = shown
                if time.monotonic() - last_written > stream_every:
                    started = time.monotonic()
                    streamed = _finish(records, unrelaxed, finished, chosen, settings, final=False)
                    _write_table(streamed, out_dir / TABLE_FILE)
                    last_written = time.monotonic()
                    # a huge run spends at most ~1/STREAM_COST_FRACTION of its time streaming
                    cost = last_written - started
                    stream_every = max(STREAM_SECONDS, cost * STREAM_COST_FRACTION)
                counts["ok" if shown["status"] == "ok" else "failed"] += 1
                if shown["status"] == "ok" and not rule_failures(shown, before_phonons):
                    counts["passing"] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update(1)
    finally:
        torch.set_num_threads(threads_before)
        bar.close()
    # rows as they were written, so a resumed run builds exactly the same table
    finished, _ = _split_progress(_read_progress(progress_path), fingerprints)
    finished = {k: _referenced(v, settings) for k, v in finished.items() if k in chosen}
    if settings.hull_prototypes:
        finished = _with_prototype_hull(finished, out_dir, settings, progress)
    if settings.phonons:
        finished = _with_phonons(finished, out_dir, settings, progress)
    if settings.fermi_dos:
        finished = _with_fermi_dos(finished, out_dir, settings, progress)
    table = _finish(records, unrelaxed, finished, chosen, settings)
    _write_table(table, out_dir / TABLE_FILE)
    return table


def _forget_changed(
    out_dir: Path, changed: dict[str, dict[str, Any]], kept: dict[str, dict[str, Any]]
) -> None:
    """Remove the relaxed CIFs of rows whose input changed (unless a kept row names the same
    file), so that no file of another crystal stays under the id when it now fails."""
    in_use = {row.get("relaxed_cif") for row in kept.values()}
    for row in changed.values():
        relative = row.get("relaxed_cif")
        if isinstance(relative, str) and relative and relative not in in_use:
            path = out_dir / relative
            if path.resolve().is_relative_to(out_dir.resolve()):
                path.unlink(missing_ok=True)


def screen_file(
    input_path: str | Path,
    out_dir: str | Path,
    settings: ScreenSettings | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Read an input (CSV, CIF/POSCAR or folder), report bad rows on stderr, screen it."""
    from tcdesign.predict.api import report_bad_rows

    records = read_structures(input_path)
    report_bad_rows(records, limit=20)
    return screen_records(records, out_dir, settings, progress)
