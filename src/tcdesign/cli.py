"""``tcdesign <verb>``: parse arguments, call one library function, print.

Exit status: 0 success (also when some rows failed and were reported), 2 unusable input or
arguments, 1 internal error (set TCDESIGN_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from tcdesign.generate.defaults import COMPOSITION_RULE, COMPOSITION_TEMPERATURE, OPT_LR
from tcdesign.pipeline.command import register as register_run
from tcdesign.report.command import register as register_report
from tcdesign.screen.command import register as register_screen
from tcdesign.verify.command import register as register_verify


def _print_table(table, target: str, limit: int = 25) -> None:
    """A readable summary of a prediction table on stdout."""
    import numpy as np

    ok = table[table.status == "ok"]
    columns = ["id", "formula", target, f"{target}_std"]
    ref = f"{target}_ref"
    if ref in table.columns:
        columns.append(ref)
    shown = ok.sort_values(target, ascending=False).head(limit)[columns]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if len(ok) > limit:
        print(f"... {len(ok) - limit} more rows (highest {target} first)")
    line = f"{len(ok)} predicted, {len(table) - len(ok)} failed"
    if ref in table.columns:
        valid = ok[np.isfinite(ok[ref])]
        if len(valid):
            mae = float(np.mean(np.abs(valid[target] - valid[ref])))
            cover = float(np.mean(np.abs(valid[target] - valid[ref]) <= 2 * valid[f"{target}_std"]))
            line += f"; MAE vs {ref}: {mae:.2f} over {len(valid)} rows, {cover:.0%} within 2 std"
    print(line)


def cmd_predict(args: argparse.Namespace) -> int:
    from tcdesign.predict.api import predict_file

    table = predict_file(args.input, args.out, args.model, args.batch_size, progress=not args.quiet)
    target = next(c for c in table.columns if c not in ("id", "formula")).removesuffix("_std")
    if not args.quiet:
        _print_table(table, target)
        print(f"wrote {args.out}")
    return 0


def _devices(args: argparse.Namespace):
    """The Lightning device settings of a training verb's flags."""
    from tcdesign.training import Devices

    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    return Devices(args.accelerator, devices, args.num_nodes, args.strategy, args.precision)


def _refuses_to_overwrite(out: Path, resume: bool) -> bool:
    """True (after saying why) when ``out`` holds a run and --resume was not given."""
    from tcdesign.training import is_main_process

    if out.exists() and any(out.iterdir()) and not resume and is_main_process():
        print(
            f"tcdesign: {out} is not empty; pass --resume to continue the training in it, "
            "or choose another --out",
            file=sys.stderr,
        )
        return True
    return False


def cmd_train_predictor(args: argparse.Namespace) -> int:
    import torch

    from tcdesign.predict.alignn import ALIGNNConfig
    from tcdesign.predict.api import bundled_csv, train_predictor
    from tcdesign.predict.card import write_model_card
    from tcdesign.predict.train import TrainSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    transform = args.transform or ("log1p" if args.target == "tc" else "none")
    config = ALIGNNConfig(
        alignn_layers=args.alignn_layers,
        gcn_layers=args.gcn_layers,
        hidden=args.hidden,
        embedding=args.embedding,
        dropout=args.dropout,
        cutoff=args.cutoff,
        max_neighbors=args.max_neighbors,
        target=args.target,
        transform=transform,
        pretrained_features=args.features,
        descriptors=args.descriptors,
    )
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        loss=args.loss,
        patience=args.patience,
        seed=args.seed,
        progress=not args.quiet,
        devices=_devices(args),
    )
    out = Path(args.out)
    if _refuses_to_overwrite(out, args.resume):
        return 2
    ensemble = train_predictor(
        args.train or bundled_csv("train"),
        args.val or bundled_csv("val"),
        out,
        config,
        settings,
        args.members,
        resume=args.resume,
    )
    if ensemble is None:  # an extra DDP process; rank 0 reports
        return 0
    val = ensemble.metrics["val"]
    unit = " K" if args.target == "tc" else ""
    members = ", ".join(f"{m:.2f}" for m in ensemble.metrics["val_member_mae"])
    coverage = (
        f"{val['within_2std']:.0%} of val errors within 2 std"
        if math.isfinite(val["within_2std"])
        else "no std from a single member"
    )
    print(f"val MAE {val['mae']:.3f}{unit} (members: {members}); {coverage}")
    card = write_model_card(out, args.command_line)
    print(f"wrote {out / 'ensemble.pt'}, {out / 'metrics.json'} and {card}")
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    import torch

    from tcdesign.generate.api import train_generator_from_csv
    from tcdesign.generate.cdvae import CDVAEConfig
    from tcdesign.generate.train import GeneratorSettings
    from tcdesign.predict.api import bundled_csv

    if args.threads:
        torch.set_num_threads(args.threads)
    config = CDVAEConfig(
        latent=args.latent,
        max_atoms=args.max_atoms,
        encoder_hidden=args.encoder_hidden,
        decoder_hidden=args.decoder_hidden,
        decoder_layers=args.decoder_layers,
        beta=args.beta,
    )
    settings = GeneratorSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        patience=args.patience,
        seed=args.seed,
        progress=not args.quiet,
        devices=_devices(args),
    )
    out = Path(args.out)
    if _refuses_to_overwrite(out, args.resume):
        return 2
    metrics = train_generator_from_csv(
        args.train or bundled_csv("train"),
        args.val or bundled_csv("val"),
        out,
        config,
        settings,
        resume=args.resume,
    )
    if not metrics:  # an extra DDP process; rank 0 reports
        return 0
    print(f"best val loss {metrics['best_val_loss']:.3f} after {metrics['epochs_run']} epochs")
    print(f"wrote {out / 'generator.pt'} and {out / 'metrics.json'}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from tcdesign.generate.api import generate

    if args.n < 1:
        print("tcdesign: --n must be at least 1", file=sys.stderr)
        return 2
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
        schedule=schedule,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    counts = table.status.value_counts().to_dict()
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(
        f"{len(table)} crystals ({summary}); wrote {Path(args.out) / 'generated.csv'} and "
        f"{Path(args.out) / 'structures'}/"
    )
    return 0


def add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    """Annealed Langevin schedule flags shared by generate and csp."""
    parser.add_argument(
        "--steps-per-level",
        type=int,
        default=100,
        help="Langevin steps per noise level (default 100, as CDVAE)",
    )
    parser.add_argument(
        "--levels",
        type=int,
        default=None,
        help="use only this many of the noise levels (default: all 50)",
    )
    parser.add_argument(
        "--step-lr",
        type=float,
        default=1e-4,
        help="Langevin step size at the smallest noise level (default 1e-4)",
    )
    parser.add_argument(
        "--composition-temperature",
        type=float,
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
        frame = pd.read_csv(path, dtype=str)
        if "formula" not in frame.columns:
            raise InputError(f"{path}: no 'formula' column")
        formulas = [f.strip() for f in frame.formula.dropna()]
    else:
        formulas = args.formula
    if not formulas or args.n < 1:
        print("tcdesign: give at least one formula and --n >= 1", file=sys.stderr)
        return 2
    table = csp(
        formulas,
        args.out,
        args.n,
        method=args.method,
        seed=args.seed,
        model=args.model,
        schedule=_schedule(args),
        progress=not args.quiet,
    )
    failed = set(table.formula[table.status == "error"])
    print(
        f"{len(set(table.formula)) - len(failed)} formulas predicted, {len(failed)} failed; "
        f"wrote {Path(args.out) / 'csp.csv'}"
    )
    return 2 if failed and len(failed) == len(set(formulas)) else 0


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """Lightning device flags shared by every training verb."""
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all)")
    parser.add_argument(
        "--accelerator", default="auto", help="Lightning accelerator: cpu, gpu, auto (default auto)"
    )
    parser.add_argument("--devices", default=1, help="devices per node (Lightning), e.g. 4 or auto")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes for multi-node DDP")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    parser.add_argument(
        "--precision",
        default="32-true",
        help="Lightning precision, e.g. 32-true, bf16-mixed, 16-mixed",
    )


def cmd_fetch_jarvis(args: argparse.Namespace) -> int:
    from tcdesign.data.jarvis import fetch_dft_3d

    try:
        frame = fetch_dft_3d(args.target, args.out, args.extra_keys, args.store_dir)
    except RuntimeError as exc:  # jarvis-tools missing or the download failed
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(frame)} structures with {args.target} to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcdesign",
        description="Inverse design of conventional superconductors: predict Tc of crystals and "
        "train the predictor. Inputs: a CSV with a 'cif' column (JARVIS/CDVAE "
        "layout), a CIF or POSCAR file, or a folder of them.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    predict = verbs.add_parser(
        "predict",
        help="predict Tc (or a trained model's property) of structures",
        description="Predict Tc (K) with the bundled ALIGNN ensemble, or a property with "
        "--model. Writes CSV columns id, formula, tc, tc_std, status, error (and "
        "tc_ref when the input has 'prop'). Bad rows are reported and kept as "
        "status=error.",
    )
    predict.add_argument("input", help="CSV with a 'cif' column, a CIF/POSCAR file, or a folder")
    predict.add_argument("--out", required=True, help="output CSV path")
    predict.add_argument(
        "--model",
        default=None,
        help="ensemble.pt or model.pt from 'tcdesign train predictor' "
        "(default: the bundled Tc ensemble)",
    )
    predict.add_argument(
        "--batch-size", type=int, default=32, help="structures per forward pass (default 32)"
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar or table")
    predict.set_defaults(func=cmd_predict)

    train = verbs.add_parser(
        "train", help="train a model", description="Train a model ('predictor')."
    )
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    pred = models.add_parser(
        "predictor",
        help="train an ALIGNN ensemble for Tc or any numeric property",
        description="Train an ensemble of ALIGNN models (different seeds) with AdamW, a "
        "one-cycle schedule and early stopping on val MAE; calibrates the ensemble "
        "std on val so ~95%% of val errors fall within 2 std. Writes DIR/member_k/ "
        "(checkpoints every epoch), DIR/ensemble.pt and DIR/metrics.json.",
    )
    pred.add_argument(
        "--train",
        default=None,
        help="training CSV (default: the bundled JARVIS superconductor train split)",
    )
    pred.add_argument(
        "--val",
        default=None,
        help="validation CSV for early stopping and calibration (default: bundled)",
    )
    pred.add_argument("--out", required=True, help="output folder")
    pred.add_argument(
        "--target",
        default="tc",
        help="property to learn: 'tc' (Tc in K from -prop, default) or any numeric "
        "column of the CSVs, e.g. formation_energy_peratom, optb88vdw_bandgap",
    )
    pred.add_argument(
        "--transform",
        choices=["none", "log1p"],
        default=None,
        help="learn transform(target); default log1p for tc, none otherwise",
    )
    pred.add_argument("--members", type=int, default=5, help="ensemble size (default 5)")
    pred.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the first member; member k uses seed+k (default 0)",
    )
    pred.add_argument("--epochs", type=int, default=40, help="maximum epochs (default 40)")
    pred.add_argument(
        "--patience",
        type=int,
        default=15,
        help="early-stopping patience in epochs on val MAE (default 15)",
    )
    pred.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    pred.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="peak learning rate of the one-cycle schedule (default 1e-3)",
    )
    pred.add_argument(
        "--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)"
    )
    pred.add_argument(
        "--loss",
        choices=["mse", "l1", "huber"],
        default="mse",
        help="loss on the standardised transformed target (default mse)",
    )
    pred.add_argument("--hidden", type=int, default=64, help="hidden width (default 64)")
    pred.add_argument(
        "--embedding", type=int, default=64, help="bond/angle embedding width (default 64)"
    )
    pred.add_argument("--alignn-layers", type=int, default=2, help="ALIGNN layers (default 2)")
    pred.add_argument("--gcn-layers", type=int, default=2, help="GCN layers (default 2)")
    pred.add_argument(
        "--dropout", type=float, default=0.2, help="dropout before the head (default 0.2)"
    )
    pred.add_argument(
        "--descriptors",
        choices=["none", "composition"],
        default="composition",
        help="crystal descriptors joined to the pooled features before the head "
        "(composition: elemental-property statistics, volume, density, distances; default)",
    )
    pred.add_argument(
        "--features",
        choices=["none", "chgnet"],
        default="none",
        help="pretrained atom features beside CGCNN's (chgnet: 64 CHGNet features)",
    )
    pred.add_argument("--cutoff", type=float, default=8.0, help="neighbour search radius (A)")
    pred.add_argument("--max-neighbors", type=int, default=12, help="neighbours per atom")
    pred.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted training in --out (finished members are kept)",
    )
    add_device_flags(pred)
    pred.add_argument("--quiet", action="store_true", help="no progress bars")
    pred.set_defaults(func=cmd_train_predictor)

    gen = models.add_parser(
        "generator",
        help="train the CDVAE crystal generator with a Tc head",
        description="Train CDVAE (encoder, atom-count/lattice/composition/Tc heads, periodic "
        "score network) on crystals with Tc. Writes DIR/last.ckpt every epoch, DIR/best.ckpt, "
        "and at the end DIR/generator.pt and DIR/metrics.json; --resume continues a run.",
    )
    gen.add_argument(
        "--train",
        default=None,
        help="training CSV (default: the bundled JARVIS superconductor train split)",
    )
    gen.add_argument("--val", default=None, help="validation CSV (default: bundled val split)")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--epochs", type=int, default=500, help="maximum epochs (default 500)")
    gen.add_argument(
        "--patience",
        type=int,
        default=100,
        help="early-stopping patience in epochs on val loss (default 100)",
    )
    gen.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    gen.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="initial learning rate of the cosine schedule (default 1e-3)",
    )
    gen.add_argument("--latent", type=int, default=256, help="latent size (default 256)")
    gen.add_argument(
        "--max-atoms",
        type=int,
        default=20,
        help="largest cell the atom-count head can produce (default 20)",
    )
    gen.add_argument("--encoder-hidden", type=int, default=128, help="encoder width")
    gen.add_argument("--decoder-hidden", type=int, default=128, help="score network width")
    gen.add_argument("--decoder-layers", type=int, default=4, help="score network layers")
    gen.add_argument("--beta", type=float, default=0.01, help="KL weight (default 0.01)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--resume", action="store_true", help="continue the training in --out")
    add_device_flags(gen)
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_train_generator)
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
    gen_verb.add_argument("--n", type=int, required=True, help="number of crystals")
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
        type=float,
        default=None,
        help="aim the latent optimisation at this Tc (K) instead of maximising",
    )
    gen_verb.add_argument(
        "--opt-steps", type=int, default=100, help="latent optimisation steps (default 100)"
    )
    gen_verb.add_argument(
        "--opt-lr", type=float, default=OPT_LR, help=f"Adam learning rate on z (default {OPT_LR})"
    )
    add_schedule_flags(gen_verb)
    gen_verb.add_argument(
        "--batch-size", type=int, default=16, help="crystals decoded together (default 16)"
    )
    gen_verb.add_argument("--quiet", action="store_true", help="no progress bar")
    gen_verb.set_defaults(func=cmd_generate)

    csp_verb = verbs.add_parser(
        "csp",
        help="crystal structures for given cell compositions",
        description="Composition -> structure: K candidate structures for each cell formula "
        "(atom counts per cell, e.g. Nb6Sn2). cdvae: latents that the model finds most "
        "compatible with the composition are decoded with atom count and types fixed, ranked by "
        "that log-likelihood; template: training structures with the same stoichiometry "
        "pattern, elements mapped by substitution probability, volume rescaled; hybrid: "
        "template candidates encoded by CDVAE, their coordinates refined by the score network "
        "from a small noise level, reranked by template and composition log-likelihood. Writes "
        "DIR/csp.csv (formula, rank, cif, method, score, status, error); a rerun skips "
        "formulas already done.",
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
    csp_verb.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    csp_verb.add_argument(
        "--model", default=None, help="generator.pt (default: bundled; cdvae and hybrid)"
    )
    add_schedule_flags(csp_verb)
    csp_verb.add_argument("--quiet", action="store_true", help="no progress bar")
    csp_verb.set_defaults(func=cmd_csp)

    fetch = verbs.add_parser(
        "fetch-jarvis",
        help="download JARVIS-DFT dft_3d (internet) and write it in the CSV layout",
        description="Download JARVIS-DFT dft_3d with jarvis-tools (pip install jarvis-tools; "
        "needs internet) and write the structures that have TARGET as a CSV in the "
        "JARVIS/CDVAE layout (material_id, cif, and prop = -Tc for Tc_supercon, else a column "
        "named after the key), ready for 'tcdesign train predictor --target KEY'.",
    )
    fetch.add_argument(
        "--target",
        default="Tc_supercon",
        help="dft_3d key to keep, e.g. Tc_supercon (default), "
        "formation_energy_peratom, optb88vdw_bandgap",
    )
    fetch.add_argument(
        "--extra-keys", nargs="*", default=[], help="further dft_3d keys to copy as columns"
    )
    fetch.add_argument(
        "--store-dir",
        default=None,
        help="where jarvis-tools caches the download (default: its own)",
    )
    fetch.add_argument("--out", required=True, help="output CSV path")
    fetch.set_defaults(func=cmd_fetch_jarvis)
    register_screen(verbs)
    register_verify(verbs)
    register_report(verbs)
    register_run(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["tcdesign", *(sys.argv[1:] if argv is None else argv)])
    warnings.filterwarnings("ignore", module="pymatgen")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    from tcdesign.data.io import InputError

    try:
        return args.func(args)
    except InputError as exc:
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tcdesign: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI's last line of defence: one line, exit 1
        if os.environ.get("TCDESIGN_DEBUG"):
            traceback.print_exc()
        print(f"tcdesign: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
