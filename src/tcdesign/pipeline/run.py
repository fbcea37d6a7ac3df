"""``tcdesign run``: generate -> screen -> rank -> verify the best -> report, resumable.

Layout of a run folder (the contract with :mod:`tcdesign.report`)::

    DIR/run.json                  settings, funnel counts per method, seconds per stage
    DIR/<method>/generated.csv    tcdesign generate (structures/ID.cif beside it)
    DIR/<method>/screened.csv     tcdesign screen   (relaxed/ID.cif beside it)
    DIR/candidates.csv            passed candidates of every method, ranked by predicted Tc
    DIR/verify/verify.csv         Quantum ESPRESSO results of the top K (DIR/verify/<id>/...)
    DIR/report.html, DIR/figures/

Every stage resumes: generation skips the ids already written, screening the candidates already
screened, verification the QE steps already finished; a rerun of a finished run redoes nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tcdesign import jsonio
from tcdesign.data.io import InputError, StructureRecord, read_structures
from tcdesign.pipeline.settings import RunSettings
from tcdesign.screen.settings import STAGE_FIELDS

if TYPE_CHECKING:
    from tcdesign.screen import ScreenSettings
    from tcdesign.verify.settings import VerifySettings

CANDIDATE_COLUMNS = [
    "rank",
    "method",
    "id",
    "formula",
    "tc",
    "tc_std",
    "e_form",
    "e_hull",
    "gap",
    "spacegroup",
    "novel",
    "phonon_stable",  # no imaginary CHGNet phonon mode
    "phonon_min_freq_cm1",
    "nef",  # DFT N(E_F), states/eV/atom (--fermi-dos)
    "cif",
]
# settings that may change between a run and its resumption without invalidating its outputs;
# n may only grow and methods may only be added (fewer would leave the extra crystals and method
# folders of the earlier run in the funnel and the report)
RESUMABLE_CHANGES = {("run", "n"), ("run", "verify"), ("run", "report"), ("run", "methods")}
RESUMABLE_CHANGES |= {("run", "device")}  # the same models on another device
# generate settings that matter only with --optimize-tc
OPTIMIZATION_KEYS = {"target_tc", "opt_steps", "opt_lr", "opt_start"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def settings_conflicts(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Settings whose change would mix incompatible outputs in one run folder."""
    conflicts = []
    optimized = any(  # generate optimises with optimize_tc or with a target_tc
        settings.get("generate", {}).get("optimize_tc")
        or settings.get("generate", {}).get("target_tc") is not None
        for settings in (old, new)
    )
    before, after = old.get("run", {}), new.get("run", {})
    # a folder from a run without CDVAE (--method substitution) holds nothing the generate
    # settings shape; the substitution baseline uses only run.n and run.seed
    cdvae_before = "cdvae" in (before.get("methods") or ["cdvae"])
    n_before, n_after = before.get("n"), after.get("n")
    if isinstance(n_before, int) and isinstance(n_after, int) and n_after < n_before:
        conflicts.append(f"run.n: {n_before} -> {n_after} (n can grow on a resume)")
    dropped = [m for m in before.get("methods") or [] if m not in (after.get("methods") or [])]
    if dropped:
        conflicts.append(
            f"run.methods: {', '.join(dropped)} dropped (methods can be added on a resume)"
        )
    for stage in ("run", "generate", "screen"):
        before, after = old.get(stage, {}), new.get(stage, {})
        for key in sorted(set(before) | set(after)):
            if (stage, key) in RESUMABLE_CHANGES:
                continue
            if stage == "screen" and key not in STAGE_FIELDS:
                continue  # rules, references, workers: the screen stage reapplies them on resume
            if stage == "generate" and key in OPTIMIZATION_KEYS and not optimized:
                continue  # the latent optimisation's settings do not matter when it is off
            if stage == "generate" and not cdvae_before:
                continue  # only CDVAE output depends on them, and the folder has none yet
            if before.get(key) != after.get(key):
                conflicts.append(f"{stage}.{key}: {before.get(key)!r} -> {after.get(key)!r}")
    return conflicts


class RunFolderError(InputError, ValueError):
    """An --out folder that cannot take this run (not a folder, unreadable run.json, a run made
    with other settings): an input error, exit status 2."""


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class RunFolder:
    """DIR of a run: its paths and its run.json, rewritten after every stage."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        """``settings``: the run's settings as a dictionary, every stage's defaults filled in."""
        self.out = out
        self.path = out / "run.json"
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, no permission, a read-only file system
            raise RunFolderError(f"{out}: cannot be the run folder ({exc.strerror})") from None
        new = _jsonable(settings)
        self.state: dict[str, Any] = {}
        if self.path.exists():
            try:
                self.state = json.loads(self.path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RunFolderError(
                    f"{self.path} cannot be read ({exc}); it records the settings this run was "
                    "made with: restore it, or delete it to resume with the settings given now"
                ) from None
            if not isinstance(self.state, dict):
                raise RunFolderError(
                    f"{self.path} does not hold a JSON object; restore or delete it"
                )
            conflicts = settings_conflicts(self.state.get("settings", {}), new)
            if conflicts:
                raise RunFolderError(
                    f"{out} holds a run made with other settings ({'; '.join(conflicts)}); "
                    "rerun with the same settings to resume it, or choose another --out"
                )
        self.state.setdefault("started", _now())
        self.state.setdefault("seconds", {})
        self.state.setdefault("funnel", {})
        self.state.update(settings=new, tcdesign_version=version("tcdesign"), finished=None)
        self.state["methods"] = list(settings["run"]["methods"])
        self.save()

    def method_dir(self, method: str) -> Path:
        return self.out / method

    def save(self) -> None:
        """Write run.json whole or not at all (a kill while writing keeps the previous one)."""
        jsonio.write_json(self.path, _jsonable(self.state))

    def record(self, stage: str, seconds: float, **values: Any) -> None:
        """Add ``seconds`` to the stage's time over every invocation of the run, and save."""
        self.state["seconds"][stage] = round(self.state["seconds"].get(stage, 0.0) + seconds, 2)
        self.state.update(values)
        self.save()


def _bool_column(series: pd.Series) -> pd.Series:
    return series.astype(str).str.lower().isin(["true", "1", "yes"])


def funnel_counts(method_dir: Path) -> dict[str, int]:
    """generated -> valid -> relaxed -> passed for one method's folder (0 for missing stages)."""
    counts = {"generated": 0, "valid": 0, "screened": 0, "relaxed": 0, "passed": 0}
    generated = method_dir / "generated.csv"
    if generated.exists() and generated.stat().st_size:
        table = pd.read_csv(generated, dtype={"id": str})
        counts["generated"] = len(table)
        counts["valid"] = int((table.status == "ok").sum())
    screened = method_dir / "screened.csv"
    if screened.exists() and screened.stat().st_size:
        table = pd.read_csv(screened, dtype={"id": str})
        counts["screened"] = len(table)
        counts["relaxed"] = int((table.status == "ok").sum())
        counts["passed"] = int(_bool_column(table.passed).sum())
    return counts


def generate_stage(folder: RunFolder, settings: RunSettings, method: str, progress: bool) -> None:
    """``tcdesign generate`` into DIR/<method> (resumes what is there)."""
    from tcdesign.generate.api import generate
    from tcdesign.generate.sample import LangevinSchedule

    stage = settings.generate
    generate(
        settings.run.n,
        folder.method_dir(method),
        method=method,  # type: ignore[arg-type]
        seed=settings.run.seed,
        model=stage.model,
        optimize_tc=stage.optimize_tc,
        target_tc=stage.target_tc,
        opt_steps=stage.opt_steps,
        opt_lr=stage.opt_lr,
        opt_start=stage.opt_start,
        schedule=LangevinSchedule(
            steps_per_level=stage.steps_per_level,
            step_lr=stage.step_lr,
            levels=stage.levels,
            composition_temperature=stage.composition_temperature,
            composition=stage.composition,
        ),
        batch_size=stage.batch_size,
        progress=progress,
        device=settings.run.device,
    )


def valid_generated(method_dir: Path, n: int) -> list[StructureRecord]:
    """The usable crystals among the first ``n`` ids of DIR/<method>/generated.csv."""
    table = pd.read_csv(method_dir / "generated.csv", dtype={"id": str})
    keep = set(table.id[table.status == "ok"].head(n))
    ids = [f"gen-{k:05d}" for k in range(n)]
    wanted = {i for i in ids if i in keep}
    return [r for r in read_structures(method_dir / "generated.csv") if r.id in wanted and r.ok]


def screen_stage(
    folder: RunFolder, n: int, method: str, settings: ScreenSettings, progress: bool
) -> None:
    """``tcdesign screen`` of the valid generated crystals into DIR/<method>."""
    from tcdesign.screen import screen_records

    method_dir = folder.method_dir(method)
    screen_records(valid_generated(method_dir, n), method_dir, settings, progress=progress)


def rank_candidates(folder: RunFolder, methods: tuple[str, ...]) -> pd.DataFrame:
    """Passed candidates of every method, highest predicted Tc first -> DIR/candidates.csv."""
    frames = []
    for method in methods:
        path = folder.method_dir(method) / "screened.csv"
        if not path.exists() or not path.stat().st_size:
            continue
        table = pd.read_csv(path, dtype={"id": str})
        passed = table[_bool_column(table.passed)].copy()
        passed["method"] = method
        relaxed = passed.get("relaxed_cif", pd.Series("", index=passed.index)).fillna("")
        passed["cif"] = [
            f"{method}/{rel}" if rel else f"{method}/structures/{rid}.cif"
            for rel, rid in zip(relaxed, passed.id, strict=True)
        ]
        frames.append(passed)
    ranked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(ranked):
        ranked = ranked.sort_values("tc", ascending=False, kind="stable").reset_index(drop=True)
        ranked["rank"] = range(1, len(ranked) + 1)
    ranked = ranked.reindex(columns=CANDIDATE_COLUMNS)
    ranked.to_csv(folder.out / "candidates.csv", index=False)
    return ranked


def _phonon_note(stable: object, lowest: float) -> str:
    """'  CHGNet phonons stable' / '... unstable (-49 cm^-1)' for a candidate line, '' when
    the check was not made."""
    if str(stable) == "True":
        return "  CHGNet phonons stable"
    if str(stable) == "False":
        return f"  CHGNet phonons unstable ({lowest:.0f} cm^-1)"
    return ""


def choose_for_verification(
    ranked: pd.DataFrame,
    out: Path,
    k: int,
    pseudo_dir: str | None,
    explicit: dict[str, str],
    max_q_points: int = 0,
    qe_settings: VerifySettings | None = None,
    unstable: bool = False,
) -> tuple[list[StructureRecord], list[dict[str, str]]]:
    """The best ``k`` candidates QE can run, and the better-ranked ones skipped with the reason:
    imaginary CHGNet phonon modes (``phonon_stable`` False; unless ``unstable``), an element
    without a pseudopotential, or (``max_q_points`` > 0) more irreducible q-points than that on
    the grid ``qe_settings`` gives (counted as ``tcdesign verify --plan`` does)."""
    from pymatgen.core import Structure

    from tcdesign.verify.plan import phonon_q_points
    from tcdesign.verify.pseudo import (
        PseudopotentialError,
        choose_pseudopotentials,
        default_pseudo_dir,
    )
    from tcdesign.verify.settings import VerifySettings
    from tcdesign.verify.workflow import missing_programs

    chosen: list[StructureRecord] = []
    skipped: list[dict[str, str]] = []
    absent = missing_programs()
    directory = Path(pseudo_dir) if pseudo_dir else default_pseudo_dir()
    reason = ""  # why nothing can run: then only the top k are listed as skipped
    if absent:
        reason = f"{', '.join(absent)} not found (install Quantum ESPRESSO)"
    elif directory is None:
        reason = "no pseudopotential folder (--pseudo-dir)"
    if reason:
        top = ranked.head(k)
        ids = [f"{m}-{i}" for m, i in zip(top.method, top.id, strict=True)]
        return [], [
            {"id": rid, "formula": formula, "reason": reason}
            for rid, formula in zip(ids, top.formula, strict=True)
        ]
    for row in ranked.itertuples():
        if len(chosen) == k:
            break
        rid = f"{row.method}-{row.id}"
        if not unstable and str(getattr(row, "phonon_stable", "")) == "False":
            lowest = getattr(row, "phonon_min_freq_cm1", math.nan)
            reason = (
                f"imaginary CHGNet phonon modes (lowest {lowest:.0f} cm^-1); "
                "--verify-unstable runs it anyway"
            )
            skipped.append({"id": rid, "formula": row.formula, "reason": reason})
            continue
        structure = Structure.from_file(out / row.cif)
        elements = [e.symbol for e in structure.composition.elements]
        try:
            choose_pseudopotentials(elements, directory, explicit)
        except PseudopotentialError as exc:
            skipped.append({"id": rid, "formula": row.formula, "reason": str(exc)})
            continue
        if max_q_points > 0:
            grid, n_q = phonon_q_points(structure, qe_settings or VerifySettings())
            if n_q > max_q_points:
                reason = (
                    f"{n_q} irreducible q-points on its {grid} grid, "
                    f"above max_q_points {max_q_points}"
                )
                skipped.append({"id": rid, "formula": row.formula, "reason": reason})
                continue
        chosen.append(StructureRecord(rid, structure))
    return chosen, skipped


def earlier_verification(folder: RunFolder, ranked: pd.DataFrame) -> pd.DataFrame:
    """The rows of an existing DIR/verify/verify.csv whose candidates are still ranked; the file
    is rewritten without the others (candidates that no longer pass, e.g. after a rerun with
    other rules). An empty frame when there is no such file."""
    path = folder.out / "verify" / "verify.csv"
    if not path.is_file() or not path.stat().st_size:
        return pd.DataFrame()
    table = pd.read_csv(path, dtype={"id": str, "method": str, "source_id": str})
    current = {f"{m}-{i}" for m, i in zip(ranked.method, ranked.id, strict=True)}
    kept = table[table.id.isin(current)].reset_index(drop=True)
    if len(kept) < len(table):
        kept.to_csv(path, index=False)
    return kept


def verify_stage(
    folder: RunFolder, settings: RunSettings, ranked: pd.DataFrame, progress: bool = False
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Quantum ESPRESSO on the top ``settings.run.verify`` candidates -> DIR/verify/verify.csv."""
    from tcdesign.verify.executor import run_many
    from tcdesign.verify.settings import make_settings

    stage = settings.verify
    qe_settings = make_settings(stage.preset, **stage.overrides)
    chosen, skipped = choose_for_verification(
        ranked,
        folder.out,
        settings.run.verify,
        stage.pseudo_dir,
        qe_settings.pseudopotentials,
        stage.max_q_points,
        qe_settings,
        stage.unstable,
    )
    verify_dir = folder.out / "verify"
    if not chosen:  # what an earlier invocation verified stays, for the candidates still ranked
        return earlier_verification(folder, ranked), skipped
    table = run_many(
        chosen, verify_dir, qe_settings, stage.pseudo_dir, workers=stage.workers, progress=progress
    )
    source = {f"{m}-{i}": (m, i) for m, i in zip(ranked.method, ranked.id, strict=True)}
    table["method"] = [source[i][0] for i in table.id]
    table["source_id"] = [source[i][1] for i in table.id]
    table.to_csv(verify_dir / "verify.csv", index=False)
    return table, skipped


def verified_counts(table: pd.DataFrame, method: str, tc_min: float) -> dict[str, int]:
    """verified (QE finished), and of those: Tc above tc_min, and dynamically stable too."""
    if table.empty:
        return {"verified": 0, "dft_tc_above_min": 0, "dft_stable_above_min": 0}
    mine = table[(table.method == method) & (table.status == "ok")]
    above = mine[pd.to_numeric(mine.tc_K, errors="coerce") > tc_min]
    stable = above[_bool_column(above.dynamically_stable)]
    return {
        "verified": len(mine),
        "dft_tc_above_min": len(above),
        "dft_stable_above_min": len(stable),
    }


def run_pipeline(
    out: str | Path,
    settings: RunSettings,
    *,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole pipeline into ``out``; returns the contents of ``out/run.json``.

    Raises :class:`RunFolderError` (a ValueError and an InputError) when ``out`` cannot be the
    run folder or holds a run made with incompatible settings.
    """
    from tcdesign.screen import ScreenSettings

    if echo is None:

        def echo(line: str) -> None:
            print(line, flush=True)  # stage lines show at once, also when piped to a log

    from tcdesign.devices import resolve_device

    out = Path(out)
    resolve_device(settings.run.device)  # a missing GPU is an InputError before any work
    # unknown keys fail before any work
    screen_settings = ScreenSettings.from_dict({"device": settings.run.device, **settings.screen})
    folder = RunFolder(out, {**settings.as_dict(), "screen": asdict(screen_settings)})
    methods = settings.run.methods
    n_stages = 3 + (settings.run.verify > 0) + settings.run.report
    step = 0

    def header(text: str) -> None:
        nonlocal step
        step += 1
        echo(f"[{step}/{n_stages}] {text}")

    header(f"generate {settings.run.n} per method ({', '.join(methods)})")
    started = time.perf_counter()
    for method in methods:
        generate_stage(folder, settings, method, progress)
        counts = funnel_counts(folder.method_dir(method))
        echo(f"  {method}: {counts['generated']} generated, {counts['valid']} valid")
    folder.record("generate", time.perf_counter() - started)

    header("screen: relax, formation energy, hull, gap, novelty, Tc")
    started = time.perf_counter()
    for method in methods:
        screen_stage(folder, settings.run.n, method, screen_settings, progress)
        counts = funnel_counts(folder.method_dir(method))
        folder.state["funnel"][method] = counts
        echo(
            f"  {method}: {counts['valid']} valid -> {counts['relaxed']} relaxed -> "
            f"{counts['passed']} passed"
        )
    folder.record("screen", time.perf_counter() - started)

    header("rank the passed candidates")
    ranked = rank_candidates(folder, methods)
    echo(f"  {len(ranked)} candidates -> {out / 'candidates.csv'}")
    for row in ranked.head(5).itertuples():
        echo(
            f"  {row.rank:>3}. {row.formula:<14} Tc {row.tc:5.1f} +/- {row.tc_std:4.1f} K"
            + _phonon_note(row.phonon_stable, row.phonon_min_freq_cm1)
            + (f"  N(E_F) {row.nef:.2f}/eV/atom" if pd.notna(row.nef) else "")
        )

    verify_table, skipped = earlier_verification(folder, ranked), []
    if settings.run.verify > 0:
        header(f"verify the top {settings.run.verify} with Quantum ESPRESSO")
        started = time.perf_counter()
        verify_table, skipped = verify_stage(folder, settings, ranked, progress)
        for item in skipped:
            echo(f"  skipped {item['id']} ({item['formula']}): {item['reason']}")
        done = int((verify_table.status == "ok").sum()) if len(verify_table) else 0
        statuses = list(verify_table.status) if len(verify_table) else []
        notes = [
            f"{statuses.count(status)} {status}: {why}"
            for status, why in (("magnetic", "no phonons"), ("unstable", "phonons stopped"))
            if statuses.count(status)
        ]
        note = f" ({'; '.join(notes)})" if notes else ""
        echo(f"  {done} of {len(verify_table)} verified{note} -> {out / 'verify' / 'verify.csv'}")
        folder.record("verify", time.perf_counter() - started, skipped_verify=skipped)
    else:  # no DFT attempted now: an earlier invocation's skip list no longer describes the run
        folder.state.pop("skipped_verify", None)
    tc_min = screen_settings.tc_min
    for method in methods:
        folder.state["funnel"][method].update(verified_counts(verify_table, method, tc_min))
    folder.save()

    if settings.run.report:
        header("report")
        started = time.perf_counter()
        from tcdesign.report import write_report

        folder.state["finished"] = _now()  # the report shows when the pipeline finished
        folder.save()
        try:
            html = write_report(out, progress=progress)
        except BaseException:  # a failed or interrupted report: the run is not finished
            folder.state["finished"] = None
            folder.save()
            raise
        echo(f"  wrote {html}")
        folder.record("report", time.perf_counter() - started)
    elif (out / "report.html").exists():
        echo(
            f"  {out / 'report.html'} is from an earlier invocation and was not updated "
            f"(--no-report); 'tcdesign report {out}' redraws it"
        )
    folder.state["finished"] = _now()
    folder.save()
    return folder.state
