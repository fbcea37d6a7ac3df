"""Screening of candidate superconductors: CHGNet relaxation, formation energy, energy above the
hull, metallicity, novelty, symmetry and Tc rules (``tcdesign screen``)."""

from tcdesign.screen.api import COLUMNS, screen_file, screen_records
from tcdesign.screen.settings import ScreenSettings

__all__ = ["COLUMNS", "ScreenSettings", "screen_file", "screen_records"]
