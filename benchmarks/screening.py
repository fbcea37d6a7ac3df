"""Benchmark screening: formation energy vs JARVIS, metallicity, Tc-rule precision, speed.

1. ``tcdesign screen`` on the bundled validation crystals (105; relaxed now with CHGNet): formation
   energy MAE against the JARVIS OptB88vdW values of dft_labels.csv, metal accuracy of the gap
   model, precision and recall of the Tc >= 5 K rule (alone and with E_form/gap, with and without
   the uncertainty-aware option) against the DFT Tc, seconds per relaxed structure.
2. Formation energy MAE of the 846 training crystals from the CHGNet reference table (relaxed when
   the table was built, same settings).
3. Metallicity on labelled non-metals: the non-metals of dft_labels.csv (gap > 0.05 eV) plus
   textbook semiconductors and insulators built here with their experimental lattice constants
   (all non-metals; experimental gaps from standard tables), and textbook elemental metals.
4. The CHGNet phonon check (:mod:`tcdesign.screen.phonons`): on every relaxed val crystal (how
   often the DFT Tc exceeds 5 K among the stable and the unstable ones; the full rule with
   ``require_stable``), and against the dynamical stability Quantum ESPRESSO found for the
   crystals of ``verify_jarvis.json`` (relaxed with CHGNet as the screen does) and the
   candidates of ``verify_candidates.json`` (their relaxed cells from the frozen run).
5. With ``--fermi-dos PSEUDO_DIR`` (needs pw.x): the optional DFT N(E_F) stage
   (:mod:`tcdesign.screen.electrons`) on the val crystals that pass the full rule, as ``tcdesign
   screen --fermi-dos`` runs it, and the full rule with ``nef_min``: the threshold ``--nef-min``,
   by default the one ``benchmarks/fermi_dos.py`` set on the training crystals
   (``fermi_dos.json``), never one chosen on val; also with ``dft_magmom_max`` 0.05 (the moment
   a spin-polarised scf keeps; JARVIS's Tc labels come from non-spin-polarised runs).

Writes benchmarks/results/screen.json and prints a table. Usage:
    python benchmarks/screening.py [--workers 1] [--limit N] [--out PATH] [--fermi-dos DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ase.build import bulk
from pymatgen.core import Composition
from pymatgen.io.ase import AseAtomsAdaptor

from tcdesign.data.io import read_structures
from tcdesign.predict.api import bundled_csv
from tcdesign.screen import ScreenSettings, electrons, phonons, screen_records
from tcdesign.screen.api import rule_failures, structure_fingerprint
from tcdesign.screen.gap import load_gap_model
from tcdesign.screen.hull import ReferenceSet
from tcdesign.screen.references import (
    elemental_energies,
    fit_element_corrections,
    load_references,
)

RESULTS = Path(__file__).parent / "results" / "screen.json"
TC_RULE = 5.0  # K
# anions whose Materials Project (MP2020) energy corrections CHGNet learned; JARVIS has none
CORRECTED_ANIONS = {"O", "F", "Cl", "Br", "I", "N", "H", "S", "Se", "Te", "Sb"}
METAL_GAP = 0.05  # eV; a gap below this is a metal (the paper's rule)
MAGNETIC = 0.05  # Bohr magnetons per atom a spin-polarised scf keeps (verify's tolerance)

# (name, ase.build.bulk arguments, experimental gap in eV): non-metals with textbook structures
NON_METALS = [
    ("Si", ("Si", "diamond", 5.431), 1.12),
    ("Ge", ("Ge", "diamond", 5.658), 0.66),
    ("C", ("C", "diamond", 3.567), 5.47),
    ("SiC", ("SiC", "zincblende", 4.360), 2.36),
    ("BN", ("BN", "zincblende", 3.615), 6.4),
    ("AlP", ("AlP", "zincblende", 5.463), 2.45),
    ("AlAs", ("AlAs", "zincblende", 5.661), 2.16),
    ("GaP", ("GaP", "zincblende", 5.451), 2.26),
    ("GaAs", ("GaAs", "zincblende", 5.653), 1.42),
    ("InP", ("InP", "zincblende", 5.869), 1.34),
    ("ZnS", ("ZnS", "zincblende", 5.409), 3.68),
    ("ZnSe", ("ZnSe", "zincblende", 5.668), 2.70),
    ("CdTe", ("CdTe", "zincblende", 6.482), 1.50),
    ("CuCl", ("CuCl", "zincblende", 5.406), 3.4),
    ("NaCl", ("NaCl", "rocksalt", 5.640), 8.5),
    ("KCl", ("KCl", "rocksalt", 6.293), 8.4),
    ("LiF", ("LiF", "rocksalt", 4.027), 13.6),
    ("NaF", ("NaF", "rocksalt", 4.634), 11.5),
    ("MgO", ("MgO", "rocksalt", 4.212), 7.8),
    ("CaO", ("CaO", "rocksalt", 4.811), 7.0),
    ("SrO", ("SrO", "rocksalt", 5.160), 5.9),
    ("BaO", ("BaO", "rocksalt", 5.523), 4.4),
    ("KBr", ("KBr", "rocksalt", 6.600), 7.4),
    ("AgCl", ("AgCl", "rocksalt", 5.550), 3.25),
    ("PbS", ("PbS", "rocksalt", 5.936), 0.41),
    ("CaF2", ("CaF2", "fluorite", 5.463), 12.0),
    ("ZnO", ("ZnO", "wurtzite", 3.250, 5.207), 3.37),
    ("GaN", ("GaN", "wurtzite", 3.189, 5.185), 3.4),
    ("AlN", ("AlN", "wurtzite", 3.112, 4.982), 6.2),
]
METALS = [
    ("Al", ("Al", "fcc", 4.046)),
    ("Cu", ("Cu", "fcc", 3.615)),
    ("Nb", ("Nb", "bcc", 3.301)),
    ("V", ("V", "bcc", 3.024)),
    ("Pb", ("Pb", "fcc", 4.950)),
    ("W", ("W", "bcc", 3.165)),
    ("NbC", ("NbC", "rocksalt", 4.470)),
    ("TiN", ("TiN", "rocksalt", 4.240)),
]


def build(arguments: tuple) -> object:
    name, kind, a, *rest = arguments
    options = {"c": rest[0]} if rest else {}
    return AseAtomsAdaptor.get_structure(bulk(name, kind, a=a, **options))


def without_corrected_anions(formulas: pd.Series) -> np.ndarray:
    """True for compositions free of the anions that MP2020 corrects (mostly intermetallics)."""
    return np.array(
        [not CORRECTED_ANIONS & {str(e) for e in Composition(f).elements} for f in formulas]
    )


def without(val: dict, train: dict) -> str:
    key = "eform_mae_without_corrected_anions"
    return (
        f"{val[key]:.3f} (n={val['eform_n_without_corrected_anions']}) / "
        f"{train[key]:.3f} (n={train['eform_n_without_corrected_anions']}) eV/atom"
    )


def nonmetal_split(metallicity: dict) -> str:
    jarvis = metallicity["nonmetal_jarvis_n"]
    missed = metallicity["nonmetals_called_metal"]
    jarvis_missed = sum(name.startswith("JVASP") for name in missed)
    textbook = metallicity["nonmetals_n"] - jarvis
    return (
        f"{textbook - (len(missed) - jarvis_missed)}/{textbook} / {jarvis - jarvis_missed}/{jarvis}"
    )


def train_mae(result: dict) -> str:
    return f"{result['eform_mae_eV_per_atom']:.3f}"


def cross_validated_jarvis_scale(references: pd.DataFrame, labels: pd.Series, folds: int = 5):
    """Formation-energy errors of the labelled training compounds on the JARVIS-fitted scale,
    each fold scored with element corrections fitted on the other folds."""
    labels = labels[np.isfinite(labels)]
    train = references[(references.kind == "train") & references["id"].isin(labels.index)]
    train = train[[len(Composition(f).elements) > 1 for f in train.formula]]
    mu = elemental_energies(references)
    fold = np.random.default_rng(0).permutation(len(train)) % folds
    errors = []
    for k in range(folds):
        fitted = fit_element_corrections(train[fold != k], labels, mu)
        scale = ReferenceSet("fold", mu, [], fitted)
        for material_id, formula, energy in train[fold == k][
            ["id", "formula", "energy_per_atom"]
        ].itertuples(index=False):
            errors.append(
                scale.formation_energy(Composition(formula), energy) - labels[material_id]
            )
    errors = np.array(errors)
    errors = errors[np.isfinite(errors)]
    return {
        "eform_mae_eV_per_atom": float(np.mean(np.abs(errors))),
        "eform_median_abs_error": float(np.median(np.abs(errors))),
        "eform_mean_signed_error": float(np.mean(errors)),
        "eform_n": len(errors),
        "folds": folds,
    }


def rule_stats(table: pd.DataFrame, truth: pd.Series, settings: ScreenSettings, tc_only: bool):
    """Precision and recall of 'passes' against DFT Tc >= 5 K over the relaxed val crystals."""
    ok = table[table.status == "ok"]
    if tc_only:
        settings = replace(settings, eform_max=None, gap_max=None, ehull_max=None)
    passed = np.array([not rule_failures(row, settings) for row in ok.to_dict("records")])
    positive = ok.id.map(truth).to_numpy() >= TC_RULE
    true_positive = int(np.sum(passed & positive))
    return {
        "passed": int(passed.sum()),
        "precision": true_positive / max(int(passed.sum()), 1),
        "recall": true_positive / max(int(positive.sum()), 1),
        "dft_positives": int(positive.sum()),
    }


def val_phonons(table: pd.DataFrame, val: list, folder: str, truth: pd.Series) -> dict:
    """The phonon check of every relaxed val crystal (cached in the screening folder) and how
    the DFT Tc splits between the stable and the unstable ones."""
    from pymatgen.core import Structure

    records = {r.id: r for r in val}
    ok = table[table.status == "ok"]
    candidates = [
        (rid, structure_fingerprint(records[rid].structure), Structure.from_file(Path(folder) / c))
        for rid, c in zip(ok.id, ok.relaxed_cif, strict=True)
    ]
    checks = phonons.check_candidates(candidates, folder, progress=True)
    seconds = [check.get("phonon_seconds", np.nan) for check in checks.values()]
    stable = pd.Series({k: v["phonon_stable"] for k, v in checks.items()})
    checked = stable[stable.notna()].astype(bool)
    above = truth.reindex(checked.index) >= TC_RULE
    return {
        "checked": len(checked),
        "not_checked": int(stable.isna().sum()),
        "stable": int(checked.sum()),
        "dft_above_5K_among_stable": float(above[checked].mean()),
        "dft_above_5K_among_unstable": float(above[~checked].mean()),
        "seconds_median": float(np.nanmedian(seconds)),
    }


def phonons_vs_dft(train_records: dict, val_records: dict) -> list[dict]:
    """CHGNet's stability call beside Quantum ESPRESSO's for every finished DFT crystal."""
    from pymatgen.core import Structure

    from tcdesign.screen.relax import relax_structure

    results = Path(__file__).parent / "results"
    rows = []
    jarvis = json.loads((results / "verify_jarvis.json").read_text())["crystals"]
    for crystal in jarvis:
        if crystal.get("status") != "ok":
            continue
        record = train_records.get(crystal["id"]) or val_records.get(crystal["id"])
        relaxed = relax_structure(record.structure).structure
        rows.append((crystal, relaxed))
    candidates = json.loads((results / "verify_candidates.json").read_text())["candidates"]
    run = Path(__file__).parent / "dft" / "candidates" / "source_run"
    ranked = pd.read_csv(run / "candidates.csv", dtype={"id": str})
    for crystal in candidates:
        if crystal.get("status") != "ok":
            continue
        source = crystal["id"].rsplit("-", 1)[0]  # gen-00062-VRu -> gen-00062
        cif = ranked.set_index("id").loc[source, "cif"]
        rows.append((crystal, Structure.from_file(run / cif)))
    compared = []
    for crystal, structure in rows:
        check = phonons.phonon_check(structure)
        compared.append(
            {
                "id": crystal["id"],
                "formula": crystal["formula"],
                "dft_stable": bool(crystal["dynamically_stable"]),
                "dft_min_freq_cm1": crystal["min_freq_cm1"],
                "chgnet_stable": check["phonon_stable"],
                "chgnet_min_freq_cm1": check["phonon_min_freq_cm1"],
            }
        )
    return compared


def val_fermi_dos(
    table: pd.DataFrame, val: list, folder: str, truth: pd.Series, pseudo_dir: str, nef_min: float
) -> dict:
    """The N(E_F) stage on the val crystals that pass the full rule (cached in the screening
    folder), and the full rule with ``nef_min``."""
    from pymatgen.core import Structure

    records = {r.id: r for r in val}
    ok = table[table.status == "ok"]
    passing = ok[[not rule_failures(row, ScreenSettings()) for row in ok.to_dict("records")]]
    candidates = [
        (rid, structure_fingerprint(records[rid].structure), Structure.from_file(Path(folder) / c))
        for rid, c in zip(passing.id, passing.relaxed_cif, strict=True)
    ]
    checks = electrons.check_candidates(candidates, folder, pseudo_dir, progress=True)
    with_nef = table.copy()
    for column in electrons.COLUMNS[:2]:  # nef, dft_magmom
        values = {k: v[column] for k, v in checks.items()}
        with_nef[column] = with_nef.id.map(values).astype(float)
    settings = ScreenSettings(fermi_dos=True, nef_min=nef_min)
    nonmagnetic = ScreenSettings(fermi_dos=True, nef_min=nef_min, dft_magmom_max=MAGNETIC)
    return {
        "nef_min": nef_min,
        "dft_magmom_max": MAGNETIC,
        "full_rule_nef": rule_stats(with_nef, truth, settings, tc_only=False),
        "full_rule_nef_nonmagnetic": rule_stats(with_nef, truth, nonmagnetic, tc_only=False),
        "seconds_median": float(
            np.nanmedian([c.get("nef_seconds", np.nan) for c in checks.values()])
        ),
        "crystals": [
            {
                "id": rid,
                "formula": formula,
                "nef": checks[rid]["nef"],
                "dft_magmom": checks[rid]["dft_magmom"],
                "nef_error": checks[rid]["nef_error"],
                "tc_predicted": float(tc),
                "tc_jarvis": float(truth[rid]),
            }
            for rid, formula, tc in zip(passing.id, passing.formula, passing.tc, strict=True)
        ],
    }


def trained_nef_threshold() -> float:
    """The N(E_F) threshold benchmarks/fermi_dos.py set on the training crystals."""
    study = json.loads((RESULTS.parent / "fermi_dos.json").read_text())["feature_study"]
    return float(study["nef_threshold_rule"]["threshold_states_per_eV_atom"])


def phonon_share(stats: dict) -> str:
    return f"{stats['stable']} of {stats['checked']} ({stats['seconds_median']:.1f} s median)"


def phonon_tc(stats: dict) -> str:
    stable, unstable = stats["dft_above_5K_among_stable"], stats["dft_above_5K_among_unstable"]
    return f"{stable:.1%} / {unstable:.1%}"


def phonon_agreement(rows: list[dict]) -> str:
    agree = [r["formula"] for r in rows if r["dft_stable"] == r["chgnet_stable"]]
    differ = [r["formula"] for r in rows if r["dft_stable"] != r["chgnet_stable"]]
    return f"{len(agree)} of {len(rows)} (differ: {', '.join(differ) or 'none'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="screening processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="first N val crystals only")
    parser.add_argument("--keep", default=None, help="screening folder (default: temporary)")
    parser.add_argument("--out", default=str(RESULTS), help="result JSON path")
    parser.add_argument(
        "--fermi-dos",
        default=None,
        metavar="PSEUDO_DIR",
        help="also run the DFT N(E_F) stage (pw.x) on the val crystals that pass the full rule",
    )
    parser.add_argument(
        "--nef-min",
        type=float,
        default=None,
        help="N(E_F) threshold, states/eV/atom (default: the one set on train in fermi_dos.json)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    labels_csv = Path(bundled_csv("val")).parent / "dft_labels.csv"
    labels = pd.read_csv(labels_csv, dtype={"material_id": str})
    labels = labels.set_index("material_id")
    val = read_structures(bundled_csv("val"), ["tc"])[: args.limit]
    truth = pd.Series({r.id: r.targets.get("tc", np.nan) for r in val})

    # 1. screen the val crystals
    settings = ScreenSettings(workers=args.workers, threads=args.threads)
    folder = args.keep or tempfile.mkdtemp(prefix="screen-bench-")
    started = time.perf_counter()
    table = screen_records(val, folder, settings, progress=True)
    seconds = time.perf_counter() - started
    ok = table[table.status == "ok"].set_index("id")
    joined = ok.join(labels, how="inner")
    has_eform = joined.formation_energy_peratom.notna() & joined.e_form.notna()
    eform_error = (joined.e_form - joined.formation_energy_peratom)[has_eform]
    mp_scale = ReferenceSet.load(scale="mp")
    eform_mp = np.array(
        [
            mp_scale.formation_energy(Composition(f), e)
            for f, e in zip(joined.formula, joined.energy_per_atom, strict=True)
        ]
    )
    eform_mp_error = (eform_mp - joined.formation_energy_peratom.to_numpy())[has_eform.to_numpy()]
    plain = without_corrected_anions(joined.formula[has_eform])
    steps = ok.relax_steps.astype(float)
    val_result = {
        "n": len(table),
        "relaxed_ok": len(ok),
        "failed": int((table.status == "failed").sum()),
        "eform_mae_eV_per_atom": float(eform_error.abs().mean()),
        "eform_median_abs_error": float(eform_error.abs().median()),
        "eform_mean_signed_error": float(eform_error.mean()),
        "eform_n": int(has_eform.sum()),
        "eform_mae_without_corrected_anions": float(eform_error[plain].abs().mean()),
        "eform_n_without_corrected_anions": int(plain.sum()),
        "eform_scale": settings.eform_scale,
        "eform_mae_mp_scale": float(np.mean(np.abs(eform_mp_error))),
        "eform_mean_signed_error_mp_scale": float(np.mean(eform_mp_error)),
        "metal_accuracy": float(
            (joined.gap < METAL_GAP)[joined.optb88vdw_bandgap < METAL_GAP].mean()
        ),
        "metals_n": int((joined.optb88vdw_bandgap < METAL_GAP).sum()),
        "tc_rule": rule_stats(table, truth, ScreenSettings(), tc_only=True),
        "tc_rule_sigma1": rule_stats(table, truth, ScreenSettings(tc_sigma_k=1.0), tc_only=True),
        "full_rule": rule_stats(table, truth, ScreenSettings(), tc_only=False),
        "full_rule_sigma1": rule_stats(table, truth, ScreenSettings(tc_sigma_k=1.0), False),
        "full_rule_by_k": {
            k: rule_stats(table, truth, ScreenSettings(tc_sigma_k=k), False) for k in (0.1, 0.25)
        },
        "full_rule_require_stable": rule_stats(
            table, truth, ScreenSettings(require_stable=True), False
        ),
        "novel_fraction": float(ok.novel.astype(bool).mean()),
        "non_p1_fraction": float((ok.spacegroup_number != 1).mean()),
        "relax_steps_median": float(steps.median()),
        "stage_seconds_mean": float(ok.stage_seconds.mean()),
        "stage_seconds_median": float(ok.stage_seconds.median()),
        "wall_seconds_this_run": seconds,
    }

    # 2. formation energy of the training crystals from the reference table: CHGNet's scale, and
    # the JARVIS-fitted scale cross-validated (corrections fitted without the crystals scored)
    references = load_references()
    reference_set = ReferenceSet.from_table(references)
    train_result_jarvis = cross_validated_jarvis_scale(references, labels.formation_energy_peratom)
    train_rows = references[references.kind == "train"].set_index("id").join(labels, how="inner")
    train_eform = np.array(
        [
            reference_set.formation_energy(Composition(f), e)
            for f, e in zip(train_rows.formula, train_rows.energy_per_atom, strict=True)
        ]
    )
    train_error = train_eform - train_rows.formation_energy_peratom.to_numpy()
    finite = np.isfinite(train_error)
    plain = without_corrected_anions(train_rows.formula)[finite]
    train_error = train_error[finite]
    train_result = {
        "eform_mae_eV_per_atom": float(np.mean(np.abs(train_error))),
        "eform_mean_signed_error": float(np.mean(train_error)),
        "eform_mae_without_corrected_anions": float(np.mean(np.abs(train_error[plain]))),
        "eform_n_without_corrected_anions": int(plain.sum()),
        "eform_median_abs_error": float(np.median(np.abs(train_error))),
        "eform_n": len(train_error),
        "scale": "mp",
        "jarvis_scale_5fold": train_result_jarvis,
    }

    # 3. metallicity on labelled non-metals and metals
    model = load_gap_model()
    train_records = {r.id: r for r in read_structures(bundled_csv("train"))}
    val_records = {r.id: r for r in val}
    jarvis_nonmetals = [
        (mid, (train_records.get(mid) or val_records.get(mid)).structure, float(gap))
        for mid, gap in labels.optb88vdw_bandgap.items()
        if gap >= METAL_GAP and (mid in train_records or mid in val_records)
    ]
    textbook = [(name, build(spec), gap) for name, spec, gap in NON_METALS]
    nonmetal_set = jarvis_nonmetals + textbook
    predicted_gap, p_metal = model.predict([s for _, s, _ in nonmetal_set])
    metal_structures = [build(spec) for _, spec in METALS]
    metal_gap, _ = model.predict(metal_structures)
    nonmetal_ok = predicted_gap >= METAL_GAP
    metallicity = {
        "model": model.name,
        "nonmetal_accuracy": float(nonmetal_ok.mean()),
        "nonmetals_n": len(nonmetal_set),
        "nonmetal_jarvis_n": len(jarvis_nonmetals),
        "nonmetal_gap_mae_eV_vs_experiment": float(
            np.mean(np.abs(predicted_gap[len(jarvis_nonmetals) :] - [g for *_, g in textbook]))
        ),
        "nonmetals_called_metal": [
            name for (name, _, _), good in zip(nonmetal_set, nonmetal_ok, strict=True) if not good
        ],
        "textbook_metal_accuracy": float((metal_gap < METAL_GAP).mean()),
        "textbook_metals_n": len(METALS),
    }

    # 4. the CHGNet phonon check on every relaxed val crystal and against DFT
    phonon_result = {
        "val": val_phonons(table, val, folder, truth),
        "vs_dft": phonons_vs_dft(train_records, val_records),
    }

    # 5. the optional DFT N(E_F) stage
    fermi_result = None
    if args.fermi_dos:
        nef_min = args.nef_min if args.nef_min is not None else trained_nef_threshold()
        fermi_result = val_fermi_dos(table, val, folder, truth, args.fermi_dos, nef_min)

    result = {
        "val_screen": val_result,
        "phonons": phonon_result,
        **({"fermi_dos": fermi_result} if fermi_result else {}),
        "train_eform_from_reference_table": train_result,
        "metallicity": metallicity,
        "settings": {"fmax": settings.fmax, "max_steps": settings.max_steps},
        "machine": {
            "cpus": torch.get_num_threads(),
            "workers": args.workers,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    def rate(stats: dict) -> str:
        return f"{stats['precision']:.1%} / {stats['recall']:.1%} ({stats['passed']} passed)"

    v, m = val_result, metallicity
    lines = [
        (
            f"E_form MAE vs JARVIS, val, {v['eform_scale']} scale",
            f"{v['eform_mae_eV_per_atom']:.3f} eV/atom (n={v['eform_n']})",
        ),
        ("  val, mp scale (CHGNet as is)", f"{v['eform_mae_mp_scale']:.3f} eV/atom"),
        (
            "E_form MAE vs JARVIS, train, mp scale",
            f"{train_mae(train_result)} eV/atom (n={train_result['eform_n']})",
        ),
        (
            "  train, jarvis scale, 5-fold CV",
            f"{train_mae(train_result['jarvis_scale_5fold'])} eV/atom",
        ),
        ("  val / train without O, N, H, halides...", without(v, train_result)),
        ("metals called metal (val, JARVIS)", f"{v['metal_accuracy']:.1%} of {v['metals_n']}"),
        ("non-metals called non-metal", f"{m['nonmetal_accuracy']:.1%} of {m['nonmetals_n']}"),
        ("  textbook / JARVIS (gap > 0.05 eV)", nonmetal_split(m)),
        ("textbook metals called metal", f"{m['textbook_metal_accuracy']:.1%} of {len(METALS)}"),
        ("Tc >= 5 K rule precision / recall", rate(v["tc_rule"])),
        ("  with Tc - 1 std", rate(v["tc_rule_sigma1"])),
        ("full rule precision / recall", rate(v["full_rule"])),
        ("  with Tc - 1 std", rate(v["full_rule_sigma1"])),
        *[(f"  with Tc - {k} std", rate(stats)) for k, stats in v["full_rule_by_k"].items()],
        ("  with require_stable (CHGNet phonons)", rate(v["full_rule_require_stable"])),
        *(
            [
                (
                    f"  with N(E_F) >= {fermi_result['nef_min']:.2f} (DFT)",
                    rate(fermi_result["full_rule_nef"]),
                ),
                (
                    f"  and DFT moment <= {MAGNETIC} Bohr magnetons/atom",
                    rate(fermi_result["full_rule_nef_nonmagnetic"]),
                ),
            ]
            if fermi_result
            else []
        ),
        ("val crystals CHGNet calls stable", phonon_share(phonon_result["val"])),
        ("  DFT Tc > 5 K among stable / unstable", phonon_tc(phonon_result["val"])),
        ("CHGNet phonons agree with QE stability", phonon_agreement(phonon_result["vs_dft"])),
        ("relaxed ok / failed", f"{v['relaxed_ok']} / {v['failed']}"),
        ("relax + symmetry + energies, s/structure", f"{v['stage_seconds_mean']:.2f} (mean)"),
        ("wall time of this run, s", f"{v['wall_seconds_this_run']:.0f} (models loaded once)"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
