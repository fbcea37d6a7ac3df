"""ALIGNN: atomistic line graph neural network for a crystal-level property.

Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021). Atoms carry CGCNN features, bonds a radial
basis of their length, bond pairs a radial basis of the angle cosine. Each ALIGNN layer runs an
edge-gated graph convolution on the line graph (updating bonds and angles), then one on the atom
graph (updating atoms and bonds); GCN layers follow on the atom graph alone; atoms are averaged
per crystal and a linear head gives the property. Shapes: :mod:`tcdesign.data.keys`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Literal

import torch
from torch import nn
from torch_geometric.utils import scatter

from tcdesign.data.batch import GraphBatch
from tcdesign.data.graphs import GraphSettings
from tcdesign.predict.descriptors import DESCRIPTOR_SIZES
from tcdesign.predict.features import FEATURE_SIZES

CGCNN_FEATURES = 92  # length of a CGCNN atom feature vector
MAX_Z = 100  # atomic numbers 1..100 have CGCNN features


def cgcnn_table() -> torch.Tensor:
    """(MAX_Z + 1, 92) CGCNN one-hot atom features (Xie & Grossman 2018); row 0 is unused."""
    text = resources.files("tcdesign.data").joinpath("bundled/cgcnn_atom_init.json").read_text()
    table = json.loads(text)
    rows = [[0.0] * CGCNN_FEATURES] + [table[str(z)] for z in range(1, MAX_Z + 1)]
    return torch.tensor(rows, dtype=torch.float32)


@dataclass(frozen=True)
class ALIGNNConfig:
    """Hyperparameters of :class:`ALIGNN`; stored in its checkpoint."""

    alignn_layers: int = 4
    gcn_layers: int = 4
    hidden: int = 256  # width of atom, bond and angle features inside the layers
    embedding: int = 64  # width of the bond and angle embeddings before the first layer
    edge_bins: int = 80  # radial basis functions over bond lengths 0..cutoff (A)
    angle_bins: int = 40  # radial basis functions over angle cosines -1..1
    pretrained_features: Literal["none", "chgnet"] = "none"  # atom features beside CGCNN's
    descriptors: Literal["none", "composition"] = "none"  # crystal descriptors into the head
    dropout: float = 0.0  # before the output head
    cutoff: float = 8.0  # A, first neighbour search radius
    max_neighbors: int = 12
    target: str = "tc"  # name of the property (a CSV column, or "tc" for -prop)
    transform: Literal["none", "log1p"] = "log1p"  # the network learns transform(target)

    @property
    def graph_settings(self) -> GraphSettings:
        return GraphSettings(cutoff=self.cutoff, max_neighbors=self.max_neighbors)


class RBFExpansion(nn.Module):
    """Gaussian radial basis on [vmin, vmax]; width equal to the spacing of the centres."""

    def __init__(self, vmin: float, vmax: float, bins: int) -> None:
        super().__init__()
        centers = torch.linspace(vmin, vmax, bins)
        self.register_buffer("centers", centers)
        self.gamma = 1.0 / float(centers[1] - centers[0])

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        # (n,) -> (n, bins)
        return torch.exp(-self.gamma * (values[:, None] - self.centers) ** 2)


class MLPLayer(nn.Sequential):
    """Linear, LayerNorm, SiLU."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(
            nn.Linear(in_features, out_features), nn.LayerNorm(out_features), nn.SiLU()
        )


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution (Bresson & Laurent 2017, as used in ALIGNN).

    Node i gathers sum_j sigma(e_ji) * W x_j / (sum_j sigma(e_ji) + eps) over incoming edges
    j->i, with gates e_ji = A x_j + B x_i + C y_ji; edges take e_ji as their update. Both node
    and edge outputs pass LayerNorm and SiLU and are added to the inputs (residual). With
    ``update_edges=False`` the edges come back unchanged: the model's last line-graph and
    atom-graph convolutions skip the edge update that nothing reads (10 % of inference time,
    identical outputs and gradients).
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.src_gate = nn.Linear(features, features)
        self.dst_gate = nn.Linear(features, features)
        self.edge_gate = nn.Linear(features, features)
        self.src_update = nn.Linear(features, features)
        self.dst_update = nn.Linear(features, features)
        self.norm_nodes = nn.LayerNorm(features)
        self.norm_edges = nn.LayerNorm(features)

    def forward(
        self,
        nodes: torch.Tensor,
        edges: torch.Tensor,
        edge_index: torch.Tensor,
        update_edges: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index  # (n_edges,), (n_edges,)
        # index_select rather than nodes[src] (the same gather, 3x faster on a CPU) and in-place
        # sums on fresh tensors: the passes over the line graph's triplets are most of the
        # inference time, and these cut it by a quarter; autograd supports every one of them
        gate = self.src_gate(nodes).index_select(0, src)  # (n_edges, features)
        gate += self.dst_gate(nodes).index_select(0, dst)
        gate += self.edge_gate(edges)
        sigma = torch.sigmoid(gate)  # (n_edges, features)
        messages = self.dst_update(nodes).index_select(0, src)  # (n_edges, features)
        messages *= sigma
        n_nodes = nodes.shape[0]
        summed = scatter(messages, dst, dim=0, dim_size=n_nodes, reduce="sum")  # (n_nodes, f)
        norm = scatter(sigma, dst, dim=0, dim_size=n_nodes, reduce="sum")  # (n_nodes, f)
        norm += 1e-6
        summed /= norm
        updated = self.src_update(nodes)
        updated += summed
        new_nodes = nn.functional.silu(self.norm_nodes(updated))
        new_nodes += nodes
        if update_edges:
            new_edges = nn.functional.silu(self.norm_edges(gate))
            new_edges += edges
            edges = new_edges
        return new_nodes, edges


class ALIGNNLayer(nn.Module):
    """One ALIGNN update: line graph (bonds, angles), then atom graph (atoms, bonds)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.line_conv = EdgeGatedGraphConv(features)
        self.atom_conv = EdgeGatedGraphConv(features)

    def forward(
        self,
        atoms: torch.Tensor,
        bonds: torch.Tensor,
        angles: torch.Tensor,
        edge_index: torch.Tensor,
        line_index: torch.Tensor,
        update_angles: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``update_angles=False`` in the last layer, whose angle update nothing reads."""
        bonds, angles = self.line_conv(bonds, angles, line_index, update_angles)
        atoms, bonds = self.atom_conv(atoms, bonds, edge_index)
        return atoms, bonds, angles


class ALIGNN(nn.Module):
    """ALIGNN regression of one crystal property (output in the target's own units)."""

    def __init__(self, config: ALIGNNConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden
        self.register_buffer("atom_table", cgcnn_table())  # (MAX_Z + 1, 92)
        self.register_buffer("target_mean", torch.zeros(()))  # of transform(target)
        self.register_buffer("target_std", torch.ones(()))
        extra = FEATURE_SIZES[config.pretrained_features]
        self.atom_embedding = MLPLayer(CGCNN_FEATURES + extra, hidden)
        self.bond_embedding = nn.Sequential(
            RBFExpansion(0.0, config.cutoff, config.edge_bins),
            MLPLayer(config.edge_bins, config.embedding),
            MLPLayer(config.embedding, hidden),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(-1.0, 1.0, config.angle_bins),
            MLPLayer(config.angle_bins, config.embedding),
            MLPLayer(config.embedding, hidden),
        )
        self.alignn_layers = nn.ModuleList(ALIGNNLayer(hidden) for _ in range(config.alignn_layers))
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden) for _ in range(config.gcn_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        n_descriptors = DESCRIPTOR_SIZES[config.descriptors]
        self.register_buffer("descriptor_mean", torch.zeros(n_descriptors))
        self.register_buffer("descriptor_std", torch.ones(n_descriptors))
        if n_descriptors:
            self.head = nn.Sequential(
                nn.Linear(hidden + n_descriptors, hidden), nn.SiLU(), nn.Linear(hidden, 1)
            )
        else:
            self.head = nn.Linear(hidden, 1)

    def set_target_statistics(self, transformed_targets: torch.Tensor) -> None:
        """Standardise the output with the mean and std of the transformed training targets."""
        self.target_mean.fill_(float(transformed_targets.mean()))
        self.target_std.fill_(float(transformed_targets.std().clamp_min(1e-6)))

    def set_descriptor_statistics(self, train_descriptors: torch.Tensor) -> None:
        """Standardise the descriptors with their training mean and std."""
        self.descriptor_mean.copy_(train_descriptors.mean(dim=0))
        self.descriptor_std.copy_(train_descriptors.std(dim=0).clamp_min(1e-6))

    def crystal_features(self, batch: GraphBatch) -> torch.Tensor:
        """(n_crystals, hidden) mean-pooled atom features after all layers."""
        atom_inputs = self.atom_table[batch.atomic_numbers]  # (n_atoms, 92)
        if self.config.pretrained_features != "none":
            if batch.extra_atom_features is None:
                raise ValueError("this model needs extra atom features; the batch has none")
            atom_inputs = torch.cat((atom_inputs, batch.extra_atom_features), dim=1)
        atoms = self.atom_embedding(atom_inputs)  # (n_atoms, hidden)
        bonds = self.bond_embedding(batch.edge_vectors.norm(dim=1))  # (n_edges, hidden)
        angles = self.angle_embedding(batch.angle_cosines)  # (n_triplets, hidden)
        last = len(self.alignn_layers) - 1
        for i, layer in enumerate(self.alignn_layers):
            atoms, bonds, angles = layer(
                atoms, bonds, angles, batch.edge_index, batch.line_index, i < last
            )
        last = len(self.gcn_layers) - 1
        for i, conv in enumerate(self.gcn_layers):
            atoms, bonds = conv(atoms, bonds, batch.edge_index, i < last)
        return scatter(atoms, batch.batch, dim=0, dim_size=batch.num_crystals, reduce="mean")

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        """(n_crystals,) transform(target), e.g. log(1 + Tc / K)."""
        pooled = self.dropout(self.crystal_features(batch))  # (n_crystals, hidden)
        if self.config.descriptors != "none":
            if batch.descriptors is None:
                raise ValueError("this model needs crystal descriptors; the batch has none")
            scaled = (batch.descriptors - self.descriptor_mean) / self.descriptor_std
            pooled = torch.cat((pooled, scaled), dim=1)  # (n_crystals, hidden + d)
        standardised = self.head(pooled).squeeze(-1)  # (n_crystals,)
        return standardised * self.target_std + self.target_mean

    def transform(self, values: torch.Tensor) -> torch.Tensor:
        """Target units -> the space the network learns in."""
        return torch.log1p(values.clamp_min(0.0)) if self.config.transform == "log1p" else values

    def inverse_transform(self, outputs: torch.Tensor) -> torch.Tensor:
        """The network's space -> target units (log1p outputs are floored at 0)."""
        if self.config.transform == "log1p":
            return torch.expm1(outputs).clamp_min(0.0)
        return outputs

    def to_checkpoint(self) -> dict:
        return {
            "model": "alignn",
            "model_args": asdict(self.config),
            "state_dict": self.state_dict(),
            "version": 1,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> ALIGNN:
        model = cls(ALIGNNConfig(**checkpoint["model_args"]))
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()
