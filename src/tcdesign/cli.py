"""``tcdesign <verb>``: parse arguments, call one library function, print.

Exit status: 0 success (also when some rows failed and were reported), 2 unusable input or
arguments, 1 internal error (set TCDESIGN_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from tcdesign.generate import command as generate_command
from tcdesign.pipeline.command import register as register_run
from tcdesign.predict import command as predict_command
from tcdesign.report.command import register as register_report
from tcdesign.screen.command import register as register_screen
from tcdesign.verify.command import register as register_verify
from tcdesign.verify.command import register_fetch as register_fetch_pseudos


def version_line() -> str:
    """One line, tcdesign X (torch Y, pymatgen Z, ...): the packages whose versions change
    results."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("tcdesign", "torch", "torch_geometric", "pymatgen", "chgnet", "lightning"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} not installed")
    return f"{parts[0]} ({', '.join(parts[1:])}; Python {sys.version.split()[0]})"


class _PrintVersion(argparse.Action):
    """``--version``: argparse's own action would wrap the line at the terminal width."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcdesign",
        description="Inverse design of conventional superconductors: generate crystals (CDVAE "
        "or element substitution), screen them (CHGNet relaxation, formation energy, hull, "
        "gap, Tc), verify the best with Quantum ESPRESSO electron-phonon calculations and "
        "report; 'tcdesign run' does it all. Structure inputs: a CSV with a 'cif' column "
        "(JARVIS/CDVAE layout), a CIF or POSCAR file, or a folder of them.",
    )
    parser.add_argument(
        "--version",
        action=_PrintVersion,
        help="print the versions of tcdesign and of the packages its numbers depend on, and exit",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    predict_command.register(verbs)
    # 'train' holds one model verb per package: predictor (predict/), generator (generate/)
    train = verbs.add_parser(
        "train",
        help="train a model",
        description="Train a model: 'predictor' (ALIGNN Tc ensemble) or 'generator' (CDVAE).",
    )
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    predict_command.register_train(models)
    generate_command.register_train(models)
    generate_command.register(verbs)
    predict_command.register_fetch(verbs)
    register_screen(verbs)
    register_verify(verbs)
    register_fetch_pseudos(verbs)
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

    previous = _terminate_as_interrupt()
    try:
        return args.func(args)
    except InputError as exc:
        print(f"tcdesign: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("tcdesign: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("tcdesign: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI's last line of defence: one line, exit 1
        if os.environ.get("TCDESIGN_DEBUG"):
            traceback.print_exc()
        print(f"tcdesign: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not _NOT_INSTALLED:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit, ``kill``), raised in the main thread so that a
    command stops the way Ctrl-C stops it: rows already written stay, worker processes and
    Quantum ESPRESSO runs are ended rather than orphaned, and a rerun resumes."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


_NOT_INSTALLED = object()


def _terminate_as_interrupt() -> Any:
    """Turn SIGTERM into :class:`Terminated` for this command; returns the handler it replaced,
    or ``_NOT_INSTALLED`` outside the main thread (where Python cannot install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return _NOT_INSTALLED
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":
    sys.exit(main())
