"""``tcdesign predict``, ``train predictor`` and ``fetch-jarvis``: argument parsing and the
handlers; the work is in the library.

Exit status: 0 success (also when some rows failed and were reported); 2 for unusable input
(raised as InputError, turned into one line by ``cli.main``), a non-empty --out without
--resume, or a fetch-jarvis --target that no record has; 1 when the JARVIS download failed,
and for internal errors.
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

TC_SCREEN_THRESHOLD = 5.0  # K: the paper's screening rule (screen --tc-min), as the benchmarks


def _print_table(table, target: str, limit: int = 25) -> None:
    """A readable summary of a prediction table on stdout; with reference values, the MAE, the
    2-std coverage and, for Tc, precision and recall above the screening threshold."""
    import numpy as np

    from tcdesign.data.io import TC_TARGET
    from tcdesign.predict.ensemble import regression_metrics

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
            threshold = TC_SCREEN_THRESHOLD if target == TC_TARGET else None
            metrics = regression_metrics(
                valid[target].to_numpy(float),
                valid[ref].to_numpy(float),
                valid[f"{target}_std"].to_numpy(float),
                threshold,
            )
            line += (
                f"; MAE vs {ref}: {metrics['mae']:.2f} over {len(valid)} rows, "
                f"{metrics['within_2std']:.0%} within 2 std"
            )
            if threshold is not None:  # the screening rule's view of the same rows
                line += (
                    f"; Tc > {threshold:g} K: precision {metrics['precision']:.2f} "
                    f"({metrics['n_predicted_above']} predicted above), recall "
                    f"{metrics['recall']:.2f} (of {metrics['n_above']} above)"
                )
    print(line)


def cmd_predict(args: argparse.Namespace) -> int:
    from tcdesign.predict.api import predict_file

    table = predict_file(
        args.input,
        args.out,
        args.model,
        args.batch_size,
        progress=not args.quiet,
        device=args.device,
        members=args.members,
    )
    target = next(c for c in table.columns if c not in ("id", "formula")).removesuffix("_std")
    if not args.quiet:
        _print_table(table, target)
        print(f"wrote {args.out}")
    return 0


def cmd_train_predictor(args: argparse.Namespace) -> int:
    from tcdesign.predict.alignn import ALIGNNConfig
    from tcdesign.predict.api import train_predictor
    from tcdesign.predict.card import write_model_card
    from tcdesign.predict.train import TrainSettings

    set_threads(args)
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
    settings = TrainSettings(**loop_settings(args), weight_decay=args.weight_decay, loss=args.loss)
    out = Path(args.out)
    if refuses_to_overwrite(out, args.resume):
        return 2
    ensemble = train_predictor(
        *training_csvs(args), out, config, settings, args.members, resume=args.resume
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


def cmd_fetch_jarvis(args: argparse.Namespace) -> int:
    from tcdesign.data.jarvis import UnknownKeyError, fetch_dft_3d

    try:
        frame = fetch_dft_3d(args.target, args.out, args.extra_keys, args.store_dir)
    except RuntimeError as exc:  # jarvis-tools missing or the download failed
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 1
    except UnknownKeyError as exc:  # --target names a key that no dft_3d record has
        print(f"tcdesign: --target {args.target}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(frame)} structures with {args.target} to {args.out}")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the ``predict`` verb to the CLI's subcommands."""
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
        "--batch-size",
        type=positive_int,
        default=32,
        help="structures per forward pass (default 32)",
    )
    predict.add_argument(
        "--device",
        default="cpu",
        help="where the networks run: cpu (default), cuda, cuda:N, mps, or auto (a GPU when "
        "there is one); graphs are built on the CPU either way",
    )
    predict.add_argument(
        "--members",
        type=positive_int,
        default=None,
        help="use only the first N ensemble members, with the std calibrated for N: faster in "
        "proportion (the bundled model: 10 members; 5 give about twice the throughput at a val "
        "MAE within 0.02 K on average); default all",
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar or table")
    predict.set_defaults(func=cmd_predict)


def register_train(models: argparse._SubParsersAction) -> None:
    """Add ``predictor`` to the models of the ``train`` verb."""
    pred = models.add_parser(
        "predictor",
        help="train an ALIGNN ensemble for Tc or any numeric property",
        description="Train an ensemble of ALIGNN models (different seeds) with AdamW, a "
        "one-cycle schedule and early stopping on val MAE; calibrates the ensemble "
        "std on val so ~95% of val errors fall within 2 std. Writes DIR/member_k/ "
        "(checkpoints every epoch), DIR/ensemble.pt and DIR/metrics.json.",
    )
    add_data_flags(pred, "validation CSV for early stopping and calibration (default: bundled)")
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
    pred.add_argument("--members", type=positive_int, default=5, help="ensemble size (default 5)")
    pred.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the first member; member k uses seed+k (default 0)",
    )
    add_loop_flags(
        pred,
        epochs=40,
        patience=15,
        monitor="val MAE",
        batch_size=16,
        lr_help="peak learning rate of the one-cycle schedule",
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
    pred.add_argument("--hidden", type=positive_int, default=64, help="hidden width (default 64)")
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
    pred.add_argument(
        "--cutoff", type=positive_float, default=8.0, help="neighbour search radius (A)"
    )
    pred.add_argument("--max-neighbors", type=positive_int, default=12, help="neighbours per atom")
    add_run_flags(
        pred,
        resume_help="continue an interrupted training in --out (finished members are kept)",
        quiet_help="no progress bars",
    )
    pred.set_defaults(func=cmd_train_predictor)


def register_fetch(verbs: argparse._SubParsersAction) -> None:
    """Add the ``fetch-jarvis`` verb to the CLI's subcommands."""
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
