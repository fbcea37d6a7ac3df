"""CDVAE physics and plumbing: head shapes, score-network symmetries, batching, a training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Structure
from scipy.spatial.transform import Rotation
from torch.nn import functional as F

from tcdesign.generate.cdvae import CDVAE, CDVAEConfig
from tcdesign.generate.data import CrystalDataset
from tcdesign.generate.scorenet import NUM_ELEMENTS

TINY = CDVAEConfig(
    latent=8,
    encoder_hidden=16,
    encoder_alignn_layers=1,
    encoder_gcn_layers=1,
    head_hidden=16,
    decoder_hidden=16,
    decoder_layers=2,
    max_atoms=20,
)


@pytest.fixture(autouse=True)
def no_grad(request):
    """Symmetry tests compare values only; the training test needs gradients."""
    if "training" in request.node.name:
        yield
        return
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def model() -> CDVAE:
    torch.manual_seed(0)
    return CDVAE(TINY).eval().double()


@pytest.fixture(scope="module")
def crystals(val_structures):
    return CrystalDataset(val_structures[:4], [1.0, 2.0, float("nan"), 8.0])


def decoder_inputs(structure: Structure, seed: int = 0):
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(1, TINY.latent, generator=rng, dtype=torch.float64)
    frac = torch.tensor(structure.frac_coords, dtype=torch.float64)
    types = F.one_hot(torch.tensor(structure.atomic_numbers) - 1, NUM_ELEMENTS).double()
    lattice = torch.tensor(structure.lattice.matrix, dtype=torch.float64)[None]
    num_atoms = torch.tensor([len(structure)])
    batch = torch.zeros(len(structure), dtype=torch.long)
    return z, frac, types, lattice, num_atoms, batch


def test_head_shapes(model: CDVAE, crystals: CrystalDataset) -> None:
    batch = crystals.collate(range(4))
    mu, logvar = model.float().encode(batch.graphs)
    model.double()
    assert mu.shape == logvar.shape == (4, TINY.latent)
    z = mu.double()
    assert model.num_atoms_head(z).shape == (4, TINY.max_atoms + 1)
    lengths, angles = model.predict_lattice(z, batch.num_atoms)
    assert lengths.shape == angles.shape == (4, 3) and torch.all(lengths > 0)
    assert model.composition_probs(z, batch.batch).shape == (len(batch.batch), NUM_ELEMENTS)
    assert model.predict_tc(z).shape == (4,)
    assert model.predict_num_atoms(z).min() >= 1


def test_score_rotates_with_the_lattice(model: CDVAE, ternary: Structure) -> None:
    z, frac, types, lattice, num_atoms, batch = decoder_inputs(ternary)
    score, logits = model.decoder(z, frac, types, lattice, num_atoms, batch)
    rotation = torch.tensor(Rotation.from_euler("xyz", [20, -35, 70], degrees=True).as_matrix())
    rotated_lattice = lattice @ rotation.T  # rows rotated
    rotated_score, rotated_logits = model.decoder(z, frac, types, rotated_lattice, num_atoms, batch)
    assert rotated_score.numpy() == pytest.approx((score @ rotation.T).numpy(), abs=1e-8)
    assert rotated_logits.numpy() == pytest.approx(logits.numpy(), abs=1e-8)


def test_score_is_translation_and_image_invariant(model: CDVAE, ternary: Structure) -> None:
    z, frac, types, lattice, num_atoms, batch = decoder_inputs(ternary)
    score, _ = model.decoder(z, frac, types, lattice, num_atoms, batch)
    shifted = (frac + torch.tensor([0.31, -0.27, 0.66], dtype=torch.float64)) % 1.0
    moved, _ = model.decoder(z, shifted, types, lattice, num_atoms, batch)
    assert moved.numpy() == pytest.approx(score.numpy(), abs=1e-8)
    imaged, _ = model.decoder(
        z,
        frac + torch.tensor([[1.0, 0, -2]], dtype=torch.float64),
        types,
        lattice,
        num_atoms,
        batch,
    )
    assert imaged.numpy() == pytest.approx(score.numpy(), abs=1e-8)


def test_score_is_permutation_equivariant(model: CDVAE, ternary: Structure) -> None:
    z, frac, types, lattice, num_atoms, batch = decoder_inputs(ternary)
    score, logits = model.decoder(z, frac, types, lattice, num_atoms, batch)
    order = torch.tensor([2, 0, 3, 1])
    permuted, permuted_logits = model.decoder(
        z, frac[order], types[order], lattice, num_atoms, batch
    )
    assert permuted.numpy() == pytest.approx(score[order].numpy(), abs=1e-8)
    assert permuted_logits.numpy() == pytest.approx(logits[order].numpy(), abs=1e-8)


def test_decoder_batched_equals_one_by_one(
    model: CDVAE, ternary: Structure, rocksalt: Structure
) -> None:
    singles = [decoder_inputs(s, seed) for seed, s in enumerate((ternary, rocksalt))]
    joined = [torch.cat([inputs[k] for inputs in singles]) for k in range(5)]
    batch = torch.cat([torch.full((len(s),), k) for k, s in enumerate((ternary, rocksalt))])
    score, _ = model.decoder(*joined, batch)
    separate = torch.cat([model.decoder(*inputs)[0] for inputs in singles])
    assert score.numpy() == pytest.approx(separate.numpy(), abs=1e-8)


def test_training_step_losses_are_finite_and_learn(crystals: CrystalDataset) -> None:
    torch.manual_seed(1)
    model = CDVAE(TINY)
    model.set_statistics(**crystals.statistics())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = crystals.collate(range(4))
    losses = []
    for _ in range(30):
        terms = model(batch)
        assert all(torch.isfinite(v) for v in terms.values())
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(float((terms["natom"] + terms["lattice"] + terms["composition"]).detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_checkpoint_round_trip(model: CDVAE) -> None:
    loaded = CDVAE.from_checkpoint(model.float().to_checkpoint())
    model.double()
    z = torch.randn(3, TINY.latent)
    assert loaded.predict_tc(z) == pytest.approx(model.float().predict_tc(z).detach())
    model.double()


def test_predict_lattice_inverts_the_lattice_features() -> None:
    """The lattice head learns the standardised (lengths / N^(1/3), angles); decoding a perfect
    head output must give back the lengths. A softplus on the scaled lengths made them 3-8 %
    too long (cells ~15 % too large) with the bundled generator."""
    model = CDVAE(TINY).double()
    lengths = torch.tensor([[2.0, 2.5, 3.1], [3.8, 4.2, 6.0]], dtype=torch.float64)
    angles = torch.tensor([[90.0, 90.0, 120.0], [80.0, 95.0, 101.0]], dtype=torch.float64)
    num_atoms = torch.tensor([1, 4])
    model.set_statistics(lengths, angles, num_atoms, torch.tensor([1.0, 3.0]))
    target = (
        model.lattice_features(lengths, angles, num_atoms) - model.lattice_mean
    ) / model.lattice_std
    last = model.lattice_head[-1]
    last.weight.zero_()
    last.bias.copy_(target[1])  # (6,) every latent decodes to the second crystal's lattice
    predicted_lengths, predicted_angles = model.predict_lattice(
        torch.zeros(2, TINY.latent, dtype=torch.float64), num_atoms[[1, 1]]
    )
    assert predicted_lengths.numpy() == pytest.approx(lengths[[1, 1]].numpy(), rel=1e-6)
    assert predicted_angles.numpy() == pytest.approx(angles[[1, 1]].numpy(), rel=1e-6)


def test_statistics_without_tc_stay_finite(crystals: CrystalDataset) -> None:
    """A training CSV without 'prop' (Tc unknown everywhere) or with one Tc used to make the
    Tc scaler NaN: every Tc prediction NaN, and with one known Tc every training loss NaN."""
    stats = crystals.statistics()
    nan = float("nan")
    for tc in (torch.full((4,), nan), torch.tensor([5.0, nan, nan, nan])):
        model = CDVAE(TINY)
        model.set_statistics(stats["lengths"], stats["angles"], stats["num_atoms"], tc)
        assert torch.isfinite(model.tc_mean) and torch.isfinite(model.tc_std)
        assert torch.isfinite(model.predict_tc(torch.zeros(2, TINY.latent))).all()
        batch = crystals.collate(range(4))
        batch.tc = tc
        with torch.no_grad():
            assert all(torch.isfinite(v) for v in model(batch).values())
