"""``tcdesign generate``, ``csp`` and ``train generator``: argument parsing and the handlers;
the work is in the library.

Exit status: 0 success (also when some samples or formulas failed and were reported); 2 for
unusable input or arguments (InputError is turned into one line by ``cli.main``), a non-empty
--out without --resume, or when every csp formula failed; 1 is left to internal errors.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tcdesign.cli_common import (
    add_data_flags,
    add_loop_flags,
    add_run_flags,
    loop_settings,
    positive_float,
    positive_int,
    refuses_to_overwrite,
    set_threads,
    training_csvs,
)
from tcdesign.generate.defaults import (
    COMPOSITION_RULE,
    COMPOSITION_TEMPERATURE,
    CSP_POOL,
    ENERGY_WEIGHT,
    OPT_LR,
    OPT_STARTS,
    RELAX_ENERGY_WEIGHT,
)


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN or infinity is a usage error, exit status 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def cmd_train_generator(args: argparse.Namespace) -> int:
    from tcdesign.generate.api import train_generator_from_csv
    from tcdesign.generate.cdvae import CDVAEConfig
    from tcdesign.generate.train import GeneratorSettings

    set_threads(args)
    config = CDVAEConfig(
        latent=args.latent,
        max_atoms=args.max_atoms,
        encoder_hidden=args.encoder_hidden,
        decoder_hidden=args.decoder_hidden,
        decoder_layers=args.decoder_layers,
        beta=args.beta,
    )
    settings = GeneratorSettings(**loop_settings(args))
    out = Path(args.out)
    if refuses_to_overwrite(out, args.resume):
        return 2
    metrics = train_generator_from_csv(
        *training_csvs(args), out, config, settings, resume=args.resume
    )
    if not metrics:  # an extra DDP process; rank 0 reports
        return 0
    print(f"best val loss {metrics['best_val_loss']:.3f} after {metrics['epochs_run']} epochs")
    print(f"wrote {out / 'generator.pt'} and {out / 'metrics.json'}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from tcdesign.generate.api import generate

    schedule = _schedule(args)
    table = generate(
        args.n,
        args.out,
        method=args.method,
        seed=args.seed,
        model=args.model,
        optimize_tc=args.optimize_tc,
        target_tc=args.target_tc,
        opt_steps=args.opt_steps,
        opt_lr=args.opt_lr,
        opt_start=args.opt_start,
        schedule=schedule,
        batch_size=args.batch_size,
        progress=not args.quiet,
        device=args.device,
    )
    counts = table.status.value_counts().to_dict()
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(
        f"{len(table)} crystals ({summary}); wrote {Path(args.out) / 'generated.csv'} and "
        f"{Path(args.out) / 'structures'}/"
    )
    return 0


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """--device: where the score network runs while sampling."""
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the score network runs: cpu (default), cuda, cuda:N, mps, or auto (a GPU "
        "when there is one). Random numbers are drawn on the CPU, so a seed gives the same "
        "draws on every device (results agree to floating-point rounding)",
    )


def add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    """Annealed Langevin schedule flags shared by generate and csp."""
    parser.add_argument(
        "--steps-per-level",
        type=positive_int,
        default=100,
        help="Langevin steps per noise level (default 100, as CDVAE)",
    )
    parser.add_argument(
        "--levels",
        type=positive_int,
        default=None,
        help="use only this many of the noise levels (default: all 50)",
    )
    parser.add_argument(
        "--step-lr",
        type=positive_float,
        default=1e-4,
        help="Langevin step size at the smallest noise level (default 1e-4)",
    )
    parser.add_argument(
        "--composition-temperature",
        type=positive_float,
        default=COMPOSITION_TEMPERATURE,
        help="sharpen the composition head's element probabilities, p^(1/T), before counting "
        f"atoms (default {COMPOSITION_TEMPERATURE}: closer to the training element counts; "
        "1 is CDVAE's rule)",
    )
    parser.add_argument(
        "--composition",
        choices=["prior", "cdvae"],
        default=COMPOSITION_RULE,
        help="how atom counts, elements and cell volumes are drawn (default prior: atom count "
        "sampled from its head, number of elements from the training set's statistics given it, "
        "compositions failing the SMACT charge-neutrality test redrawn, types fixed during "
        "Langevin, cell scaled to fitted atomic volumes; cdvae: the original rule, where the "
        "score network's type predictions change the atoms and the lattice head sets the volume)",
    )


def _schedule(args: argparse.Namespace):
    from tcdesign.data.io import InputError
    from tcdesign.generate.sample import LangevinSchedule

    if args.composition_temperature <= 0:
        raise InputError(
            f"--composition-temperature must be positive ({args.composition_temperature})"
        )
    return LangevinSchedule(
        steps_per_level=args.steps_per_level,
        step_lr=args.step_lr,
        levels=args.levels,
        composition_temperature=args.composition_temperature,
        composition=args.composition,
    )


def cmd_csp(args: argparse.Namespace) -> int:
    import pandas as pd

    from tcdesign.data.io import InputError
    from tcdesign.generate.api import csp

    if args.compositions:
        path = Path(args.compositions)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            frame = pd.read_csv(path, dtype=str)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InputError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
        if "formula" not in frame.columns:
            raise InputError(f"{path}: no 'formula' column")
        formulas = [f.strip() for f in frame.formula.dropna() if f.strip()]  # blank rows skipped
    else:
        formulas = [f.strip() for f in args.formula]
        if not all(formulas):
            print("tcdesign: --formula: an empty formula", file=sys.stderr)
            return 2
    if not formulas or args.n < 1:
        print("tcdesign: give at least one formula and --n >= 1", file=sys.stderr)
        return 2
    if args.pool < 1:
        print(f"tcdesign: --pool must be >= 1, got {args.pool}", file=sys.stderr)
        return 2
    if args.energy_weight < 0:
        print(f"tcdesign: --energy-weight must be >= 0, got {args.energy_weight}", file=sys.stderr)
        return 2
    table = csp(
        formulas,
        args.out,
        args.n,
        method=args.method,
        seed=args.seed,
        model=args.model,
        schedule=_schedule(args),
        relax=args.relax,
        pool=args.pool,
        primitive_cell=not args.any_cell,
        energy_weight=args.energy_weight,
        progress=not args.quiet,
        device=args.device,
    )
    failed = set(table.formula[table.status == "error"])
    print(
        f"{len(set(table.formula)) - len(failed)} formulas predicted, {len(failed)} failed; "
        f"wrote {Path(args.out) / 'csp.csv'}"
    )
    return 2 if failed and len(failed) == len(set(formulas)) else 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the ``generate`` and ``csp`` verbs to the CLI's subcommands."""
    gen_verb = verbs.add_parser(
        "generate",
        help="sample new crystals (CDVAE, or the substitution baseline)",
        description="Sample N crystals. cdvae: z ~ N(0, I) -> atom count, composition and "
        "lattice from the heads, guided by the training set's element counts, SMACT charge "
        "neutrality and atomic volumes (--composition) -> annealed Langevin dynamics of the "
        "coordinates (CDVAE's 50 noise levels x 100 steps by default); --optimize-tc first "
        "moves z uphill on the Tc "
        "head. substitution: element swaps into training crystals with pymatgen's data-driven "
        "substitution probabilities, volume rescaled. Writes DIR/structures/ID.cif and "
        "DIR/generated.csv (id, formula, cif, method, status, error, tc_head) as it goes; "
        "a rerun skips finished ids. Broken samples are kept with status broken/invalid.",
    )
    gen_verb.add_argument("--n", type=positive_int, required=True, help="number of crystals")
    gen_verb.add_argument("--out", required=True, help="output folder (reused on a rerun)")
    gen_verb.add_argument(
        "--method",
        choices=["cdvae", "substitution"],
        default="cdvae",
        help="generator (default cdvae)",
    )
    gen_verb.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen_verb.add_argument(
        "--model",
        default=None,
        help="generator.pt from 'tcdesign train generator' (default: bundled)",
    )
    gen_verb.add_argument(
        "--optimize-tc",
        action="store_true",
        help="gradient steps on z through the Tc head before decoding",
    )
    gen_verb.add_argument(
        "--target-tc",
        type=finite_float,
        default=None,
        help="aim the latent optimisation at this Tc (K) instead of maximising",
    )
    gen_verb.add_argument(
        "--opt-steps",
        type=positive_int,
        default=100,
        help="latent optimisation steps (default 100)",
    )
    gen_verb.add_argument(
        "--opt-lr",
        type=positive_float,
        default=OPT_LR,
        help=f"Adam learning rate on z (default {OPT_LR})",
    )
    gen_verb.add_argument(
        "--opt-start",
        choices=OPT_STARTS,
        default="random",
        help="where the latent optimisation starts: random z ~ N(0, I) (default) or the encoded "
        "means of training crystals drawn at random, as in CDVAE's optimisation task",
    )
    add_schedule_flags(gen_verb)
    gen_verb.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="crystals decoded together (default 16); each batch has its own random stream, so "
        "the same --seed with another batch size gives other crystals",
    )
    add_device_flag(gen_verb)
    gen_verb.add_argument("--quiet", action="store_true", help="no progress bar")
    gen_verb.set_defaults(func=cmd_generate)

    csp_verb = verbs.add_parser(
        "csp",
        help="crystal structures for given cell compositions",
        description="Composition -> structure: K candidate structures for each cell formula "
        "(atom counts per cell, e.g. Nb6Sn2). cdvae: latents that the model finds most "
        "compatible with the composition are decoded with atom count and types fixed, ranked by "
        "that log-likelihood; template: training structures with the same stoichiometry "
        "pattern, elements mapped by substitution probability, volume rescaled, the best "
        "re-ranked with their CHGNet static energies (--energy-weight); hybrid: "
        "template candidates encoded by CDVAE, their coordinates refined by the score network "
        "from a small noise level, reranked by template score and composition log-likelihood. "
        "Writes DIR/csp.csv (formula, rank, cif, method, score, status, error, "
        "energy_per_atom, source_rank); a rerun skips formulas already done.",
    )
    source = csp_verb.add_mutually_exclusive_group(required=True)
    source.add_argument("--formula", nargs="+", help="one or more cell formulas, e.g. Nb6Sn2")
    source.add_argument("--compositions", help="CSV with a 'formula' column")
    csp_verb.add_argument("--n", type=int, default=5, help="structures per formula (default 5)")
    csp_verb.add_argument("--out", required=True, help="output folder")
    csp_verb.add_argument(
        "--method",
        choices=["cdvae", "template", "hybrid"],
        default="cdvae",
        help="predictor: cdvae, template or hybrid (template refined by CDVAE; default cdvae)",
    )
    csp_verb.add_argument(
        "--relax",
        action="store_true",
        help="relax the method's best --pool candidates with CHGNet and keep the --n best, "
        "relaxed: cdvae by energy per atom; template and hybrid by their own score minus "
        f"{RELAX_ENERGY_WEIGHT:g} x the relaxed energy above the lowest (eV/atom), supercells "
        "of smaller crystals last (candidates relaxing to the same crystal count once)",
    )
    csp_verb.add_argument(
        "--pool",
        type=int,
        default=CSP_POOL,
        help=f"candidates relaxed per formula with --relax (default {CSP_POOL})",
    )
    csp_verb.add_argument(
        "--energy-weight",
        type=finite_float,
        default=ENERGY_WEIGHT,
        help="template and hybrid: re-rank the best candidates by substitution log-probability "
        "minus this weight times their CHGNet static energy (eV/atom) above the lowest of them "
        f"(default {ENERGY_WEIGHT:g}; 0 ranks by probability alone). The energy is written to "
        "the energy_per_atom column",
    )
    csp_verb.add_argument(
        "--any-cell",
        action="store_true",
        help="the formulas may be conventional cells or supercells: rank template and hybrid "
        "candidates by probability alone. By default a formula counts the atoms of a primitive "
        "cell (as in the training data), so candidates that are supercells of a smaller crystal "
        "rank last",
    )
    csp_verb.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    csp_verb.add_argument(
        "--model", default=None, help="generator.pt (default: bundled; cdvae and hybrid)"
    )
    add_schedule_flags(csp_verb)
    add_device_flag(csp_verb)
    csp_verb.add_argument("--quiet", action="store_true", help="no progress bar")
    csp_verb.set_defaults(func=cmd_csp)


def register_train(models: argparse._SubParsersAction) -> None:
    """Add ``generator`` to the models of the ``train`` verb."""
    gen = models.add_parser(
        "generator",
        help="train the CDVAE crystal generator with a Tc head",
        description="Train CDVAE (encoder, atom-count/lattice/composition/Tc heads, periodic "
        "score network) on crystals with Tc. Writes DIR/last.ckpt every epoch, DIR/best.ckpt, "
        "and at the end DIR/generator.pt and DIR/metrics.json; --resume continues a run.",
    )
    add_data_flags(gen, "validation CSV (default: bundled val split)")
    add_loop_flags(
        gen,
        epochs=500,
        patience=100,
        monitor="val loss",
        batch_size=32,
        lr_help="initial learning rate of the cosine schedule",
    )
    gen.add_argument("--latent", type=positive_int, default=256, help="latent size (default 256)")
    gen.add_argument(
        "--max-atoms",
        type=positive_int,
        default=20,
        help="largest cell the atom-count head can produce (default 20)",
    )
    gen.add_argument("--encoder-hidden", type=positive_int, default=128, help="encoder width")
    gen.add_argument("--decoder-hidden", type=positive_int, default=128, help="score network width")
    gen.add_argument("--decoder-layers", type=positive_int, default=4, help="score network layers")
    gen.add_argument("--beta", type=float, default=0.01, help="KL weight (default 0.01)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_run_flags(gen, resume_help="continue the training in --out", quiet_help="no progress bar")
    gen.set_defaults(func=cmd_train_generator)
