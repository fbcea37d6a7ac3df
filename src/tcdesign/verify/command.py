"""``tcdesign verify``: argument parsing and the handler; the work is in the library.

Exit status: 0 when result.json (or verify.csv) was written, also when a QE run failed and its
status says so; 2 for unusable input or arguments, and for a single structure that could not
start (no pseudopotential for an element, pw.x not installed); 1 is left to internal errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SETTING_FLAGS = {  # flag dest -> VerifySettings field
    "mu_star": "mu_star",
    "np": "np",
    "q_workers": "q_workers",
    "ecutwfc": "ecutwfc_ry",
    "ecutrho": "ecutrho_ry",
    "k_spacing": "k_spacing",
    "fit_k_spacing": "fit_k_spacing",
    "q_spacing": "q_spacing",
    "timeout": "timeout_s",
}
UNSTARTABLE = ("pseudopotential", "qe_not_found")


def _fmt(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cmd_verify(args: argparse.Namespace) -> int:
    """Handler of ``tcdesign verify``; returns the exit status."""
    from tcdesign.data.io import read_structures
    from tcdesign.verify.executor import run_many
    from tcdesign.verify.settings import make_settings, read_settings_toml
    from tcdesign.verify.workflow import stderr_reporter, verify

    try:
        overrides = read_settings_toml(args.config) if args.config else {}
        for dest, name in SETTING_FLAGS.items():
            if getattr(args, dest) is not None:
                overrides[name] = getattr(args, dest)
        if args.no_relax:
            overrides["relax"] = False
        if args.no_magnetism_check:
            overrides["magnetism_check"] = False
        if args.stop_if_unstable:
            overrides["stop_if_unstable"] = True
        preset = args.preset or overrides.pop("preset", "coarse")
        overrides.pop("preset", None)
        settings = make_settings(preset, **overrides)
    except (ValueError, TypeError) as exc:
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 2
    if args.pseudo_dir is not None and not Path(args.pseudo_dir).is_dir():
        print(f"tcdesign: --pseudo-dir {args.pseudo_dir}: no such folder", file=sys.stderr)
        return 2
    records = read_structures(args.input)  # InputError -> one line, exit 2 (cli.main)
    out = Path(args.out)
    if args.plan:
        return _print_plan(records, out, settings, args.pseudo_dir)
    if len(records) == 1 and Path(args.input).suffix.lower() != ".csv":
        record = records[0]
        report = None if args.quiet else stderr_reporter(record.id)
        result = verify(record.structure, out, settings, args.pseudo_dir, record.id, report)
        data = result.data
        if result.status != "ok":
            print(f"tcdesign: verify {record.id}: {result.error}", file=sys.stderr)
            print(f"wrote {out / 'result.json'} (status {result.status})")
            return 2 if data.get("error_kind") in UNSTARTABLE else 0
        stable = "stable" if data["dynamically_stable"] else "UNSTABLE (imaginary modes)"
        plateau = "converged" if data["converged"] else "not converged over broadenings"
        print(
            f"{data['formula']}: lambda {_fmt(data['lambda'])}, omega_log "
            f"{_fmt(data['omega_log_K'], 1)} K, Tc {_fmt(data['tc_K'], 2)} K (mu* "
            f"{settings.mu_star:g}, sigma {data['headline_sigma_Ry']:g} Ry, {plateau}); "
            f"min freq {_fmt(data['min_freq_cm1'], 1)} cm^-1, {stable}"
        )
        print(
            f"wrote {out / 'result.json'} ({data['total_seconds']:.0f} s; QE steps "
            f"{data['qe_seconds']:.0f} s, reused ones included)"
        )
        return 0
    table = run_many(
        records, out, settings, args.pseudo_dir, args.workers, args.scheduler, not args.quiet
    )
    for row in table.itertuples():
        if row.status != "ok":
            print(f"tcdesign: verify {row.id}: {row.error}", file=sys.stderr)
    ok = table[table.status == "ok"]
    if len(ok):
        shown = ok[["id", "formula", "lambda", "omega_log_K", "tc_K", "dynamically_stable"]]
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    magnetic = int((table.status == "magnetic").sum())
    unstable = int((table.status == "unstable").sum())
    failed = len(table) - len(ok) - magnetic - unstable
    stopped = f", {unstable} unstable (phonons stopped)" if unstable else ""
    print(
        f"{len(ok)} verified, {magnetic} magnetic (no phonons){stopped}, {failed} failed; "
        f"wrote {out / 'verify.csv'}"
    )
    return 0


def _print_plan(records: list, out: Path, settings, pseudo_dir: str | None) -> int:
    """``--plan``: grids, irreducible q-points and cutoffs of every structure, no QE run;
    OUT/plan.csv. Exit status 2 when no structure could start."""
    import pandas as pd

    from tcdesign.verify.plan import PLAN_COLUMNS, plan_row

    rows = [plan_row(r.structure, settings, pseudo_dir, r.id) for r in records if r.ok]
    for record in records:
        if not record.ok:
            print(f"tcdesign: {record.id}: {record.error}", file=sys.stderr)
    table = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "plan.csv", index=False)
    shown = table.drop(columns=["problem", "k_fit_grid"]).rename(
        columns={"irreducible_q_points": "q_points", "phonon_modes": "modes"}
    )
    if len(shown):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:g}"))
    for row in table.itertuples():
        if row.problem:
            print(f"tcdesign: verify {row.id} cannot start: {row.problem}", file=sys.stderr)
    runs = int((table.problem == "").sum())
    total_q = int(table.irreducible_q_points[table.problem == ""].sum())
    print(
        f"{runs} of {len(records)} structures can run: {total_q} ph.x q-point runs in all (each "
        "a DFPT calculation of up to 'modes' linear responses; grids of the unrelaxed cells); "
        f"wrote {out / 'plan.csv'}"
    )
    return 0 if runs else 2


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the ``verify`` verb to the ``tcdesign`` sub-parsers."""
    from tcdesign.verify.pseudo import DEFAULT_HELP

    parser = verbs.add_parser(
        "verify",
        help="DFT electron-phonon Tc with Quantum ESPRESSO (relax, scf, ph.x, matdyn)",
        description="Relax (pw.x vc-relax), scf, DFPT electron-phonon coupling (ph.x, "
        "interpolated), q2r.x and matdyn.x, then alpha2F -> lambda, omega_log and the "
        "Allen-Dynes Tc, with an imaginary-mode check; crystals with d- or f-block elements "
        "first get a spin-polarised scf, and one that stays magnetic is reported as such "
        "(status 'magnetic') instead of getting a meaningless non-magnetic Tc. Writes "
        "OUT/result.json (lambda, omega_log_K, tc_K, min_freq_cm1, dynamically_stable, "
        "status, ...), OUT/alpha2F.csv and OUT/phonon_dos.csv; for a CSV or folder, OUT/<id>/ "
        "per structure and "
        "OUT/verify.csv. Rerunning skips completed steps and finished phonon q-points (ph.x "
        "runs one q-point per step), also in a copy of OUT without its scratch folder qe/tmp.",
    )
    parser.add_argument("input", help="a CIF or POSCAR file, a folder of them, or a CSV with 'cif'")
    parser.add_argument("--out", required=True, help="output folder (reused on a rerun)")
    parser.add_argument(
        "--pseudo-dir",
        default=None,
        help=f"folder of UPF pseudopotentials ({DEFAULT_HELP})",
    )
    parser.add_argument(
        "--preset",
        choices=["coarse", "standard"],
        default=None,
        help="coarse: tests and laptops (default); standard: production grids and cutoffs",
    )
    parser.add_argument(
        "--mu-star", type=float, default=None, help="Coulomb pseudopotential mu* (default 0.1)"
    )
    parser.add_argument(
        "--np", type=int, default=None, help="MPI ranks for pw.x and ph.x via mpirun (default 1)"
    )
    parser.add_argument(
        "--q-workers",
        type=int,
        default=None,
        help="phonon q-points computed at once after the first, each with --np ranks and its "
        "own copy of the scf scratch (default 1; uses q-workers x np cores)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="TOML file of settings (names of tcdesign.verify.settings.VerifySettings; "
        "a [pseudopotentials] table maps element to file); flags override it",
    )
    parser.add_argument("--no-relax", action="store_true", help="skip the pw.x vc-relax")
    parser.add_argument(
        "--no-magnetism-check",
        action="store_true",
        help="skip the spin-polarised scf (ferromagnetic start) run before the phonons for "
        "crystals with d- or f-block elements; by default a crystal that keeps more than "
        "magnetic_moment_tol (0.05 Bohr magnetons per atom) gets status 'magnetic' and no "
        "phonons",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="run nothing: print each structure's primitive cell, k- and q-grids, number of "
        "irreducible q-points (one ph.x run each, the bulk of the cost), phonon modes, cutoffs "
        "and whether the magnetism check runs, and write OUT/plan.csv; a second per structure",
    )
    parser.add_argument(
        "--stop-if-unstable",
        action="store_true",
        help="stop the phonons at the first q-point with an imaginary mode below "
        "-imaginary_tolerance_cm1 (10 cm^-1): status 'unstable', the lowest frequency and no "
        "Tc, saving the hours the other q-points take; rerun without it to compute Tc anyway",
    )
    parser.add_argument("--ecutwfc", type=float, default=None, help="wavefunction cutoff (Ry)")
    parser.add_argument("--ecutrho", type=float, default=None, help="density cutoff (Ry)")
    parser.add_argument(
        "--k-spacing", type=float, default=None, help="scf k-grid spacing (1/A, 2 pi included)"
    )
    parser.add_argument(
        "--fit-k-spacing", type=float, default=None, help="dense la2F k-grid spacing (1/A)"
    )
    parser.add_argument("--q-spacing", type=float, default=None, help="phonon q-grid spacing (1/A)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="time limit per QE step, each q-point of ph.x being one step (s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="structures run at once for a CSV or folder (local processes; default 1)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="dask.distributed scheduler address (e.g. tcp://host:8786) to run the structures of "
        "a CSV or folder on a cluster; its workers need QE, the pseudopotentials and --out on a "
        "shared filesystem",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines on stderr (by default one line, with the time, as each QE step "
        "starts, ends or is reused, as ph.x finishes each q-point, and as each structure of a "
        "CSV or folder finishes)",
    )
    parser.set_defaults(func=cmd_verify)


def cmd_fetch_pseudos(args: argparse.Namespace) -> int:
    """Handler of ``tcdesign fetch-pseudos``; returns the exit status."""
    from tcdesign.verify.fetch import FetchError, fetch_sssp, user_pseudo_dir
    from tcdesign.verify.pseudo import PSEUDO_DIR_ENV, default_pseudo_dir

    out = Path(args.out) if args.out else user_pseudo_dir()
    try:
        source = fetch_sssp(out, mirror=args.mirror, suite=args.suite, progress=not args.quiet)
    except ValueError as exc:
        print(f"tcdesign: --out: {exc}", file=sys.stderr)
        return 2
    except FetchError as exc:
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 1
    package = f"{source['package']} {source['version']}"
    print(f"wrote {source['files']} pseudopotentials ({package}) to {out}")
    if default_pseudo_dir() == out:
        print("verify, screen --fermi-dos and run use them when --pseudo-dir is not given")
    else:
        print(f"use them with --pseudo-dir {out} (or {PSEUDO_DIR_ENV}={out})")
    return 0


def register_fetch(verbs: argparse._SubParsersAction) -> None:
    """Add the ``fetch-pseudos`` verb to the ``tcdesign`` sub-parsers."""
    from tcdesign.verify.fetch import DEBIAN_MIRROR, PACKAGE, SUITE, user_pseudo_dir

    parser = verbs.add_parser(
        "fetch-pseudos",
        help="download the SSSP pseudopotential library (internet) for verify and --fermi-dos",
        description="Download the SSSP pseudopotential library (one tested UPF file per element) "
        f"from the Debian archive, as its package {PACKAGE}, check it against the archive's "
        "SHA-256, and unpack the files into one folder with SOURCE.json (version, URL, "
        "checksum) and the package's COPYRIGHT. Debian's default quantum-espresso-data folder "
        "lacks most transition metals, so verify and screen --fermi-dos cannot run most "
        "candidates without a library like this one. The default folder is found by itself; "
        "another is used with --pseudo-dir or TCDESIGN_PSEUDO_DIR. A rerun replaces an "
        "earlier fetch. About 43 MB to download, 160 MB unpacked.",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"folder to write (default {user_pseudo_dir()}, which the other verbs find "
        "without --pseudo-dir); must be new, empty or an earlier fetch",
    )
    parser.add_argument(
        "--mirror",
        default=DEBIAN_MIRROR,
        help=f"Debian mirror URL (default {DEBIAN_MIRROR}; a local mirror or file:// works)",
    )
    parser.add_argument(
        "--suite",
        default=SUITE,
        help=f"Debian suite whose package to take (default {SUITE}; e.g. trixie, testing)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_fetch_pseudos)
