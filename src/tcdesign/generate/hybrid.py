"""Composition -> structure by template lookup refined with the CDVAE score network.

The template baseline (:func:`tcdesign.generate.substitution.template_csp`) finds the right
prototype for most compositions but keeps the template's geometry; CDVAE from random positions
rarely finds the prototype. The hybrid joins them, in the spirit of SDEdit (Meng et al., ICLR
2022): each template candidate is reduced to its Niggli cell (the cells the generator was trained
on), encoded to the mean of q(z | template), and decoded by :func:`tcdesign.generate.sample.
decode` starting from the template's fractional coordinates at a small noise level
(``start_level``) instead of from random positions at sigma_1, with the atom types fixed and the
lattice taken from the template (or from the lattice head at z). The refined candidates are then
ranked (``rank_by``):

- ``template``: the template's own substitution log-probability (the baseline's order);
- ``likelihood``: :func:`tcdesign.generate.sample.composition_log_likelihood` at the template's z;
- ``combined``: template log-probability + ``likelihood_weight`` x likelihood;
- ``residual``: minus the mean squared score the network still predicts for the refined
  structure at the smallest noise level (a structure the model finds relaxed scores high).

``benchmarks/generator.py`` measures the settings. The defaults were chosen on the val formulas
that the benchmark does not report (val[40:105], 65 formulas, 5 of 10 refined candidates, 50 x 10
schedule): template order alone 0.60 top-1 / 0.86 top-5; refinement from sigma ~0.3 A (level 25)
lowers both, from 0.018 A (level 45) raises top-1 a little (0.63); ranking by the composition
log-likelihood alone or by the residual is much worse (0.26, 0.22) than the template order, but
adding a quarter of the log-likelihood to the template score gives 0.71 / 0.88 (weights 0.1, 0.5
and 1: 0.68, 0.68, 0.66 top-1). The lattice head's cell instead of the template's halves top-5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from pymatgen.core import Structure
from torch.nn import functional as F

from tcdesign.data.io import InputError
from tcdesign.generate.cdvae import CDVAE
from tcdesign.generate.data import CrystalDataset, canonical_cell
from tcdesign.generate.defaults import ENERGY_WEIGHT
from tcdesign.generate.lattice import lattice_from_parameters
from tcdesign.generate.sample import LangevinSchedule, composition_log_likelihood, decode
from tcdesign.generate.scorenet import NUM_ELEMENTS
from tcdesign.generate.substitution import (
    EnergyFunction,
    parse_cell_formula,
    template_csp,
)

LatticeSource = Literal["template", "head"]
RankBy = Literal["template", "likelihood", "combined", "residual"]
RANKINGS: tuple[RankBy, ...] = ("template", "likelihood", "combined", "residual")


@dataclass(frozen=True)
class HybridSettings:
    """How template candidates are refined and ranked (defaults: best measured on val)."""

    start_level: int = 45  # first noise level of the refinement (sigma 0.018 A of 10 -> 0.01)
    lattice: LatticeSource = "template"  # the template's rescaled cell, or the lattice head's
    rank_by: RankBy = "combined"
    likelihood_weight: float = 0.25  # of the composition log-likelihood in ``combined``
    pool: int | None = 10  # template candidates refined and ranked (at least as many as asked)
    primitive_cell: bool = True  # the formula is a primitive cell (template_csp's ranking rule)


@dataclass
class RefinedCandidates:
    """Template candidates after refinement, in the template's order, with every ranking score."""

    templates: list[Structure]  # Niggli cells of the template candidates
    structures: list[Structure | None]  # refined (None where non-finite)
    scores: dict[RankBy, np.ndarray]  # each (n_candidates,), higher is better
    demoted: np.ndarray | None = None  # (n_candidates,) bool: ranked after all others

    def ranked(self, rank_by: RankBy, k: int) -> list[tuple[Structure | None, float]]:
        """The ``k`` best (structure, score) by ``rank_by``, the ``demoted`` candidates last;
        ties keep the template order."""
        score = self.scores[rank_by]
        demoted = np.zeros(len(score), bool) if self.demoted is None else self.demoted
        order = np.lexsort((-score, demoted))[:k]  # stable; the last key sorts first
        return [(self.structures[i], float(score[i])) for i in order]


@torch.no_grad()
def encode_structures(
    model: CDVAE, structures: Sequence[Structure]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance of q(z | crystal), each (n_crystals, latent), of Niggli cells."""
    crystals = CrystalDataset(list(structures))
    return model.encode(crystals.collate(range(len(crystals))).graphs)


@torch.no_grad()
def denoising_residual(
    model: CDVAE,
    z: torch.Tensor,
    frac_coords: torch.Tensor,
    atom_types: torch.Tensor,
    lattice: torch.Tensor,
    num_atoms: torch.Tensor,
) -> torch.Tensor:
    """(n_crystals,) mean over atoms of |s(x, sigma_L)|^2: the squared displacement (in units of
    sigma_L) that the score network still asks for at the smallest noise level."""
    batch = torch.repeat_interleave(torch.arange(len(z)), num_atoms)  # (n_atoms,)
    noise_level = model.sigmas[-1].expand(len(z))  # (n_crystals,)
    type_input = F.one_hot(atom_types - 1, NUM_ELEMENTS).float()  # (n_atoms, NUM_ELEMENTS)
    score, _ = model.decoder(z, frac_coords, type_input, lattice, num_atoms, batch, noise_level)
    squared = torch.zeros(len(z)).index_add_(0, batch, (score**2).sum(dim=1))  # (n_crystals,)
    return squared / num_atoms


def refine(
    model: CDVAE,
    templates: Sequence[Structure],
    template_scores: Sequence[float],
    schedule: LangevinSchedule,
    settings: HybridSettings,
    generator: torch.Generator | None = None,
) -> RefinedCandidates:
    """Refine ``templates`` with the score network (module docstring) and score every ranking.

    ``template_scores`` are the templates' substitution log-probabilities; ``schedule`` gives
    the steps per level, step size and thinning, ``settings.start_level`` where it starts.
    """
    cells = [canonical_cell(s) for s in templates]
    mu, _ = encode_structures(model, cells)  # (n, latent)
    num_atoms = torch.tensor([len(c) for c in cells])  # (n,)
    atom_types = torch.tensor([z for c in cells for z in c.atomic_numbers])  # (n_atoms,)
    frac = torch.tensor(np.concatenate([c.frac_coords for c in cells]), dtype=torch.float32)
    if settings.lattice == "template":
        lattice = torch.tensor(np.stack([c.lattice.matrix for c in cells]), dtype=torch.float32)
    elif settings.lattice == "head":
        with torch.no_grad():
            lattice = lattice_from_parameters(*model.predict_lattice(mu, num_atoms))
    else:
        raise ValueError(f"unknown lattice source {settings.lattice!r}; choose template or head")
    decoded = decode(
        model,
        mu,
        replace(schedule, start_level=settings.start_level),
        generator,
        num_atoms=num_atoms,
        atom_types=atom_types,
        frac_coords=frac,
        lattice=lattice,
    )
    with torch.no_grad():
        likelihood = torch.stack(
            [
                composition_log_likelihood(
                    model,
                    mu[i : i + 1],
                    torch.tensor(c.atomic_numbers),
                    min(len(c), model.config.max_atoms),
                )[0]
                for i, c in enumerate(cells)
            ]
        ).numpy()
    residual = denoising_residual(
        model, mu, decoded.frac_coords, decoded.atom_types, decoded.lattice, num_atoms
    ).numpy()
    template = np.asarray(template_scores, dtype=float)
    scores: dict[RankBy, np.ndarray] = {
        "template": template,
        "likelihood": likelihood,
        "combined": template + settings.likelihood_weight * likelihood,
        "residual": np.nan_to_num(-residual, nan=-np.inf),
    }
    return RefinedCandidates(cells, decoded.structures(), scores)


def hybrid_candidates(
    model: CDVAE,
    formula: str,
    train_structures: Sequence[Any],
    pool: int,
    schedule: LangevinSchedule | None = None,
    settings: HybridSettings | None = None,
    seed: int = 0,
    volumes: dict[str, float] | None = None,
    *,
    energy: EnergyFunction | None = None,
    energy_weight: float = ENERGY_WEIGHT,
) -> RefinedCandidates:
    """Up to ``pool`` template candidates for a cell formula, refined and scored (unranked).

    Raises ValueError for a bad formula or one without a template, InputError for more atoms
    than the generator supports. ``volumes``, ``energy`` and ``energy_weight`` as in
    :func:`template_csp` (with ``energy``, the ``template`` score includes the energy term).
    """
    settings = settings or HybridSettings()
    counts = parse_cell_formula(formula)
    if sum(counts.values()) > model.config.max_atoms:
        raise InputError(
            f"{formula}: {sum(counts.values())} atoms, more than the "
            f"{model.config.max_atoms} this generator supports"
        )
    templates = template_csp(
        formula,
        train_structures,
        pool,
        volumes=volumes,
        primitive_cell=settings.primitive_cell,
        energy=energy,
        energy_weight=energy_weight,
    )
    scores = [float(s.properties["score"]) for s in templates]
    generator = torch.Generator().manual_seed(seed)
    refined = refine(model, templates, scores, schedule or LangevinSchedule(), settings, generator)
    for template, structure in zip(templates, refined.structures, strict=True):
        if structure is None:
            continue
        for name in ("energy_per_atom", "primitive"):  # the template's, for csp --relax
            if name in template.properties:
                structure.properties[name] = template.properties[name]
    if settings.primitive_cell:
        refined.demoted = np.array([not s.properties["primitive"] for s in templates])
    return refined


def hybrid_csp(
    model: CDVAE,
    formula: str,
    train_structures: Sequence[Any],
    k: int,
    seed: int = 0,
    schedule: LangevinSchedule | None = None,
    settings: HybridSettings | None = None,
    volumes: dict[str, float] | None = None,
    *,
    energy: EnergyFunction | None = None,
    energy_weight: float = ENERGY_WEIGHT,
) -> list[tuple[Structure | None, float]]:
    """``k`` structures for a cell formula: template candidates refined by the score network,
    (structure, score) best first by ``settings.rank_by`` (:func:`hybrid_candidates`). Each
    refined structure carries its template's CHGNet static energy as
    ``properties["energy_per_atom"]`` when ``energy`` is given."""
    settings = settings or HybridSettings()
    pool = max(k, settings.pool or k)
    candidates = hybrid_candidates(
        model,
        formula,
        train_structures,
        pool,
        schedule,
        settings,
        seed,
        volumes,
        energy=energy,
        energy_weight=energy_weight,
    )
    return candidates.ranked(settings.rank_by, k)
