"""Screening of candidate superconductors: CHGNet relaxation, formation energy, energy above the
hull, metallicity, novelty, symmetry and Tc rules (``tcdesign screen``).

The public names are imported lazily, so that ``tcdesign --help`` does not load torch or CHGNet.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "ScreenSettings", "screen_file", "screen_records"]


def __getattr__(name: str) -> Any:
    if name in ("COLUMNS", "screen_file", "screen_records"):
        from tcdesign.screen import api

        return getattr(api, name)
    if name == "ScreenSettings":
        from tcdesign.screen.settings import ScreenSettings

        return ScreenSettings
    raise AttributeError(f"module 'tcdesign.screen' has no attribute {name!r}")
