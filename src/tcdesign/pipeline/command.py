"""``tcdesign run``: argument parsing and the handler; the work is in :mod:`.run`.

Exit status: 0 when the pipeline finished (also when some candidates failed and were
reported), 2 for unusable arguments or settings, 1 for internal errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tcdesign.pipeline.settings import DEFAULT_N


def cmd_run(args: argparse.Namespace) -> int:
    """Handler of ``tcdesign run``; returns the exit status."""
    from tcdesign.pipeline.run import run_pipeline
    from tcdesign.pipeline.settings import make_run_settings, read_run_toml

    methods = None
    if args.method is not None:
        methods = ["cdvae", "substitution"] if args.method == "both" else [args.method]
    flags = {
        "run": {
            "n": args.n,
            "methods": methods,
            "seed": args.seed,
            "verify": args.verify,
            "report": False if args.no_report else None,
            "device": args.device,
        },
        "generate": {
            "model": args.model,
            "optimize_tc": False if args.no_optimize_tc else None,
            "target_tc": args.target_tc,
            "steps_per_level": args.steps_per_level,
        },
        "screen": {
            "tc_min": args.tc_min,
            "eform_max": args.eform_max,
            "gap_max": args.gap_max,
            "ehull_max": args.ehull_max,
            "magmom_max": args.magmom_max,
            "hull_prototypes": args.hull_prototypes,
            "phonons": False if args.no_phonons else None,
            "require_stable": True if args.require_stable else None,
            "fermi_dos": True
            if args.fermi_dos or args.nef_min is not None or args.dft_magmom_max is not None
            else None,
            "nef_min": args.nef_min,
            "dft_magmom_max": args.dft_magmom_max,
            "pseudo_dir": args.pseudo_dir,
            "prescreen_tc": args.prescreen_tc,
            "workers": args.workers,
            "scheduler": args.scheduler,
        },
        "verify": {
            "preset": args.preset,
            "pseudo_dir": args.pseudo_dir,
            "np": args.np,
            "max_q_points": args.max_q_points,
            "unstable": True if args.verify_unstable else None,
        },
    }
    try:
        config = read_run_toml(args.config) if args.config else {}
        settings = make_run_settings(config, where=args.config or "settings", **flags)
        if settings.verify.pseudo_dir and not Path(settings.verify.pseudo_dir).is_dir():
            raise ValueError(f"--pseudo-dir {settings.verify.pseudo_dir}: no such folder")
    except ValueError as exc:
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 2
    # an unusable --out folder is an InputError (exit 2); any other error is internal (exit 1)
    started = time.perf_counter()
    state = run_pipeline(args.out, settings, progress=not args.quiet)
    minutes = (time.perf_counter() - started) / 60
    total = sum(state["seconds"].values()) / 60
    print(
        f"done in {minutes:.1f} min ({total:.1f} min over every invocation of this run); "
        f"{Path(args.out) / 'run.json'}"
    )
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the ``run`` verb to the ``tcdesign`` sub-parsers."""
    from tcdesign.screen.settings import NEF_MIN
    from tcdesign.verify.pseudo import DEFAULT_HELP

    parser = verbs.add_parser(
        "run",
        help="the whole pipeline: generate -> screen -> rank -> verify -> report",
        description="Generate crystals with the bundled CDVAE (Tc optimised in latent space), "
        "screen them (CHGNet relaxation, formation energy, hull, gap, novelty, predicted Tc), "
        "rank the ones that pass, optionally verify the best with Quantum ESPRESSO, and write "
        f"OUT/report.html. With the defaults ({DEFAULT_N} CDVAE crystals, no --verify) it "
        "takes about 5 minutes on an idle 2-core laptop CPU. Every stage keeps its output in OUT "
        "and a rerun resumes where the last one stopped. A TOML --config can set every stage "
        "([run], [generate], [screen], [verify]); flags override it.",
    )
    parser.add_argument("--out", required=True, help="run folder (reused on a rerun)")
    parser.add_argument(
        "--n", type=int, default=None, help=f"crystals generated per method (default {DEFAULT_N})"
    )
    parser.add_argument(
        "--method",
        choices=["cdvae", "substitution", "both"],
        default=None,
        help="generator: cdvae (default), the element-substitution baseline, or both side by "
        "side in the report",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument(
        "--device",
        default=None,
        help="where the networks run: cpu (default), cuda, cuda:N, mps, or auto (a GPU when "
        "there is one): CDVAE's score network, CHGNet in the relaxations and the Tc ensemble; "
        "graphs, optimisers and random draws stay on the CPU. Can change on a resume",
    )
    parser.add_argument(
        "--verify",
        type=int,
        default=None,
        metavar="K",
        help="verify the top K passed candidates with Quantum ESPRESSO (default 0: none; "
        "candidates with elements lacking a pseudopotential are skipped and listed)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="TOML settings file with [run], [generate], [screen], [verify] tables",
    )
    parser.add_argument("--model", default=None, help="generator.pt (default: the bundled CDVAE)")
    parser.add_argument(
        "--no-optimize-tc",
        action="store_true",
        help="sample z ~ N(0, I) without the latent Tc optimisation (unless --target-tc is "
        "given: that still optimises towards it)",
    )
    parser.add_argument(
        "--target-tc", type=float, default=None, help="aim the latent optimisation at this Tc (K)"
    )
    parser.add_argument(
        "--steps-per-level",
        type=int,
        default=None,
        help="Langevin steps per noise level (default 10; CDVAE's 100 is 10x slower)",
    )
    parser.add_argument("--tc-min", type=float, default=None, help="pass when Tc >= this (K, 5)")
    parser.add_argument(
        "--eform-max", type=float, default=None, help="pass when E_form < this (eV/atom, 0)"
    )
    parser.add_argument("--gap-max", type=float, default=None, help="pass when gap < this (eV)")
    parser.add_argument(
        "--ehull-max",
        type=float,
        default=None,
        help="pass when E_hull <= this (eV/atom; off); with few reference compounds in a "
        "candidate's chemical system E_hull is a lower bound on the true energy above the hull "
        "(see the ehull_reference column of screened.csv)",
    )
    parser.add_argument(
        "--magmom-max",
        type=float,
        default=None,
        help="pass when the magnetic moment CHGNet predicts for the relaxed structure (Bohr "
        "magnetons per atom, the magmom column of screened.csv) <= this (off); a cheap flag "
        "for magnetic candidates, not DFT",
    )
    parser.add_argument(
        "--no-phonons",
        action="store_true",
        help="skip the CHGNet phonon check of the candidates that pass the rules (columns "
        "phonon_stable and phonon_min_freq_cm1; a few seconds per candidate; see 'tcdesign "
        "screen --help')",
    )
    parser.add_argument(
        "--require-stable",
        action="store_true",
        help="a rule: pass only candidates without imaginary CHGNet phonon modes (off, as in "
        "the paper)",
    )
    parser.add_argument(
        "--fermi-dos",
        action="store_true",
        help="DFT N(E_F) of the candidates that pass the rules: one coarse pw.x scf each (20 s "
        "to a few minutes; the nef column and a rule, --nef-min; pseudopotentials from "
        "--pseudo-dir; see 'tcdesign screen --help')",
    )
    parser.add_argument(
        "--nef-min",
        type=float,
        default=None,
        metavar="STATES",
        help="the N(E_F) rule: pass only candidates whose DFT N(E_F) >= STATES per eV per atom "
        f"(implies --fermi-dos; default {NEF_MIN:g} with --fermi-dos; see 'tcdesign screen "
        "--help')",
    )
    parser.add_argument(
        "--dft-magmom-max",
        type=float,
        default=None,
        metavar="MUB",
        help="a rule: pass only candidates whose spin-polarised scf of the N(E_F) stage keeps at "
        "most MUB Bohr magnetons per atom (implies --fermi-dos; off)",
    )
    parser.add_argument(
        "--hull-prototypes",
        type=int,
        default=None,
        metavar="K",
        help="add to the hull of each candidate that passes the other rules the K likeliest "
        "crystals per competing composition of its elements built from the training prototypes "
        "and relaxed with CHGNet (off; 2 costs about 14 relaxations per binary system), so that "
        "E_hull holds where the training set has no compound of those elements",
    )
    parser.add_argument(
        "--prescreen-tc",
        type=float,
        default=None,
        help="relax only candidates whose unrelaxed predicted Tc reaches this (K; default 2, "
        "0 relaxes all)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="screening processes (local pool; default 2)"
    )
    parser.add_argument(
        "--scheduler", default=None, help="dask.distributed scheduler address for screening"
    )
    parser.add_argument(
        "--preset",
        choices=["coarse", "standard"],
        default=None,
        help="Quantum ESPRESSO preset for --verify (default coarse)",
    )
    parser.add_argument(
        "--pseudo-dir",
        default=None,
        help=f"UPF pseudopotentials for --verify and --fermi-dos ({DEFAULT_HELP})",
    )
    parser.add_argument("--np", type=int, default=None, help="MPI ranks for QE (default 1)")
    parser.add_argument(
        "--max-q-points",
        type=int,
        default=None,
        help="with --verify, skip candidates whose phonons need more irreducible q-points than "
        "this (one ph.x run each; 'tcdesign verify --plan' counts them) and verify the next "
        "ones instead (default 0: no limit)",
    )
    parser.add_argument(
        "--verify-unstable",
        action="store_true",
        help="with --verify, also verify candidates whose CHGNet phonons have imaginary modes "
        "(phonon_stable False in candidates.csv); by default they are skipped, with the reason, "
        "and the next stable ones verified: DFT phonons of a cell that is a saddle point take "
        "hours and give a coupling inflated by the soft modes",
    )
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=cmd_run)
