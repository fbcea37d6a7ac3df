"""Library entry points behind ``tcdesign train generator``, ``generate`` and ``csp``."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from pymatgen.core import Element, Structure
from pymatgen.io.cif import CifWriter
from tqdm.auto import tqdm

from tcdesign.data.io import TC_TARGET, InputError, read_structures, validate_structure
from tcdesign.devices import bridge_decoder, resolve_device
from tcdesign.folder_settings import check_folder_settings
from tcdesign.generate.cdvae import CDVAE, CDVAEConfig
from tcdesign.generate.data import CrystalDataset
from tcdesign.generate.defaults import CSP_POOL, ENERGY_WEIGHT, OPT_LR, OPT_STARTS, OptStart
from tcdesign.generate.energy_rank import rank_by_energy
from tcdesign.generate.hybrid import HybridSettings, encode_structures, hybrid_csp
from tcdesign.generate.sample import (
    DecodedBatch,
    LangevinSchedule,
    composition_log_likelihood,
    decode,
    decode_optimized,
)
from tcdesign.generate.substitution import (
    ATTEMPTS_PER_CRYSTAL,
    fit_atomic_volumes,
    parse_cell_formula,
    substitute,
    template_csp,
)
from tcdesign.generate.train import GeneratorSettings, train_generator
from tcdesign.predict.api import bundled_csv, report_bad_rows
from tcdesign.screen.relax import static_energies_per_atom
from tcdesign.training import is_main_process


def load_crystals(path: str | Path, max_atoms: int, progress: bool = False) -> CrystalDataset:
    """Usable structures of a CSV/CIF/folder with their Tc (NaN where absent).

    Rows with more atoms than the generator supports are reported and left out.
    """
    records = read_structures(path, [TC_TARGET])
    report_bad_rows(records, limit=5, source=Path(path).name)
    good = [r for r in records if r.ok]
    too_big = [r for r in good if len(r.structure) > max_atoms]
    if too_big:
        print(
            f"tcdesign: {Path(path).name}: {len(too_big)} structures with more than "
            f"{max_atoms} atoms left out (first: {too_big[0].id})"
        )
    good = [r for r in good if len(r.structure) <= max_atoms]
    if len(good) < 2:
        raise InputError(f"{path}: fewer than 2 usable structures")
    return CrystalDataset(
        [r.structure for r in good],
        [r.targets.get(TC_TARGET, float("nan")) for r in good],
        progress=progress,
    )


def train_generator_from_csv(
    train_csv: str | Path,
    val_csv: str | Path,
    out_dir: str | Path,
    config: CDVAEConfig,
    settings: GeneratorSettings,
    resume: bool = True,
) -> dict:
    """Train CDVAE on ``train_csv`` (val loss on ``val_csv``); returns metrics.json's content."""
    train = load_crystals(train_csv, config.max_atoms, settings.progress)
    val = load_crystals(val_csv, config.max_atoms, settings.progress)
    train_generator(train, val, config, settings, Path(out_dir), resume)
    if not is_main_process():
        return {}  # an extra DDP process: rank 0 writes and reports
    return json.loads((Path(out_dir) / "metrics.json").read_text())


GENERATED_COLUMNS = ["id", "formula", "cif", "method", "status", "error", "tc_head"]
BUNDLED_GENERATOR = "models/cdvae/generator.pt"  # inside the tcdesign package


def load_generator(path: str | Path | None = None, device: str | None = None) -> CDVAE:
    """A trained CDVAE from ``path``, or the bundled one; with ``device`` (e.g. ``cuda``) its
    score network runs there (:func:`tcdesign.devices.bridge_decoder`)."""
    where = resolve_device(device)
    if path is None:
        bundled = resources.files("tcdesign").joinpath(BUNDLED_GENERATOR)
        if not bundled.is_file():
            raise InputError(
                "no bundled generator in this version of tcdesign; train one with "
                "'tcdesign train generator --out DIR' and pass --model DIR/generator.pt"
            )
        path = Path(str(bundled))
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        model = CDVAE.from_checkpoint(checkpoint)
    except (
        RuntimeError,
        ValueError,
        KeyError,
        AttributeError,
        EOFError,
        pickle.UnpicklingError,
    ) as exc:
        raise InputError(f"{path}: not a tcdesign generator file ({exc})") from None
    return bridge_decoder(model, where)


def sample_status(structure: Structure | None) -> tuple[str, str]:
    """("ok", "") for a usable crystal, else ("broken"/"invalid", reason)."""
    if structure is None:
        return "broken", "non-finite coordinates or lattice"
    problem = validate_structure(structure)
    return ("invalid", problem) if problem else ("ok", "")


class GeneratedWriter:
    """Streams generated crystals to DIR/structures/ID.cif and DIR/generated.csv (resumable)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.structures = out_dir / "structures"
        self.structures.mkdir(parents=True, exist_ok=True)
        self.table = out_dir / "generated.csv"
        self.done: set[str] = set()
        if self.table.exists() and self.table.stat().st_size:
            self.done = set(pd.read_csv(self.table, usecols=["id"], dtype=str).id)

    def write(
        self, rid: str, structure: Structure | None, method: str, tc_head: float = float("nan")
    ) -> dict:
        status, error = sample_status(structure)
        cif = ""
        if structure is not None:
            cif = str(CifWriter(structure))
            (self.structures / f"{rid}.cif").write_text(cif)
        row = {
            "id": rid,
            "formula": structure.composition.reduced_formula if structure else "",
            "cif": cif,
            "method": method,
            "status": status,
            "error": error,
            "tc_head": tc_head,
        }
        header = not self.table.exists() or self.table.stat().st_size == 0
        pd.DataFrame([row], columns=GENERATED_COLUMNS).to_csv(
            self.table, mode="a", header=header, index=False
        )
        self.done.add(rid)
        return row


def model_identity(path: str | Path | None) -> str:
    """What identifies a generator file in a run's settings: the SHA-256 of its bytes (a
    retrained model at the same path counts as another model), or the path as given when it
    cannot be read (loading it reports that)."""
    if path is None:
        path = Path(str(resources.files("tcdesign").joinpath(BUNDLED_GENERATOR)))
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return str(path)


def check_run_settings(out_dir: Path, name: str, settings: dict, has_results: bool) -> None:
    """Refuse to add to ``out_dir``'s results with other settings than made them
    (:func:`tcdesign.folder_settings.check_folder_settings`, the settings kept in
    ``out_dir/name``): a rerun would otherwise skip every finished id and hand back crystals of
    the old settings as if they were the new ones, or mix both."""
    check_folder_settings(
        out_dir,
        name,
        settings,
        has_results,
        "rerun with the same settings to resume or extend them, or choose another --out",
    )


GENERATE_SETTINGS = "generate_settings.json"  # in the --out folder of generate
CSP_SETTINGS = "csp_settings.json"  # in the --out folder of csp


def training_latents(model: CDVAE, chunk: int = 64) -> torch.Tensor:
    """(n_train, latent) encoder means of the bundled training crystals within the model's atom
    range: the starting points of CDVAE's optimisation task."""
    records = read_structures(bundled_csv("train"))
    pool = [r.structure for r in records if r.ok and len(r.structure) <= model.config.max_atoms]
    return torch.cat(
        [encode_structures(model, pool[i : i + chunk])[0] for i in range(0, len(pool), chunk)]
    )


def sample_batch(
    model: CDVAE,
    n: int,
    generator: torch.Generator,
    schedule: LangevinSchedule | None = None,
    optimize: bool = False,
    opt_steps: int = 100,
    opt_lr: float = OPT_LR,
    target_tc: float | None = None,
    starts: torch.Tensor | None = None,
) -> DecodedBatch:
    """``n`` crystals from latents z ~ N(0, I), or with ``optimize`` from latents moved up the
    Tc head (:func:`decode_optimized`) that start at z or, given ``starts`` (e.g.
    :func:`training_latents`), at rows of it drawn at random."""
    z = torch.randn(n, model.config.latent, generator=generator)
    if not optimize:
        return decode(model, z, schedule, generator)
    if starts is not None:
        z = starts[torch.randint(0, len(starts), (n,), generator=generator)]
    return decode_optimized(model, z, schedule, generator, opt_steps, opt_lr, target_tc)


def generate(
    n: int,
    out_dir: str | Path,
    *,
    method: Literal["cdvae", "substitution"] = "cdvae",
    seed: int = 0,
    model: str | Path | None = None,
    optimize_tc: bool = False,
    target_tc: float | None = None,
    opt_steps: int = 100,
    opt_lr: float = OPT_LR,
    opt_start: OptStart = "random",
    schedule: LangevinSchedule | None = None,
    batch_size: int = 16,
    progress: bool = True,
    device: str | None = None,
) -> pd.DataFrame:
    """Generate ``n`` crystals into ``out_dir``; a rerun skips the ids already written.

    A rerun must use the settings of the crystals already there (``n`` may change): other
    settings are an InputError (:func:`check_run_settings`, ``out_dir/generate_settings.json``).

    CDVAE samples are made in full batches of ``batch_size`` whose random streams depend only on
    ``seed`` and the batch number, so a resumed or extended run produces what an uninterrupted
    one would have (the unused end of the last batch is discarded). With ``optimize_tc`` or
    ``target_tc`` the latents first climb the Tc head (:func:`decode_optimized`), starting from
    z ~ N(0, I) (``opt_start="random"``) or, as in CDVAE's optimisation task, from the encoder
    means of training crystals drawn at random (``"train"``). ``device``: where the score network
    runs (``cpu``, ``cuda``, ``auto``...; the random streams stay on the CPU, so a seed gives the
    same draws everywhere).
    """
    resolve_device(device)  # a device that is not here fails before any work
    out_dir = Path(out_dir)
    writer = GeneratedWriter(out_dir)
    key: dict = {"method": method, "seed": seed}
    if method == "cdvae":
        optimize = optimize_tc or target_tc is not None
        key.update(
            model=model_identity(model),
            schedule=asdict(schedule or LangevinSchedule()),
            batch_size=batch_size,  # crystal k's random stream depends on it
            optimize_tc=optimize,
        )
        if optimize:
            key.update(target_tc=target_tc, opt_steps=opt_steps, opt_lr=opt_lr, opt_start=opt_start)
    check_run_settings(out_dir, GENERATE_SETTINGS, key, bool(writer.done))
    ids = [f"gen-{k:05d}" for k in range(n)]
    bar = tqdm(
        total=n,
        initial=sum(i in writer.done for i in ids),
        desc=f"generate ({method})",
        unit="crystal",
        disable=not progress,
    )
    if method == "substitution":
        if any(i not in writer.done for i in ids):
            train = [r.structure for r in read_structures(bundled_csv("train")) if r.ok]
            made = substitute(train, n, seed)
            for rid, structure in zip(ids, made, strict=False):
                if rid not in writer.done:
                    writer.write(rid, structure, method)
                    bar.update()
            if len(made) < n:  # the attempts ran out before n distinct new crystals
                print(
                    f"tcdesign: substitution found {len(made)} distinct new crystals in "
                    f"{ATTEMPTS_PER_CRYSTAL * n} draws, not {n} (the others repeated a training "
                    f"crystal or an earlier result); ids from gen-{len(made):05d} on are missing",
                    file=sys.stderr,
                )
    elif method == "cdvae":
        if opt_start not in OPT_STARTS:
            raise ValueError(f"unknown opt_start {opt_start!r}; choose random or train")
        todo = any(i not in writer.done for i in ids)
        generator = load_generator(model, device) if todo else None
        starts = None  # encoded training crystals, for opt_start="train"
        for start in range(0, n, batch_size):
            batch_ids = ids[start : start + batch_size]
            if all(i in writer.done for i in batch_ids):
                continue
            # always a full batch, so that crystal k comes out the same whatever n is
            rng = torch.Generator().manual_seed(seed * 1_000_003 + start)
            optimize = optimize_tc or target_tc is not None
            if optimize and opt_start == "train" and starts is None:
                starts = training_latents(generator)
            decoded = sample_batch(
                generator, batch_size, rng, schedule, optimize, opt_steps, opt_lr, target_tc, starts
            )
            for rid, structure, tc in zip(
                batch_ids, decoded.structures(), decoded.tc.tolist(), strict=False
            ):
                if rid not in writer.done:
                    writer.write(rid, structure, method, tc)
                    bar.update()
    else:
        raise ValueError(f"unknown method {method!r}; choose cdvae or substitution")
    bar.close()
    table = pd.read_csv(writer.table, dtype={"id": str})
    return table[table.id.isin(ids)].drop_duplicates("id", keep="last")


CSP_COLUMNS = [
    "formula", "rank", "cif", "method", "score", "status", "error",
    "energy_per_atom", "source_rank",  # with relax: CHGNet energy, place in the method's order
]  # fmt: skip
CSP_CANDIDATE_FACTOR = 8  # latents drawn per requested structure; the best-scoring are decoded


def csp_cdvae(
    model: CDVAE,
    counts: dict[str, int],
    k: int,
    seed: int = 0,
    schedule: LangevinSchedule | None = None,
) -> list[tuple[Structure | None, float]]:
    """``k`` structures for a cell composition with CDVAE: latents most compatible with it.

    Draws ``CSP_CANDIDATE_FACTOR * k`` latents, keeps the ``k`` with the highest
    :func:`composition_log_likelihood`, and decodes them with the atom count and types fixed
    (only the lattice and coordinates are sampled). Returns (structure, score) best first.
    """
    atom_types = torch.tensor([Element(el).Z for el, n in counts.items() for _ in range(n)])
    num_atoms = len(atom_types)
    if num_atoms > model.config.max_atoms:
        raise InputError(
            f"{format_counts(counts)}: {num_atoms} atoms, more than the "
            f"{model.config.max_atoms} this generator supports"
        )
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(CSP_CANDIDATE_FACTOR * k, model.config.latent, generator=rng)
        scores = composition_log_likelihood(model, z, atom_types, num_atoms)
        best = torch.argsort(scores, descending=True)[:k]
    decoded = decode(
        model,
        z[best],
        schedule,
        rng,
        num_atoms=torch.full((k,), num_atoms),
        atom_types=atom_types.repeat(k),
    )
    return list(zip(decoded.structures(), scores[best].tolist(), strict=True))


def format_counts(counts: dict[str, int]) -> str:
    return "".join(f"{el}{n}" for el, n in counts.items())


def _demoted(
    structures: Sequence[Structure | None], counts: dict[str, int], primitive_cell: bool
) -> list[bool]:
    """Which candidates rank after the others with ``primitive_cell``: those whose primitive
    cell has fewer atoms than the formula (supercells of a smaller crystal; ``template_csp``'s
    rule, from its ``primitive`` property where the candidate still carries it)."""
    n_atoms = sum(counts.values())
    flags = []
    for structure in structures:
        if not primitive_cell or structure is None:
            flags.append(False)
        elif "primitive" in structure.properties:
            flags.append(not structure.properties["primitive"])
        else:
            flags.append(len(structure.get_primitive_structure()) != n_atoms)
    return flags


def _static_energy(structure: Structure | None) -> float:
    """The CHGNet static energy a template or hybrid candidate was ranked with, else NaN."""
    properties = getattr(structure, "properties", None) or {}
    return float(properties.get("energy_per_atom", float("nan")))


def csp(
    formulas: list[str],
    out_dir: str | Path,
    k: int = 5,
    *,
    method: Literal["cdvae", "template", "hybrid"] = "cdvae",
    seed: int = 0,
    model: str | Path | None = None,
    schedule: LangevinSchedule | None = None,
    hybrid: HybridSettings | None = None,
    relax: bool = False,
    pool: int = CSP_POOL,
    primitive_cell: bool = True,
    energy_weight: float = ENERGY_WEIGHT,
    progress: bool = True,
    device: str | None = None,
) -> pd.DataFrame:
    """``k`` ranked structures per cell formula into ``out_dir/csp.csv`` (resumable by formula).

    ``method``: ``cdvae`` (:func:`csp_cdvae`), ``template`` (:func:`template_csp`) or ``hybrid``
    (template candidates refined by the score network, :func:`hybrid_csp` with ``hybrid``).
    With ``relax``, the method's best ``max(k, pool)`` candidates are relaxed with CHGNet and the
    ``k`` best are kept, relaxed (:func:`rank_by_energy`: cdvae by energy per atom, template and
    hybrid by their own score minus ``RELAX_ENERGY_WEIGHT`` x relaxed energy above the lowest,
    supercells last with ``primitive_cell``; ``score`` stays the method's own, ``source_rank``
    is the candidate's place in the method's order).
    ``primitive_cell``: the formulas count the atoms of primitive cells, so template and hybrid
    candidates that are supercells of smaller crystals rank last (:func:`template_csp`).
    ``energy_weight``: template and hybrid candidates are re-ranked with their CHGNet static
    energies (:func:`template_csp`'s ``energy``; 0 turns it off); ``energy_per_atom`` is then
    the static energy of the template candidate (the relaxed energy with ``relax``).

    A formula that cannot be used (unknown element, too many atoms, no template) gets one row
    with status ``error`` and the reason; the others are still predicted. A rerun must use the
    settings of the formulas already done (more formulas may be added): other settings are an
    InputError (:func:`check_run_settings`, ``out_dir/csp_settings.json``). ``device``: where
    the score network of ``cdvae`` and ``hybrid`` runs, as in :func:`generate`.
    """
    resolve_device(device)  # a device that is not here fails before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key: dict = {"method": method, "k": k, "seed": seed, "relax": relax}
    if relax:
        key["pool"] = pool
    if method in ("cdvae", "hybrid"):
        key.update(model=model_identity(model), schedule=asdict(schedule or LangevinSchedule()))
    if method in ("template", "hybrid"):
        key["primitive_cell"] = primitive_cell
        key["energy_weight"] = energy_weight
    if method == "hybrid":
        key["hybrid"] = asdict(hybrid or HybridSettings())
    table_path = out_dir / "csp.csv"
    done: set[str] = set()
    if table_path.exists() and table_path.stat().st_size:
        previous = pd.read_csv(table_path, dtype={"formula": str})
        done = set(previous.formula)
        if list(previous.columns) != CSP_COLUMNS:  # written by an older version: add the columns
            previous.reindex(columns=CSP_COLUMNS).to_csv(table_path, index=False)
    todo = [f for f in dict.fromkeys(formulas) if f not in done]
    if method not in ("cdvae", "template", "hybrid"):
        raise ValueError(f"unknown method {method!r}; choose cdvae, template or hybrid")
    check_run_settings(out_dir, CSP_SETTINGS, key, bool(done))
    generator = load_generator(model, device) if method in ("cdvae", "hybrid") and todo else None
    train, volumes = None, None
    if method in ("template", "hybrid") and todo:
        train = [r.structure for r in read_structures(bundled_csv("train")) if r.ok]
        volumes = fit_atomic_volumes(train)
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    wanted = max(k, pool) if relax else k
    hybrid_settings = replace(hybrid or HybridSettings(), primitive_cell=primitive_cell)
    energy_fn = partial(static_energies_per_atom, device=device or "cpu") if energy_weight else None
    desc = f"csp ({method}{', relaxed' if relax else ''})"
    for formula in tqdm(todo, desc=desc, unit="formula", disable=not progress):
        rows = []
        try:
            counts = parse_cell_formula(formula)
            if method == "cdvae":
                results = csp_cdvae(generator, counts, wanted, seed, schedule)
            elif method == "hybrid":
                results = hybrid_csp(
                    generator,
                    formula,
                    train,
                    wanted,
                    seed,
                    schedule,
                    hybrid_settings,
                    volumes,
                    energy=energy_fn,
                    energy_weight=energy_weight,
                )
            else:
                templates = template_csp(
                    formula,
                    train,
                    wanted,
                    volumes=volumes,
                    primitive_cell=primitive_cell,
                    energy=energy_fn,
                    energy_weight=energy_weight,
                )
                results = [(s, float(s.properties.get("score", float("nan")))) for s in templates]
            ranked = [
                (structure, score, _static_energy(structure), rank, "")
                for rank, (structure, score) in enumerate(results, start=1)
            ]
            if relax:
                scores = [score for _, score in results]
                structures = [structure for structure, _ in results]
                scored = method != "cdvae"  # template and hybrid: keep their own score
                ranked = [
                    (
                        c.structure,
                        scores[c.source_rank - 1],
                        c.energy_per_atom,
                        c.source_rank,
                        c.error,
                    )
                    for c in rank_by_energy(
                        structures,
                        scores=scores if scored else None,
                        demoted=_demoted(structures, counts, primitive_cell) if scored else None,
                        progress=progress,
                    )
                ]
            for rank, (structure, score, energy, source_rank, failure) in enumerate(
                ranked[:k], start=1
            ):
                status, error = ("failed", failure) if failure else sample_status(structure)
                rows.append(
                    {
                        "formula": formula,
                        "rank": rank,
                        "cif": str(CifWriter(structure)) if structure else "",
                        "method": method,
                        "score": score,
                        "status": status,
                        "error": error,
                        "energy_per_atom": energy,
                        "source_rank": source_rank,
                    }
                )
        except (ValueError, InputError) as exc:
            print(f"tcdesign: {formula}: {exc}", file=sys.stderr)
            rows = [
                {
                    "formula": formula,
                    "rank": 0,
                    "cif": "",
                    "method": method,
                    "score": float("nan"),
                    "status": "error",
                    "error": str(exc),
                }
            ]
        header = not table_path.exists() or table_path.stat().st_size == 0
        pd.DataFrame(rows, columns=CSP_COLUMNS).to_csv(
            table_path, mode="a", header=header, index=False
        )
    table = pd.read_csv(table_path, dtype={"formula": str})
    return table[table.formula.isin(formulas)]
