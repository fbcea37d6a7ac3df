"""The training-set prior that guides CDVAE's composition and cell volume at sampling time.

CDVAE turns the composition head's mean element probabilities into atom counts and then lets the
score network's type predictions change the atoms during Langevin dynamics. With 846 training
crystals that rule gives too many elements per crystal and 24 % charge-unbalanced compositions
(benchmarks/results/generator_cdvae_rule.json; its cells, 15 % too large per atom, were measured
before a softplus that inflated decoded lattice lengths was removed: on the val crystals' own
latents the volume error went from +15 % to +3 %).

The ``"prior"`` rule keeps every learned head and adds two statistics of the training set,
stored as buffers in the checkpoint:

1. ``element_count_table``: how many cells with N atoms have k distinct elements. For each
   crystal, N is drawn from the atom-count head (not its argmax), k from this table given N, the
   k elements by Gumbel top-k from the composition head's probabilities (sampling without
   replacement), and the counts by largest remainder with at least one atom per element. A draw
   that fails the SMACT charge-neutrality test
   (:func:`tcdesign.generate.metrics.composition_validity`) is redrawn up to ``retries``
   times with the same k; the last draw stands if none passes.
   The types are then fixed during Langevin dynamics, as in composition -> structure prediction.
2. ``atomic_volume_table``: atomic volumes fitted to the training cells
   (:func:`tcdesign.generate.substitution.fit_atomic_volumes`, 4.5 % error on matched val cells);
   the lattice head's cell keeps its shape and is scaled to the summed atomic volumes.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure

from tcdesign.generate.metrics import composition_validity
from tcdesign.generate.scorenet import NUM_ELEMENTS
from tcdesign.generate.substitution import atomic_volume, fit_atomic_volumes

MAX_ELEMENTS = 8  # distinct elements per crystal the prior table can hold


def element_count_table(structures: Sequence[Structure], max_atoms: int) -> torch.Tensor:
    """(max_atoms + 1, MAX_ELEMENTS + 1) number of training cells with N atoms and k elements."""
    table = torch.zeros(max_atoms + 1, MAX_ELEMENTS + 1)
    for structure in structures:
        n, k = len(structure), len(structure.composition)
        if n <= max_atoms and k <= MAX_ELEMENTS:
            table[n, k] += 1
    return table


def atomic_volume_table(structures: Sequence[Structure]) -> torch.Tensor:
    """(NUM_ELEMENTS,) atomic volume (A^3) of element class Z - 1; every element has one: fitted
    to ``structures`` where possible, else from its elemental solid (:func:`atomic_volume`)."""
    fitted = fit_atomic_volumes(structures)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for each element without a molar volume
        volumes = [
            atomic_volume(Element.from_Z(z).symbol, fitted) for z in range(1, NUM_ELEMENTS + 1)
        ]
    return torch.tensor(volumes)


def draw_num_elements(counts: np.ndarray, num_atoms: int, rng: np.random.Generator) -> int:
    """k for a cell of ``num_atoms`` atoms from ``counts`` (MAX_ELEMENTS + 1,) (the row of the
    element-count table for N); the table's marginal over N is not known here, so an empty row
    falls back to min(N, 2)."""
    k_max = min(num_atoms, MAX_ELEMENTS)
    weights = np.asarray(counts[: k_max + 1], dtype=float).copy()
    weights[0] = 0.0
    if weights.sum() <= 0:
        return min(num_atoms, 2)
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def allocate_counts(probs: np.ndarray, elements: np.ndarray, num_atoms: int) -> np.ndarray:
    """(num_atoms,) element classes: one atom of each of ``elements``, the rest shared out in
    proportion to ``probs`` over those elements by largest remainder."""
    share = probs[elements] / probs[elements].sum()
    counts = np.ones(len(elements), dtype=int)
    rest = num_atoms - len(elements)
    expected = share * rest
    extra = np.floor(expected).astype(int)
    counts += extra
    missing = rest - int(extra.sum())
    if missing > 0:
        counts[np.argsort(-(expected - extra), kind="stable")[:missing]] += 1
    return np.repeat(elements, counts)


def draw_composition(
    probs: np.ndarray,
    num_atoms: int,
    counts: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    retries: int = 20,
) -> list[int]:
    """Atomic numbers of ``num_atoms`` atoms from element probabilities ``probs``
    (NUM_ELEMENTS,) and the element-count row ``counts`` (see the module docstring)."""
    k = draw_num_elements(counts, num_atoms, rng)
    log_probs = np.log(np.clip(probs, 1e-30, None)) / temperature
    for _ in range(retries + 1):
        keys = log_probs + rng.gumbel(size=len(probs))  # Gumbel top-k: k draws w/o replacement
        elements = np.argsort(-keys, kind="stable")[:k]
        numbers = [int(c) + 1 for c in allocate_counts(probs, elements, num_atoms)]
        amounts = Counter(Element.from_Z(z).symbol for z in numbers)
        if composition_validity(Composition(amounts)):
            break
    return numbers


def summed_volumes(
    atom_types: torch.Tensor, batch: torch.Tensor, n_crystals: int, volumes: torch.Tensor
) -> torch.Tensor:
    """(n_crystals,) summed atomic volumes (A^3) of each crystal's atoms; ``atom_types``
    (n_atoms,) Z, ``batch`` (n_atoms,) crystal index, ``volumes`` (NUM_ELEMENTS,)."""
    per_atom = volumes[atom_types - 1].double()  # (n_atoms,)
    return torch.zeros(n_crystals, dtype=torch.float64).index_add_(0, batch, per_atom)


def scale_to_volume(lattice: torch.Tensor, volumes: torch.Tensor) -> torch.Tensor:
    """``lattice`` (n_crystals, 3, 3), each scaled isotropically to the volume ``volumes``
    (n_crystals,) A^3; shape and angles are kept."""
    current = torch.linalg.det(lattice.double()).abs()  # (n_crystals,)
    factor = (volumes.double() / current).pow(1.0 / 3.0)  # (n_crystals,)
    return (lattice.double() * factor[:, None, None]).to(lattice.dtype)
