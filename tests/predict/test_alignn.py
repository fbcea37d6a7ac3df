"""Physics tests of the ALIGNN model: invariances, batching, checkpoints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Structure
from pymatgen.core.operations import SymmOp

from tcdesign.data.batch import collate
from tcdesign.data.graphs import crystal_graph
from tcdesign.predict.alignn import (
    ALIGNN,
    ALIGNNConfig,
    EdgeGatedGraphConv,
    RBFExpansion,
    cgcnn_table,
)
from tcdesign.predict.dataset import GraphDataset

SMALL = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden=16, embedding=8, target="tc")


@pytest.fixture(scope="module", params=["none", "composition"])
def model(request) -> ALIGNN:
    """The plain model and the one with crystal descriptors in its head."""
    torch.manual_seed(0)
    net = ALIGNN(replace(SMALL, descriptors=request.param)).eval()
    with torch.no_grad():  # non-trivial output statistics so that a bug cannot hide in zeros
        net.target_mean.fill_(1.0)
        net.target_std.fill_(0.7)
        net.descriptor_mean.fill_(0.5)
    return net


def predict(model: ALIGNN, structures: list[Structure]) -> np.ndarray:
    data = GraphDataset(
        structures, None, model.config.graph_settings, descriptor_set=model.config.descriptors
    )
    with torch.no_grad():
        return model(data.collate(range(len(structures)))).numpy()


def test_cgcnn_table_has_92_features_for_z_1_to_100() -> None:
    table = cgcnn_table()
    assert table.shape == (101, 92)
    assert torch.all(table[0] == 0)
    assert torch.all(table[1:].sum(dim=1) > 0)


def test_rbf_peaks_at_its_centres() -> None:
    rbf = RBFExpansion(0.0, 8.0, 80)
    values = rbf(torch.tensor([0.0, 4.0]))
    assert values.shape == (2, 80)
    assert int(values[0].argmax()) == 0
    assert values[0, 0] == pytest.approx(1.0)


def test_rotation_and_translation_invariance(model: ALIGNN, ternary: Structure) -> None:
    moved = ternary.copy()
    rotation = SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0)
    moved.apply_operation(rotation)
    moved.translate_sites(range(len(moved)), [0.13, -0.4, 0.27], frac_coords=True)
    assert predict(model, [moved]) == pytest.approx(predict(model, [ternary]), rel=1e-5, abs=1e-5)


def test_permutation_invariance(model: ALIGNN, ternary: Structure) -> None:
    order = [2, 0, 3, 1]
    permuted = Structure(
        ternary.lattice, [ternary[i].specie for i in order], [ternary[i].frac_coords for i in order]
    )
    assert predict(model, [permuted]) == pytest.approx(
        predict(model, [ternary]), rel=1e-5, abs=1e-5
    )


def test_periodic_image_invariance(model: ALIGNN, ternary: Structure) -> None:
    shifted = Structure(
        ternary.lattice,
        ternary.species,
        ternary.frac_coords + np.array([[1, 0, -1], [0, 2, 0], [-1, -1, 1], [3, 0, 0]]),
    )
    assert predict(model, [shifted]) == pytest.approx(predict(model, [ternary]), rel=1e-5, abs=1e-5)


def test_supercell_invariance(model: ALIGNN, ternary: Structure, rocksalt: Structure) -> None:
    for structure in (ternary, rocksalt):
        supercell = structure * (2, 2, 2)
        assert predict(model, [supercell]) == pytest.approx(
            predict(model, [structure]), rel=1e-5, abs=1e-5
        )


def test_batched_equals_one_by_one(model: ALIGNN, val_structures: list[Structure]) -> None:
    batched = predict(model, val_structures)
    single = np.concatenate([predict(model, [s]) for s in val_structures])
    assert batched == pytest.approx(single, rel=1e-5, abs=1e-5)


def test_skipped_edge_updates_change_nothing(val_structures: list[Structure]) -> None:
    """The last layers skip the edge updates nothing reads: same outputs as running them all."""
    torch.manual_seed(2)
    net = ALIGNN(replace(SMALL, alignn_layers=2, gcn_layers=2)).eval()
    batch = collate([crystal_graph(s) for s in val_structures[:4]])
    calls: list[bool] = []
    for conv in net.modules():
        if isinstance(conv, EdgeGatedGraphConv):
            original = conv.forward

            def everything(nodes, edges, index, update_edges=True, _original=original):
                calls.append(update_edges)
                return _original(nodes, edges, index, True)

            conv.forward = everything
    with torch.no_grad():
        reference = net(batch)
    assert calls.count(False) == 2  # the last line-graph and the last GCN convolution
    for conv in net.modules():
        if isinstance(conv, EdgeGatedGraphConv):
            del conv.forward  # back to the class's method
    with torch.no_grad():
        assert torch.equal(net(batch), reference)
    conv = net.gcn_layers[-1]
    nodes, edges = torch.randn(5, 16), torch.randn(8, 16)
    index = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2], [1, 2, 3, 4, 0, 2, 3, 4]])
    kept_nodes, kept_edges = conv(nodes, edges, index, update_edges=False)
    all_nodes, _ = conv(nodes, edges, index)
    assert kept_edges is edges and torch.equal(kept_nodes, all_nodes)


def _plain_edge_gated_conv(
    conv: EdgeGatedGraphConv, nodes: torch.Tensor, edges: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution written out of place, term by term as in its docstring."""
    src, dst = index
    gate = conv.src_gate(nodes)[src] + conv.dst_gate(nodes)[dst] + conv.edge_gate(edges)
    sigma = torch.sigmoid(gate)
    n = nodes.shape[0]
    summed = torch.zeros(n, nodes.shape[1]).index_add(0, dst, conv.dst_update(nodes)[src] * sigma)
    norm = torch.zeros(n, nodes.shape[1]).index_add(0, dst, sigma)
    updated = conv.src_update(nodes) + summed / (norm + 1e-6)
    new_nodes = nodes + torch.nn.functional.silu(conv.norm_nodes(updated))
    return new_nodes, edges + torch.nn.functional.silu(conv.norm_edges(gate))


def test_in_place_convolution_matches_the_plain_formula_with_gradients() -> None:
    """The convolution's in-place sums (for speed) give the textbook values and gradients."""
    torch.manual_seed(3)
    conv = EdgeGatedGraphConv(16)
    index = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 4], [1, 2, 3, 4, 0, 2, 3, 4, 4]])
    results = []
    for forward in (conv.forward, lambda *a: _plain_edge_gated_conv(conv, *a)):
        conv.zero_grad()
        nodes = torch.randn(5, 16, generator=torch.Generator().manual_seed(4)).requires_grad_()
        edges = torch.randn(9, 16, generator=torch.Generator().manual_seed(5)).requires_grad_()
        new_nodes, new_edges = forward(nodes, edges, index)
        (new_nodes.square().sum() + (new_edges * new_edges.flip(0)).sum()).backward()
        grads = [p.grad.clone() for p in conv.parameters()]
        results.append((new_nodes.detach(), new_edges.detach(), nodes.grad, edges.grad, grads))
    fast, plain = results
    for a, b in zip(fast[:4], plain[:4], strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(fast[4], plain[4], strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert all(g.abs().sum() > 0 for g in fast[4])


def test_no_gradient_leaks_between_crystals(val_structures: list[Structure]) -> None:
    torch.manual_seed(1)
    net = ALIGNN(SMALL)
    batch = collate([crystal_graph(s) for s in val_structures[:3]])
    batch.edge_vectors.requires_grad_(True)
    net(batch)[0].backward()
    grad = batch.edge_vectors.grad.abs().sum(dim=1)  # (n_edges,)
    first_crystal_edges = batch.batch[batch.edge_index[0]] == 0
    assert grad[first_crystal_edges].sum() > 0
    assert torch.all(grad[~first_crystal_edges] == 0)


def test_checkpoint_round_trip(model: ALIGNN, val_structures: list[Structure], tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save(model.to_checkpoint(), path)
    loaded = ALIGNN.from_checkpoint(torch.load(path, weights_only=False))
    assert loaded.config == model.config
    assert predict(loaded, val_structures) == pytest.approx(predict(model, val_structures))


def test_log1p_transform_round_trip(model: ALIGNN) -> None:
    tc = torch.tensor([0.0, 1.5, 30.0])
    assert model.inverse_transform(model.transform(tc)) == pytest.approx(tc, abs=1e-4)
    assert torch.all(model.inverse_transform(torch.tensor([-2.0])) >= 0)
