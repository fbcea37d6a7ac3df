"""``tcdesign report``: the paper's figures and a self-contained HTML report of any run folder.

The public names are imported lazily, so that ``tcdesign --help`` does not load matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FIGURES_DIR", "REPORT_HTML", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tcdesign.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'tcdesign.report' has no attribute {name!r}")
