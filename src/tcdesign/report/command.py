"""``tcdesign report``: argument parsing and the handler; the work is in the library.

Exit status: 0 when report.html was written; 2 when the folder does not exist or holds nothing to
report (raised as InputError, turned into one line by ``cli.main``); 1 is left to internal errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    """Handler of ``tcdesign report``; returns the exit status."""
    from tcdesign.report import write_report

    path = write_report(Path(args.dir), out=args.out, progress=not args.quiet)
    figures = sorted((Path(args.dir) / "figures").glob("*.png"))
    size = path.stat().st_size / 1e6
    print(
        f"wrote {path} ({size:.1f} MB) and {len(figures)} figures in {Path(args.dir) / 'figures'}/"
    )
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb to the CLI's subcommands."""
    parser = verbs.add_parser(
        "report",
        help="figures and a self-contained HTML report of a run folder",
        description="Write DIR/report.html (one file, figures embedded, works offline and as an "
        "e-mail attachment) and DIR/figures/*.png for the --out folder of 'tcdesign run', "
        "'generate' or 'screen': the funnel per method, the passed candidates with pictures, "
        "the periodic table of P(predicted Tc > 3 K), formula types, densities and packing "
        "fractions versus training, Tc distributions, and lambda versus omega_log of the "
        "verified candidates. Missing stages are reported as such.",
    )
    parser.add_argument(
        "dir", help="run folder (DIR of 'tcdesign run --out DIR', or generate/screen)"
    )
    parser.add_argument("--out", default=None, help="HTML path to write (default: DIR/report.html)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(func=cmd_report)
