"""CDVAE: crystal diffusion variational autoencoder with a Tc head.

Xie, Fu, Ganea, Barzilay & Jaakkola, ICLR 2022 (arXiv 2110.06197), sec. 3. An encoder maps a
crystal to a latent z (VAE); MLP heads read from z the number of atoms, the lattice (lengths
divided by N^(1/3), angles; standardised), the composition (element probabilities per atom) and
the property (Tc, standardised); the score network (:mod:`tcdesign.generate.scorenet`) learns to
denoise fractional coordinates and atom types at geometric noise levels, conditioned on z.
Losses: atom count, lattice, composition, coordinate score, type, property and KL (beta).
Shapes: atoms are batched with ``batch`` (n_atoms,), crystals index the first axis elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from pymatgen.core import Structure
from torch import nn
from torch.nn import functional as F
from torch_geometric.utils import scatter

from tcdesign.data.batch import GraphBatch
from tcdesign.generate.composition import (
    MAX_ELEMENTS,
    atomic_volume_table,
    element_count_table,
)
from tcdesign.generate.lattice import cart_to_frac, min_image_difference
from tcdesign.generate.scorenet import NUM_ELEMENTS, ScoreNet, ScoreNetConfig
from tcdesign.predict.alignn import ALIGNN, ALIGNNConfig


@dataclass(frozen=True)
class CDVAEConfig:
    """Hyperparameters of :class:`CDVAE` (defaults: CDVAE's, with a smaller CPU-sized network)."""

    latent: int = 256
    max_atoms: int = 20  # the atom-count head classifies 1..max_atoms
    encoder_hidden: int = 128
    encoder_alignn_layers: int = 2
    encoder_gcn_layers: int = 2
    head_hidden: int = 256
    decoder_hidden: int = 128
    decoder_layers: int = 4
    decoder_cutoff: float = 6.0  # A
    decoder_max_neighbors: int = 20
    sigma_begin: float = 10.0  # A, largest coordinate noise
    sigma_end: float = 0.01
    type_sigma_begin: float = 5.0
    type_sigma_end: float = 0.01
    num_noise_levels: int = 50
    beta: float = 0.01  # weight of the KL term
    cost_natom: float = 1.0
    cost_lattice: float = 10.0
    cost_composition: float = 1.0
    cost_coord: float = 10.0
    cost_type: float = 1.0
    cost_property: float = 1.0

    @property
    def encoder_config(self) -> ALIGNNConfig:
        return ALIGNNConfig(
            alignn_layers=self.encoder_alignn_layers,
            gcn_layers=self.encoder_gcn_layers,
            hidden=self.encoder_hidden,
            transform="none",
            descriptors="none",
        )

    @property
    def decoder_config(self) -> ScoreNetConfig:
        return ScoreNetConfig(
            latent=self.latent,
            hidden=self.decoder_hidden,
            layers=self.decoder_layers,
            cutoff=self.decoder_cutoff,
            max_neighbors=self.decoder_max_neighbors,
            sigma_min=self.sigma_end,
            sigma_max=self.sigma_begin,
        )


def mlp(in_features: int, hidden: int, out_features: int, layers: int = 2) -> nn.Sequential:
    """``layers`` hidden Linear+SiLU blocks, then a linear output."""
    blocks: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, out_features))


@dataclass
class CrystalBatch:
    """A batch of crystals for the generator: encoder graphs plus the raw crystal arrays."""

    graphs: GraphBatch  # encoder input (ALIGNN graphs of the true structures)
    frac_coords: torch.Tensor  # (n_atoms, 3) in [0, 1)
    atom_types: torch.Tensor  # (n_atoms,) int64, Z
    lattice: torch.Tensor  # (n_crystals, 3, 3) rows are lattice vectors (A)
    lengths: torch.Tensor  # (n_crystals, 3) A
    angles: torch.Tensor  # (n_crystals, 3) degrees
    num_atoms: torch.Tensor  # (n_crystals,)
    batch: torch.Tensor  # (n_atoms,)
    tc: torch.Tensor  # (n_crystals,) K; NaN when unknown

    def to(self, device: torch.device | str) -> CrystalBatch:
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor | GraphBatch) else v)
            for k, v in self.__dict__.items()
        }
        return CrystalBatch(**moved)


SAMPLING_PRIOR_BUFFERS = {"element_counts", "atomic_volumes"}  # absent from older checkpoints
MIN_SCALED_LENGTH = 0.5  # A; floor of a predicted lattice length / N^(1/3) (train: 1.2 to 7.9)


class CDVAE(nn.Module):
    """The generator; ``forward`` returns the loss terms of one training step."""

    def __init__(self, config: CDVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ALIGNN(config.encoder_config)
        self.to_mu = nn.Linear(config.encoder_hidden, config.latent)
        self.to_logvar = nn.Linear(config.encoder_hidden, config.latent)
        hidden = config.head_hidden
        self.num_atoms_head = mlp(config.latent, hidden, config.max_atoms + 1)
        self.lattice_head = mlp(config.latent, hidden, 6)
        self.composition_head = mlp(config.latent, hidden, NUM_ELEMENTS)
        self.property_head = mlp(config.latent, hidden, 1)
        self.decoder = ScoreNet(config.decoder_config)
        sigmas = np.geomspace(config.sigma_begin, config.sigma_end, config.num_noise_levels)
        type_sigmas = np.geomspace(
            config.type_sigma_begin, config.type_sigma_end, config.num_noise_levels
        )
        self.register_buffer("sigmas", torch.tensor(sigmas, dtype=torch.float32))
        self.register_buffer("type_sigmas", torch.tensor(type_sigmas, dtype=torch.float32))
        # standardisation of [lengths / N^(1/3), angles] and of Tc, fitted on the training set
        self.register_buffer("lattice_mean", torch.zeros(6))
        self.register_buffer("lattice_std", torch.ones(6))
        self.register_buffer("tc_mean", torch.zeros(()))
        self.register_buffer("tc_std", torch.ones(()))
        # sampling prior fitted on the training set (tcdesign.generate.composition): cells with
        # N atoms and k elements, (max_atoms + 1, MAX_ELEMENTS + 1), and atomic volumes (A^3) of
        # element class Z - 1, (NUM_ELEMENTS,); all zero until set_sampling_prior
        self.register_buffer("element_counts", torch.zeros(config.max_atoms + 1, MAX_ELEMENTS + 1))
        self.register_buffer("atomic_volumes", torch.zeros(NUM_ELEMENTS))

    # ----- statistics -------------------------------------------------------------------------
    @staticmethod
    def lattice_features(
        lengths: torch.Tensor, angles: torch.Tensor, num_atoms: torch.Tensor
    ) -> torch.Tensor:
        """(n, 6) lengths scaled by N^(1/3) and angles (deg), before standardisation."""
        scale = num_atoms.to(lengths.dtype).pow(1.0 / 3.0)[:, None]  # (n, 1)
        return torch.cat((lengths / scale, angles), dim=1)

    def set_statistics(
        self, lengths: torch.Tensor, angles: torch.Tensor, num_atoms: torch.Tensor, tc: torch.Tensor
    ) -> None:
        """Fit the standardisation of the lattice features and of Tc (K) to the training set;
        Tc values may be NaN (unknown). With fewer than two known Tc values the Tc scaler stays
        the identity (mean 0, std 1) instead of NaN, which made every loss and Tc NaN."""
        features = self.lattice_features(lengths, angles, num_atoms)
        self.lattice_mean.copy_(features.mean(0))
        self.lattice_std.copy_(torch.nan_to_num(features.std(0), nan=1.0).clamp_min(1e-3))
        known = tc[torch.isfinite(tc)]
        self.tc_mean.fill_(float(known.mean()) if len(known) else 0.0)
        self.tc_std.fill_(float(known.std().clamp_min(1e-3)) if len(known) > 1 else 1.0)

    def set_sampling_prior(self, structures: Sequence[Structure]) -> None:
        """Fit the sampling prior (element counts per atom count, atomic volumes) to the
        training ``structures``."""
        self.element_counts.copy_(element_count_table(structures, self.config.max_atoms))
        self.atomic_volumes.copy_(atomic_volume_table(structures))

    @property
    def has_sampling_prior(self) -> bool:
        return bool(self.element_counts.sum() > 0)

    # ----- encoder and heads ------------------------------------------------------------------
    def encode(self, graphs: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | crystal), each (n_crystals, latent)."""
        pooled = self.encoder.crystal_features(graphs)  # (n_crystals, encoder_hidden)
        return self.to_mu(pooled), self.to_logvar(pooled).clamp(-10.0, 10.0)

    def predict_lattice(
        self, z: torch.Tensor, num_atoms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Lengths (A) and angles (deg) from z, each (n_crystals, 3): the inverse of
        :meth:`lattice_features`, the head's training target, as in CDVAE; scaled lengths are
        floored at ``MIN_SCALED_LENGTH`` (a softplus here made the bundled generator's cells
        about 15 % larger in volume than the head learnt, on the val crystals)."""
        features = self.lattice_head(z) * self.lattice_std + self.lattice_mean  # (n, 6)
        scale = num_atoms.to(z.dtype).pow(1.0 / 3.0)[:, None]  # (n, 1)
        lengths = features[:, :3].clamp_min(MIN_SCALED_LENGTH) * scale
        angles = features[:, 3:].clamp(30.0, 150.0)
        return lengths, angles

    def predict_num_atoms(self, z: torch.Tensor) -> torch.Tensor:
        """(n_crystals,) most likely atom count (>= 1)."""
        logits = self.num_atoms_head(z)
        logits[:, 0] = -torch.inf
        return logits.argmax(dim=1)

    def sample_num_atoms(
        self, z: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n_crystals,) atom counts (>= 1) drawn from the atom-count head's distribution."""
        logits = self.num_atoms_head(z)
        logits[:, 0] = -torch.inf
        return torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator)[:, 0]

    def predict_tc(self, z: torch.Tensor) -> torch.Tensor:
        """(n_crystals,) Tc (K) from the property head."""
        return self.property_head(z).squeeze(-1) * self.tc_std + self.tc_mean

    def composition_probs(self, z: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """(n_atoms, NUM_ELEMENTS) element probabilities of every atom slot."""
        return F.softmax(self.composition_head(z)[batch], dim=-1)

    # ----- training ---------------------------------------------------------------------------
    def forward(self, crystals: CrystalBatch) -> dict[str, torch.Tensor]:
        """Loss terms (scalars) and their weighted sum ``loss``."""
        config = self.config
        mu, logvar = self.encode(crystals.graphs)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # (n_crystals, latent)
        batch = crystals.batch
        n_crystals = crystals.num_atoms.shape[0]

        natom_loss = F.cross_entropy(self.num_atoms_head(z), crystals.num_atoms)
        target_lattice = (
            self.lattice_features(crystals.lengths, crystals.angles, crystals.num_atoms)
            - self.lattice_mean
        ) / self.lattice_std
        lattice_loss = F.mse_loss(self.lattice_head(z), target_lattice)
        type_index = crystals.atom_types - 1  # (n_atoms,) class of each true element
        composition_logits = self.composition_head(z)[batch]  # (n_atoms, NUM_ELEMENTS)
        composition_loss = scatter(
            F.cross_entropy(composition_logits, type_index, reduction="none"),
            batch,
            dim=0,
            dim_size=n_crystals,
            reduce="mean",
        ).mean()
        known = torch.isfinite(crystals.tc)
        if known.any():
            target_tc = (crystals.tc[known] - self.tc_mean) / self.tc_std
            property_loss = F.mse_loss(self.property_head(z[known]).squeeze(-1), target_tc)
        else:
            property_loss = z.new_zeros(())
        kl_loss = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()

        # noise: one coordinate level and one type level per crystal
        levels = torch.randint(0, len(self.sigmas), (n_crystals,), device=z.device)
        sigma = self.sigmas[levels][batch][:, None]  # (n_atoms, 1)
        type_levels = torch.randint(0, len(self.type_sigmas), (n_crystals,), device=z.device)
        type_sigma = self.type_sigmas[type_levels][batch]  # (n_atoms,)
        cart_noise = torch.randn_like(crystals.frac_coords) * sigma  # (n_atoms, 3) A
        noisy_frac = (
            crystals.frac_coords + cart_to_frac(cart_noise, crystals.lattice, batch)
        ) % 1.0
        type_probs = F.one_hot(type_index, NUM_ELEMENTS).float() + (
            self.composition_probs(z, batch).detach() * type_sigma[:, None]
        )
        noisy_types = torch.multinomial(type_probs / type_probs.sum(1, keepdim=True), 1)[:, 0]

        score, type_logits = self.decoder(
            z,
            noisy_frac,
            F.one_hot(noisy_types, NUM_ELEMENTS).float(),
            crystals.lattice,
            crystals.num_atoms,
            batch,
            self.sigmas[levels],
        )
        # denoising target: the shortest periodic vector from the noised to the true position,
        # over sigma; the network's output is sigma times the score
        target = min_image_difference(noisy_frac, crystals.frac_coords, crystals.lattice, batch)
        coord_loss = ((score - target / sigma) ** 2).sum(dim=1).mean() / 2
        type_loss = (F.cross_entropy(type_logits, type_index, reduction="none") / type_sigma).mean()

        terms = {
            "natom": natom_loss,
            "lattice": lattice_loss,
            "composition": composition_loss,
            "coord": coord_loss,
            "type": type_loss,
            "kl": kl_loss,
            "property": property_loss,
        }
        terms["loss"] = (
            config.cost_natom * natom_loss
            + config.cost_lattice * lattice_loss
            + config.cost_composition * composition_loss
            + config.cost_coord * coord_loss
            + config.cost_type * type_loss
            + config.beta * kl_loss
            + config.cost_property * property_loss
        )
        return terms

    # ----- checkpoints ------------------------------------------------------------------------
    def to_checkpoint(self) -> dict:
        return {
            "model": "cdvae",
            "model_args": asdict(self.config),
            "state_dict": self.state_dict(),
            "version": 1,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> CDVAE:
        if checkpoint.get("model") != "cdvae":
            raise ValueError("not a CDVAE checkpoint")
        model = cls(CDVAEConfig(**checkpoint["model_args"]))
        missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
        if unexpected or set(missing) - SAMPLING_PRIOR_BUFFERS:
            raise ValueError(f"checkpoint does not fit the model: {missing + unexpected}")
        return model.eval()  # a checkpoint from before the sampling prior: prior left empty
