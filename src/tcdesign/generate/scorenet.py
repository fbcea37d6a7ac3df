"""Periodic score network: the CDVAE decoder.

Given a latent vector z per crystal, a lattice, noised fractional coordinates, noised atom types
and the noise level (embedded like a diffusion time; CDVAE's GemNet decoder has no such input and
must infer it from the geometry), it predicts (a) a Cartesian vector per atom, the score of the
coordinate noise, and (b) logits of the true atom type per atom. Messages run over a periodic
radius graph rebuilt from the noised positions; the vector output is a learned scalar weight on
every edge times the unit edge vector, summed over the edges into each atom, so it is
rotation-equivariant, invariant to translations and to the choice of periodic image, and
permutation-equivariant by construction (invariant features with an equivariant read-out, as in
SchNet/EGNN force heads; CDVAE uses GemNet-dT for this role).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from tcdesign.generate.lattice import periodic_radius_graph
from tcdesign.predict.alignn import EdgeGatedGraphConv, MLPLayer, RBFExpansion

NUM_ELEMENTS = 100  # atom types are Z = 1..100, class index Z - 1


@dataclass(frozen=True)
class ScoreNetConfig:
    """Hyperparameters of :class:`ScoreNet`; stored in the generator checkpoint."""

    latent: int = 256  # size of z
    hidden: int = 128
    layers: int = 4
    cutoff: float = 6.0  # A, radius of the decoder graph
    max_neighbors: int = 20  # nearest neighbours kept per atom inside the cutoff
    rbf_bins: int = 50
    sigma_min: float = 0.01  # A, range of the noise-level embedding
    sigma_max: float = 10.0
    sigma_bins: int = 16


class ScoreNet(nn.Module):
    """Coordinate score (A^-1, Cartesian) and atom-type logits from a noised crystal."""

    def __init__(self, config: ScoreNetConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden
        self.type_embedding = nn.Linear(NUM_ELEMENTS, hidden, bias=False)
        self.sigma_embedding = RBFExpansion(
            math.log(config.sigma_min), math.log(config.sigma_max), config.sigma_bins
        )
        self.atom_input = MLPLayer(hidden + config.latent + config.sigma_bins, hidden)
        self.rbf = RBFExpansion(0.0, config.cutoff, config.rbf_bins)
        self.edge_input = MLPLayer(config.rbf_bins, hidden)
        self.convs = nn.ModuleList(EdgeGatedGraphConv(hidden) for _ in range(config.layers))
        self.edge_weight = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1)
        )
        self.type_head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, NUM_ELEMENTS)
        )

    def forward(
        self,
        z: torch.Tensor,
        frac_coords: torch.Tensor,
        atom_type_probs: torch.Tensor,
        lattice: torch.Tensor,
        num_atoms: torch.Tensor,
        batch: torch.Tensor,
        sigma: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score times sigma (n_atoms, 3) and type logits (n_atoms, NUM_ELEMENTS).

        ``z`` (n_crystals, latent); ``frac_coords`` (n_atoms, 3); ``atom_type_probs``
        (n_atoms, NUM_ELEMENTS), one-hot or noised probabilities; ``lattice`` (n_crystals, 3, 3);
        ``sigma`` (n_crystals,) the coordinate noise level (A), the smallest level when None.
        """
        if sigma is None:
            sigma = lattice.new_full((lattice.shape[0],), self.config.sigma_min)
        sigma_features = self.sigma_embedding(torch.log(sigma))[batch]  # (n_atoms, sigma_bins)
        edge_index, vectors = periodic_radius_graph(
            frac_coords % 1.0,
            lattice,
            batch,
            num_atoms,
            self.config.cutoff,
            self.config.max_neighbors,
        )  # (2, n_edges), (n_edges, 3) from target atom to source image
        lengths = vectors.norm(dim=1).clamp_min(1e-6)  # (n_edges,)
        atoms = self.atom_input(
            torch.cat((self.type_embedding(atom_type_probs), z[batch], sigma_features), dim=1)
        )  # (n_atoms, hidden)
        edges = self.edge_input(self.rbf(lengths))  # (n_edges, hidden)
        for conv in self.convs:
            atoms, edges = conv(atoms, edges, edge_index)
        source, target = edge_index
        weights = self.edge_weight(
            torch.cat((atoms[source], atoms[target], edges), dim=1)
        )  # (n_edges, 1)
        # vectors point from the target atom to the source image; a positive weight pulls the
        # target towards its neighbour
        score = scatter(
            weights * vectors / lengths[:, None], target, dim=0, dim_size=len(batch), reduce="sum"
        )  # (n_atoms, 3)
        return score, self.type_head(atoms)
