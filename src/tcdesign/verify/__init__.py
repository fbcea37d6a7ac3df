"""Quantum ESPRESSO electron-phonon verification: alpha2F -> lambda, omega_log, Allen-Dynes Tc.

``verify(structure, out, settings) -> EPCResult`` is the public call; it is imported lazily so
that ``tcdesign --help`` does not load pymatgen.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EPCResult", "VerifySettings", "make_settings", "verify"]


def __getattr__(name: str) -> Any:
    if name in ("EPCResult", "verify"):
        from tcdesign.verify import workflow

        return getattr(workflow, name)
    if name in ("VerifySettings", "make_settings"):
        from tcdesign.verify import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'tcdesign.verify' has no attribute {name!r}")
