"""Flags and steps shared by the training verbs (``train predictor``, ``train generator``).

Kept free of heavy imports so that building the parser (``tcdesign --help``) stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is a usage error, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (a bad value is a usage error, exit status 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def add_data_flags(parser: argparse.ArgumentParser, val_help: str) -> None:
    """--train, --val and --out of a training verb."""
    parser.add_argument(
        "--train",
        default=None,
        help="training CSV (default: the bundled JARVIS superconductor train split)",
    )
    parser.add_argument("--val", default=None, help=val_help)
    parser.add_argument("--out", required=True, help="output folder")


def add_loop_flags(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    patience: int,
    monitor: str,
    batch_size: int,
    lr_help: str,
) -> None:
    """--epochs, --patience, --batch-size and --lr; ``monitor`` is what early stopping watches."""
    parser.add_argument(
        "--epochs", type=positive_int, default=epochs, help=f"maximum epochs (default {epochs})"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=patience,
        help=f"early-stopping patience in epochs on {monitor} (default {patience})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"batch size (default {batch_size})",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help=f"{lr_help} (default 1e-3)")


def add_run_flags(parser: argparse.ArgumentParser, *, resume_help: str, quiet_help: str) -> None:
    """--resume, the Lightning device flags and --quiet, the last flags of a training verb."""
    parser.add_argument("--resume", action="store_true", help=resume_help)
    add_device_flags(parser)
    parser.add_argument("--quiet", action="store_true", help=quiet_help)


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


def set_threads(args: argparse.Namespace) -> None:
    """Apply --threads (0 leaves torch's default)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def training_devices(args: argparse.Namespace):
    """The Lightning device settings of a training verb's flags."""
    from tcdesign.training import Devices, check_devices

    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    settings = Devices(args.accelerator, devices, args.num_nodes, args.strategy, args.precision)
    check_devices(settings)  # a refused flag is exit status 2, before the data is read
    return settings


def loop_settings(args: argparse.Namespace) -> dict:
    """Keyword arguments of the settings that every training verb takes from its flags."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "patience": args.patience,
        "seed": args.seed,
        "progress": not args.quiet,
        "devices": training_devices(args),
    }


def training_csvs(args: argparse.Namespace) -> tuple:
    """The train and val CSVs of --train and --val, the bundled splits by default."""
    from tcdesign.predict.api import bundled_csv

    return args.train or bundled_csv("train"), args.val or bundled_csv("val")


def refuses_to_overwrite(out: Path, resume: bool) -> bool:
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
