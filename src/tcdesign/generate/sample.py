"""Sampling crystals from a trained CDVAE: annealed Langevin dynamics and latent Tc optimisation.

Decoding z (Xie et al. 2022, sec. 3.3 and Algorithm 1): the heads give the atom count, the
lattice and the composition; atoms start at uniformly random fractional positions with types
drawn from the composition; then, for every noise level sigma_k (largest first), ``steps``
Langevin updates x <- x + eta_k s(x, sigma_k) + sqrt(2 eta_k) eps with eta_k = step_lr
(sigma_k / sigma_L)^2, while the atom types follow the score network's type prediction.
The schedule (levels and steps per level) is a setting: CDVAE's default is 50 x 100 = 5000 calls.

Tc optimisation (sec. 3.4 of the paper): z moves uphill on the Tc head by Adam steps before it
is decoded. The atom count is drawn from the *starting* latent (:func:`decode_optimized`): the
Tc head favours a few two-atom cells, and letting the optimised latent also choose the size
crowds the samples into duplicates (:mod:`tcdesign.generate.defaults` has the measurement).

Refinement (:mod:`tcdesign.generate.hybrid`): given initial fractional coordinates (and a
lattice), the annealing can start at a later, smaller noise level (``start_level``) instead of
at random positions and sigma_1, so that the score network only refines a given structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from torch.nn import functional as F

from tcdesign.generate.cdvae import CDVAE
from tcdesign.generate.composition import draw_composition, scale_to_volume, summed_volumes
from tcdesign.generate.defaults import (
    COMPOSITION_RETRIES,
    COMPOSITION_RULE,
    COMPOSITION_TEMPERATURE,
    OPT_LR,
    CompositionRule,
)
from tcdesign.generate.lattice import cart_to_frac, frac_to_cart, lattice_from_parameters
from tcdesign.generate.scorenet import NUM_ELEMENTS


@dataclass(frozen=True)
class LangevinSchedule:
    """How crystals are sampled: the Langevin annealing (CDVAE's defaults) and the composition.

    ``composition`` chooses how atom counts, types and the cell volume are drawn: ``"cdvae"``
    is the original rule (argmax atom count, types from the composition head then following the
    score network, the lattice head's volume); ``"prior"`` adds the training-set prior of
    :mod:`tcdesign.generate.composition` (sampled atom count, element count given it, SMACT
    redraws, fixed types, volume from fitted atomic volumes). ``composition_temperature``
    sharpens the composition head's element probabilities, p_i^(1/T) renormalised, in both
    (:mod:`tcdesign.generate.defaults` gives the measurements behind the defaults).
    """

    steps_per_level: int = 100
    step_lr: float = 1e-4
    levels: int | None = None  # use only this many noise levels, evenly spread (None: all)
    composition_temperature: float = COMPOSITION_TEMPERATURE
    start_level: int = 0  # index of the first noise level (0: sigma_1, the largest)
    composition: CompositionRule = COMPOSITION_RULE  # "cdvae": the original rule
    composition_retries: int = COMPOSITION_RETRIES  # SMACT redraws of the "prior" rule

    def noise_levels(self, sigmas: torch.Tensor) -> torch.Tensor:
        """The levels annealed through, largest first: ``sigmas[start_level:]`` (all of the
        model's levels, largest first), thinned evenly to ``levels`` when that is fewer."""
        if self.levels is not None and self.levels < 1:
            raise ValueError(f"levels must be at least 1, got {self.levels}")
        if not 0 <= self.start_level < len(sigmas):
            raise ValueError(f"start_level must be in 0..{len(sigmas) - 1}, got {self.start_level}")
        sigmas = sigmas[self.start_level :]
        if self.levels is not None and self.levels < len(sigmas):
            sigmas = sigmas[np.linspace(0, len(sigmas) - 1, self.levels).round().astype(int)]
        return sigmas


@dataclass
class DecodedBatch:
    """Raw output of :func:`decode` for a batch of latents."""

    frac_coords: torch.Tensor  # (n_atoms, 3)
    atom_types: torch.Tensor  # (n_atoms,) Z
    lattice: torch.Tensor  # (n_crystals, 3, 3)
    num_atoms: torch.Tensor  # (n_crystals,)
    tc: torch.Tensor  # (n_crystals,) the model's own Tc head at z (K)

    def structures(self) -> list[Structure | None]:
        """pymatgen Structures (None where a crystal came out non-finite)."""
        result: list[Structure | None] = []
        start = 0
        for k, n in enumerate(self.num_atoms.tolist()):
            frac = self.frac_coords[start : start + n].double().numpy()
            lattice = self.lattice[k].double().numpy()
            types = self.atom_types[start : start + n].tolist()
            start += n
            if not (np.all(np.isfinite(frac)) and np.all(np.isfinite(lattice))):
                result.append(None)
                continue
            result.append(Structure(Lattice(lattice), types, frac % 1.0))
        return result


def composition_counts(probs: torch.Tensor, num_atoms: int) -> list[int]:
    """Element classes for ``num_atoms`` slots from mean probabilities (largest remainder)."""
    expected = probs * num_atoms  # (NUM_ELEMENTS,)
    counts = torch.floor(expected).long()
    missing = num_atoms - int(counts.sum())
    if missing > 0:
        remainder = expected - counts
        counts[torch.topk(remainder, missing).indices] += 1
    return torch.repeat_interleave(torch.arange(len(counts)), counts).tolist()


def _draw_atom_types(
    model: CDVAE,
    z: torch.Tensor,
    num_atoms: torch.Tensor,
    batch: torch.Tensor,
    schedule: LangevinSchedule,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(n_atoms,) starting atom types (Z) of every crystal by ``schedule.composition``'s rule."""
    probs = model.composition_probs(z, batch)  # (n_atoms, NUM_ELEMENTS)
    mean_probs = torch.zeros(len(z), NUM_ELEMENTS).index_add_(0, batch, probs)
    mean_probs /= num_atoms[:, None]  # (n_crystals, NUM_ELEMENTS)
    if schedule.composition == "prior":
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        counts = model.element_counts.numpy()  # (max_atoms + 1, MAX_ELEMENTS + 1)
        numbers = [
            draw_composition(
                mean_probs[k].double().numpy(),
                int(n),
                counts[int(n)] if int(n) < len(counts) else counts.sum(axis=0),
                rng,
                schedule.composition_temperature,
                schedule.composition_retries,
            )
            for k, n in enumerate(num_atoms)
        ]
        return torch.tensor([z_ for crystal in numbers for z_ in crystal])
    if schedule.composition_temperature != 1.0:
        # p^(1/T) renormalised, in log space so that a small T cannot underflow
        log_probs = mean_probs.clamp_min(1e-30).log() / schedule.composition_temperature
        mean_probs = torch.softmax(log_probs, dim=1)
    classes = [composition_counts(mean_probs[k], int(n)) for k, n in enumerate(num_atoms)]
    return torch.tensor([c for crystal in classes for c in crystal]) + 1


@torch.no_grad()
def decode(
    model: CDVAE,
    z: torch.Tensor,
    schedule: LangevinSchedule | None = None,
    generator: torch.Generator | None = None,
    num_atoms: torch.Tensor | None = None,
    atom_types: torch.Tensor | None = None,
    frac_coords: torch.Tensor | None = None,
    lattice: torch.Tensor | None = None,
) -> DecodedBatch:
    """Decode latents ``z`` (n_crystals, latent) into crystals by annealed Langevin dynamics.

    With ``num_atoms`` (n_crystals,) and ``atom_types`` (n_atoms,) given, the composition is
    fixed (composition -> structure prediction) and only lattice and coordinates are sampled.
    ``frac_coords`` (n_atoms, 3) replaces the uniformly random starting positions and
    ``lattice`` (n_crystals, 3, 3) the lattice head's; with ``schedule.start_level`` > 0 this
    refines given structures (with the last level and ``steps_per_level=0`` they come back as
    given, wrapped into [0, 1)).
    """
    schedule = schedule or LangevinSchedule()
    sigmas = schedule.noise_levels(model.sigmas)
    prior = schedule.composition == "prior"
    uses_prior = prior and (num_atoms is None or atom_types is None or lattice is None)
    if uses_prior and not model.has_sampling_prior:
        raise ValueError(
            "this generator checkpoint has no sampling prior (it predates it); "
            "sample with composition='cdvae' or retrain"
        )
    if num_atoms is None:
        num_atoms = draw_num_atoms(model, z, schedule, generator)
    elif frac_coords is None:  # a given structure may be larger than the atom-count head's range
        num_atoms = num_atoms.clamp(1, model.config.max_atoms)
    batch = torch.repeat_interleave(torch.arange(len(z)), num_atoms)
    fixed_types = atom_types is not None or prior
    if atom_types is None:
        atom_types = _draw_atom_types(model, z, num_atoms, batch, schedule, generator)
    if lattice is None:
        lengths, angles = model.predict_lattice(z, num_atoms)
        lattice = lattice_from_parameters(lengths, angles)  # (n_crystals, 3, 3)
        if prior:
            volumes = summed_volumes(atom_types, batch, len(z), model.atomic_volumes)
            lattice = scale_to_volume(lattice, volumes)
    if frac_coords is None:
        frac = torch.rand(len(batch), 3, generator=generator)
    else:
        frac = frac_coords % 1.0  # (n_atoms, 3)
    sigma_last = float(model.sigmas[-1])
    for sigma in sigmas.tolist():
        step = schedule.step_lr * (sigma / sigma_last) ** 2
        noise_level = torch.full((len(z),), sigma)
        for _ in range(schedule.steps_per_level):
            type_input = F.one_hot(atom_types - 1, NUM_ELEMENTS).float()
            score, type_logits = model.decoder(
                z, frac, type_input, lattice, num_atoms, batch, noise_level
            )
            noise = torch.randn(frac.shape, generator=generator)
            cart = frac_to_cart(frac, lattice, batch)
            cart = cart + step * score / sigma + np.sqrt(2 * step) * noise
            frac = cart_to_frac(cart, lattice, batch) % 1.0
            if not fixed_types:
                atom_types = type_logits.argmax(dim=1) + 1
    return DecodedBatch(frac, atom_types, lattice, num_atoms, model.predict_tc(z))


def composition_log_likelihood(
    model: CDVAE, z: torch.Tensor, atom_types: torch.Tensor, num_atoms: int
) -> torch.Tensor:
    """(n_latents,) log p(N | z) + sum over atoms of log p(type | z): the model's own score of
    how well each latent fits a given cell composition (``atom_types``: (num_atoms,) Z)."""
    count = torch.log_softmax(model.num_atoms_head(z), dim=1)[:, num_atoms]  # (n,)
    types = torch.log_softmax(model.composition_head(z), dim=1)  # (n, NUM_ELEMENTS)
    return count + types[:, atom_types - 1].sum(dim=1)


def optimize_latents(
    model: CDVAE,
    z: torch.Tensor,
    steps: int = 100,
    lr: float = OPT_LR,
    target_tc: float | None = None,
) -> torch.Tensor:
    """Gradient steps on z through the Tc head (CDVAE's property optimisation).

    Raises the predicted Tc, or with ``target_tc`` (K) moves it towards that value. Returns the
    optimised latents (n_crystals, latent), detached.
    """
    z = z.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        tc = model.predict_tc(z)
        loss = (-tc).sum() if target_tc is None else ((tc - target_tc) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return z.detach()


def draw_num_atoms(
    model: CDVAE,
    z: torch.Tensor,
    schedule: LangevinSchedule,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(n_crystals,) atom counts of latents ``z`` by ``schedule.composition``'s rule: drawn from
    the atom-count head ("prior") or its most likely value ("cdvae"), within the model's range."""
    if schedule.composition == "prior":
        counts = model.sample_num_atoms(z, generator)
    else:
        counts = model.predict_num_atoms(z)
    return counts.clamp(1, model.config.max_atoms)


def decode_optimized(
    model: CDVAE,
    z: torch.Tensor,
    schedule: LangevinSchedule | None = None,
    generator: torch.Generator | None = None,
    steps: int = 100,
    lr: float = OPT_LR,
    target_tc: float | None = None,
) -> DecodedBatch:
    """Decode latents after :func:`optimize_latents`, each crystal keeping the atom count drawn
    from its starting latent ``z``; the random stream is the one :func:`decode` would use."""
    schedule = schedule or LangevinSchedule()
    num_atoms = draw_num_atoms(model, z, schedule, generator)
    optimized = optimize_latents(model, z, steps, lr, target_tc)
    return decode(model, optimized, schedule, generator, num_atoms=num_atoms)
