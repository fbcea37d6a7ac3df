"""Run folders for the report tests: real substitution-baseline structures, hand-made screening
and DFT tables with realistic values (as ``tcdesign run`` writes them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

from tcdesign.generate.api import generate
from tcdesign.verify.eliashberg import allen_dynes_tc

N_GENERATED = 12
TC_MIN = 5.0


def screened_table(generated: pd.DataFrame, folder: Path, seed: int) -> pd.DataFrame:
    """A screened.csv for the valid generated rows: relaxed CIFs written to folder/relaxed/, the
    first row failed, the passed flag following the paper's rules."""
    rng = np.random.default_rng(seed)
    relaxed = folder / "relaxed"
    relaxed.mkdir(exist_ok=True)
    rows = []
    valid = generated[generated.status == "ok"].reset_index(drop=True)
    for k, row in valid.iterrows():
        structure = Structure.from_str(row.cif, fmt="cif")
        structure.scale_lattice(structure.volume * 1.03)  # a relaxation that expanded the cell
        structure.to(filename=str(relaxed / f"{row.id}.cif"))
        tc_unrelaxed = float(rng.uniform(0.0, 14.0))
        tc = max(tc_unrelaxed + float(rng.normal(0.0, 1.5)), 0.0)
        e_form = float(rng.uniform(-1.2, 0.3))
        gap = float(rng.choice([0.0, 0.0, 0.0, 1.1]))
        status = "error" if k == 0 else "ok"
        passed = status == "ok" and tc > TC_MIN and e_form < 0 and gap < 0.05
        rows.append(
            {
                "id": row.id,
                "formula": row.formula,
                "tc": tc if status == "ok" else np.nan,
                "tc_std": float(rng.uniform(0.5, 3.0)) if status == "ok" else np.nan,
                "e_form": e_form if status == "ok" else np.nan,
                "gap": gap if status == "ok" else np.nan,
                "e_hull": float(rng.uniform(0.0, 0.6)) if status == "ok" else np.nan,
                "spacegroup": int(rng.choice([1, 62, 139, 194, 221, 225])),
                "novel": bool(k % 2),
                "passed": passed,
                "status": status,
                "error": "relaxation did not converge in 500 steps" if status == "error" else "",
                "tc_unrelaxed": tc_unrelaxed,
                "tc_unrelaxed_std": float(rng.uniform(0.5, 3.0)),
                "duplicate_of": "",
                "ehull_reference": "bundled",
                "relaxed_cif": f"relaxed/{row.id}.cif" if status == "ok" else "",
                # the screen's CHGNet phonon check runs for the candidates that pass
                "phonon_stable": (k % 3 != 0) if passed else None,
                "phonon_min_freq_cm1": (0.0 if k % 3 else -87.4) if passed else np.nan,
            }
        )
    return pd.DataFrame(rows)


def write_verify(run: Path, candidates: list[tuple[str, str, str]]) -> pd.DataFrame:
    """verify/verify.csv plus result.json and alpha2F.csv for (method, source_id, formula)
    candidates: the first stable with Allen-Dynes Tc 16 K, the second unstable with 4 K, the third
    failed."""
    values = [  # lambda, omega_log (K), min frequency (cm^-1), dynamically stable
        (0.92, 265.0, 35.2, True),
        (0.61, 180.5, -48.0, False),
        (0.48, 320.0, 12.0, True),
    ]
    rows = []
    for k, (method, source, formula) in enumerate(candidates):
        rid = f"{method}-{source}"
        folder = run / "verify" / rid
        folder.mkdir(parents=True)
        failed = k == 2
        lam, omega_log, min_freq, stable = values[k % len(values)]
        tc = allen_dynes_tc(lam, omega_log, 0.1)
        result = {
            "id": rid,
            "formula": formula,
            "status": "error" if failed else "ok",
            "error": "ph.x failed: S matrix not positive definite" if failed else None,
            "lambda": None if failed else lam,
            "omega_log_K": None if failed else omega_log,
            "tc_K": None if failed else tc,
            "min_freq_cm1": None if failed else min_freq,
            "dynamically_stable": None if failed else stable,
            "headline_sigma_Ry": 0.025,
        }
        (folder / "result.json").write_text(json.dumps(result))
        if not failed:
            omega = np.linspace(1.0, 600.0, 300)
            a2f = lam * 0.5 * np.exp(-(((omega - 200.0 - 40 * k) / 60.0) ** 2))
            pd.DataFrame(
                {
                    "omega_cm1": omega,
                    "omega_K": omega * 1.4388,
                    "a2F_sigma_0.005Ry": a2f * 0.9,
                    "a2F_sigma_0.025Ry": a2f,
                }
            ).to_csv(folder / "alpha2F.csv", index=False)
        rows.append(
            {
                "id": rid,
                "formula": formula,
                "lambda": np.nan if failed else lam,
                "omega_log_K": np.nan if failed else omega_log,
                "tc_K": np.nan if failed else tc,
                "min_freq_cm1": np.nan if failed else min_freq,
                "dynamically_stable": "" if failed else stable,
                "converged": "" if failed else True,
                "status": "error" if failed else "ok",
                "error": result["error"] or "",
                "total_seconds": 412.0,
                "folder": str(folder),
                "method": method,
                "source_id": source,
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(run / "verify" / "verify.csv", index=False)
    return table


@pytest.fixture(scope="session")
def generated_folder(tmp_path_factory) -> Path:
    """The output of ``tcdesign generate --method substitution`` (real structures)."""
    folder = tmp_path_factory.mktemp("generated") / "substitution"
    generate(N_GENERATED, folder, method="substitution", seed=3, progress=False)
    return folder


def build_run(root: Path, generated_folder: Path, methods: tuple[str, ...]) -> Path:
    """A full run folder: run.json, per method generated + screened + relaxed, and verify/."""
    run = root / "run"
    run.mkdir()
    candidates = []
    for k, method in enumerate(methods):
        folder = run / method
        shutil.copytree(generated_folder, folder)
        generated = pd.read_csv(folder / "generated.csv", dtype={"id": str, "error": str})
        generated["method"] = method
        if k == 1:  # the second method lost two samples
            generated.loc[generated.index[:2], ["status", "error"]] = ["invalid", "atoms too close"]
        generated.to_csv(folder / "generated.csv", index=False)
        screened = screened_table(generated, folder, seed=k)
        screened.to_csv(folder / "screened.csv", index=False)
        passed = screened[screened.passed].sort_values("tc", ascending=False)
        candidates += [(method, row.id, row.formula) for row in passed.head(3).itertuples()]
    write_verify(run, candidates[:3])
    info = {
        "settings": {"n": N_GENERATED, "screen": {"tc_min": TC_MIN}, "verify": {"mu_star": 0.1}},
        "methods": list(methods),
        "seconds": {"generate": 12.5, "screen": 40.2, "verify": 1236.0},
        "skipped_verify": [
            {"id": f"{methods[0]}-gen-00099", "reason": "no pseudopotential for Nb"}
        ],
        "created": "2026-01-01T12:00:00",
    }
    (run / "run.json").write_text(json.dumps(info))
    return run


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory, generated_folder) -> Path:
    """A one-method (substitution) run with screening and DFT results."""
    return build_run(tmp_path_factory.mktemp("run1"), generated_folder, ("substitution",))


@pytest.fixture(scope="session")
def two_method_run(tmp_path_factory, generated_folder) -> Path:
    """A run with two methods (cdvae and substitution) side by side."""
    return build_run(tmp_path_factory.mktemp("run2"), generated_folder, ("cdvae", "substitution"))


@pytest.fixture()
def copy_of(tmp_path):
    """Copy a session run folder into this test's tmp_path (for tests that change it)."""

    def copy(folder: Path) -> Path:
        target = tmp_path / folder.name
        shutil.copytree(folder, target)
        return target

    return copy
