"""Crystal graphs (tcdesign.data.graphs): neighbour shells, symmetry, line graph, invariances."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from tcdesign.data.graphs import (
    TIE_TOLERANCE,
    CrystalGraph,
    GraphSettings,
    crystal_graph,
    line_graph,
    neighbor_edges,
)

A = 4.0  # Angstrom, cubic lattice parameter of the test crystals


def fcc_primitive(a: float = A) -> Structure:
    return Structure(
        Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Al"], [[0, 0, 0]]
    )


def fcc_conventional(a: float = A) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Al"], [[0, 0, 0]])


def bcc(a: float = A) -> Structure:
    return Structure(Lattice.cubic(a), ["Nb", "Nb"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rocksalt(a: float = A) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Nb", "C"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def simple_cubic(a: float = A) -> Structure:
    return Structure(Lattice.cubic(a), ["Po"], [[0, 0, 0]])


def ternary() -> Structure:
    """Low symmetry, no ties: every atom and direction is different."""
    lattice = Lattice.from_parameters(3.9, 4.3, 5.1, 84, 97, 105)
    return Structure(
        lattice,
        ["Nb", "Sn", "Sn", "B"],
        [[0.02, 0.05, 0.01], [0.51, 0.47, 0.12], [0.22, 0.71, 0.55], [0.73, 0.18, 0.81]],
    )


def lengths(graph: CrystalGraph) -> np.ndarray:
    return np.linalg.norm(graph.edge_vectors.astype(np.float64), axis=1)


def per_atom_lengths(graph: CrystalGraph) -> list[tuple[float, ...]]:
    """Sorted bond lengths leaving each atom, rounded to 1e-4 A."""
    d = lengths(graph)
    return [
        tuple(np.round(np.sort(d[graph.edge_index[0] == i]), 4)) for i in range(graph.num_atoms)
    ]


def same_shells(g0: CrystalGraph, g1: CrystalGraph, atol: float = 2e-4) -> bool:
    """Atom by atom, the same sorted bond lengths."""
    s0, s1 = per_atom_lengths(g0), per_atom_lengths(g1)
    return all(
        len(a) == len(b) and np.allclose(a, b, atol=atol) for a, b in zip(s0, s1, strict=True)
    )


def edge_images(
    structure: Structure, edge_index: np.ndarray, edge_vectors: np.ndarray
) -> np.ndarray:
    """Integer lattice translation of each edge, from vector = r_dst + image @ L - r_src."""
    cart = structure.cart_coords
    shift = edge_vectors - (cart[edge_index[1]] - cart[edge_index[0]])
    images = shift @ np.linalg.inv(structure.lattice.matrix)
    assert np.allclose(images, np.rint(images), atol=1e-4)
    return np.rint(images).astype(int)


# --- neighbour shells --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [fcc_primitive, fcc_conventional])
def test_fcc_has_12_neighbours_at_a_over_sqrt2(make) -> None:
    structure = make()
    graph = crystal_graph(structure)
    assert np.bincount(graph.edge_index[0], minlength=len(structure)).tolist() == [12] * len(
        structure
    )
    assert np.bincount(graph.edge_index[1], minlength=len(structure)).tolist() == [12] * len(
        structure
    )
    assert np.allclose(lengths(graph), A / math.sqrt(2), atol=1e-5)


def test_bcc_includes_the_second_shell_ties() -> None:
    """8 at a*sqrt(3)/2, then 6 at a: the 12th distance is a, and all six ties are kept."""
    graph = crystal_graph(bcc())
    assert np.bincount(graph.edge_index[0]).tolist() == [14, 14]
    for shell in per_atom_lengths(graph):
        assert shell == pytest.approx([A * math.sqrt(3) / 2] * 8 + [A] * 6, abs=1e-4)


def test_rocksalt_6_unlike_and_12_like() -> None:
    structure = rocksalt()
    graph = crystal_graph(structure)
    z = graph.atomic_numbers
    src, dst = graph.edge_index
    d = lengths(graph)
    assert np.bincount(src).tolist() == [18] * 8
    for i in range(len(structure)):
        out = src == i
        unlike = out & (z[dst] != z[i])
        like = out & (z[dst] == z[i])
        assert unlike.sum() == 6 and np.allclose(d[unlike], A / 2, atol=1e-5)
        assert like.sum() == 12 and np.allclose(d[like], A / math.sqrt(2), atol=1e-5)


def test_simple_cubic_6_plus_12() -> None:
    graph = crystal_graph(simple_cubic())
    assert graph.edge_index.shape == (2, 18)
    assert sorted(np.round(lengths(graph), 4)) == pytest.approx(
        [A] * 6 + [A * math.sqrt(2)] * 12, abs=1e-4
    )


def test_fewer_neighbours_setting() -> None:
    """k = 8 in bcc: the first shell only; k = 9 reaches into the ties of the second shell."""
    assert np.bincount(neighbor_edges(bcc(), GraphSettings(max_neighbors=8))[0][0]).tolist() == [
        8,
        8,
    ]
    assert np.bincount(neighbor_edges(bcc(), GraphSettings(max_neighbors=9))[0][0]).tolist() == [
        14,
        14,
    ]


def test_cutoff_grows_for_a_large_cell() -> None:
    """One atom in a 10 A box has no neighbour within 8 A; the search must widen."""
    structure = Structure(Lattice.cubic(10.0), ["Nb"], [[0.3, 0.3, 0.3]])
    graph = crystal_graph(structure)
    assert graph.edge_index.shape[1] >= 12
    assert sorted(np.round(lengths(graph), 4)) == pytest.approx(
        [10.0] * 6 + [10.0 * math.sqrt(2)] * 12, abs=1e-4
    )


def test_cutoff_grows_for_a_small_cutoff() -> None:
    graph = crystal_graph(fcc_primitive(), GraphSettings(cutoff=1.0))
    assert graph.edge_index.shape[1] == 12


def slab_with_an_isolated_atom() -> Structure:
    """Two bcc Nb layers and an H atom 10 A away in the vacuum of a 6.6 x 6.6 x 30 A cell."""
    layers = [[x, y, 0.0] for x in (0, 0.5) for y in (0, 0.5)]
    layers += [[x + 0.25, y + 0.25, 0.055] for x, y, _ in layers]
    return Structure(
        Lattice.orthorhombic(6.6, 6.6, 30.0), ["Nb"] * 8 + ["H"], [*layers, [0, 0, 0.39]]
    )


def test_a_grown_cutoff_searches_only_around_the_atoms_short_of_neighbours(monkeypatch) -> None:
    """The wide search used to cover every atom, out to the longest lattice vector: gigabytes
    and minutes for a few hundred atoms in a cell with vacuum and one isolated atom."""
    structure = slab_with_an_isolated_atom()
    searches = []
    original = Structure.get_neighbor_list

    def spy(self, r, sites=None, *args, **kwargs):
        searches.append((r, len(self) if sites is None else len(sites)))
        return original(self, r, sites, *args, **kwargs)

    monkeypatch.setattr(Structure, "get_neighbor_list", spy)
    neighbor_edges(structure)
    assert searches[0] == (8.0, 9)
    assert all(n_sites == 1 for r, n_sites in searches[1:]) and len(searches) > 1


def brute_force_edges(structure: Structure, k: int = 12, reach: int = 3) -> set[tuple]:
    """The symmetrised k-nearest-neighbour edge set, ties included, by a plain image loop."""
    cart = structure.cart_coords
    lattice = structure.lattice.matrix
    images = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    shifts = images @ lattice
    edges = set()
    for i in range(len(structure)):
        found = []
        for j in range(len(structure)):
            d = np.linalg.norm(cart[j] + shifts - cart[i], axis=1)
            for t, dist in zip(images, d, strict=True):
                if dist > 1e-8:
                    found.append((dist, j, tuple(t)))
        found.sort()
        kth = found[k - 1][0]
        for dist, j, t in found:
            if dist <= kth + TIE_TOLERANCE:
                edges.add((i, j, t))
                edges.add((j, i, tuple(-np.array(t))))
    return edges


@pytest.mark.parametrize("make", [ternary, rocksalt, bcc, slab_with_an_isolated_atom])
def test_edges_match_a_brute_force_search(make) -> None:
    structure = make()
    edge_index, edge_vectors = neighbor_edges(structure)
    images = edge_images(structure, edge_index, edge_vectors)
    ours = [
        (int(i), int(j), tuple(int(x) for x in t))
        for i, j, t in zip(edge_index[0], edge_index[1], images, strict=True)
    ]
    assert len(ours) == len(set(ours))  # no duplicate edge
    assert set(ours) == brute_force_edges(structure)


# --- edge vectors and symmetry -----------------------------------------------------------------


@pytest.mark.parametrize("make", [ternary, rocksalt, bcc, fcc_primitive])
def test_edge_vectors_are_cartesian_differences_with_image(make) -> None:
    structure = make()
    graph = crystal_graph(structure)
    images = edge_images(structure, graph.edge_index, graph.edge_vectors.astype(np.float64))
    cart = structure.cart_coords
    expected = (
        cart[graph.edge_index[1]] + images @ structure.lattice.matrix - cart[graph.edge_index[0]]
    )
    assert np.allclose(graph.edge_vectors, expected, atol=1e-5)
    # the same length as pymatgen's distance to that periodic image
    for (i, j), t, d in zip(graph.edge_index.T, images, lengths(graph), strict=True):
        assert structure[i].distance(structure[j], jimage=t) == pytest.approx(d, abs=1e-5)


@pytest.mark.parametrize("make", [ternary, rocksalt, bcc, fcc_primitive, simple_cubic])
def test_graph_is_symmetric(make) -> None:
    structure = make()
    edge_index, edge_vectors = neighbor_edges(structure)
    images = edge_images(structure, edge_index, edge_vectors)
    keyed = {
        (int(i), int(j), tuple(t)): v
        for i, j, t, v in zip(edge_index[0], edge_index[1], images, edge_vectors, strict=True)
    }
    for (i, j, t), vector in keyed.items():
        reverse = (j, i, tuple(-np.array(t)))
        assert reverse in keyed
        assert np.allclose(keyed[reverse], -vector, atol=1e-8)


def test_array_types_and_shapes() -> None:
    structure = ternary()
    graph = crystal_graph(structure)
    n_edges = graph.edge_index.shape[1]
    assert graph.atomic_numbers.dtype == np.int64
    assert graph.atomic_numbers.tolist() == [41, 50, 50, 5]
    assert graph.edge_index.dtype == np.int64 and graph.edge_index.shape == (2, n_edges)
    assert graph.edge_vectors.dtype == np.float32 and graph.edge_vectors.shape == (n_edges, 3)
    assert graph.line_index.dtype == np.int64 and graph.line_index.shape[0] == 2
    assert graph.angle_cosines.dtype == np.float32
    assert graph.angle_cosines.shape == (graph.line_index.shape[1],)
    assert graph.num_atoms == 4


# --- line graph --------------------------------------------------------------------------------


def test_line_graph_of_a_hand_checked_path() -> None:
    """Atoms 0 - 1 - 2 with a right angle at 1, bonds in both directions."""
    edge_index = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])
    edge_vectors = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 2.0, 0], [0, -2.0, 0]])
    line_index, cosines = line_graph(edge_index, edge_vectors, 3)
    got = {(int(a), int(b)): float(c) for (a, b), c in zip(line_index.T, cosines, strict=True)}
    # bond a = k->j feeds every bond b = j->i; cosine of the angle k-j-i
    assert got == pytest.approx(
        {
            (0, 1): 1.0,  # 0->1->0, back-tracking
            (0, 2): 0.0,  # 0->1->2, right angle at 1
            (1, 0): 1.0,  # 1->0->1
            (2, 3): 1.0,  # 1->2->1
            (3, 1): 0.0,  # 2->1->0, right angle at 1
            (3, 2): 1.0,  # 2->1->2
        }
    )


def test_line_graph_of_a_bent_triatomic() -> None:
    """A 120 degree angle: cosine -0.5 (vectors from the centre atom)."""
    angle = math.radians(120)
    v = np.array([math.cos(angle), math.sin(angle), 0.0])
    edge_index = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])
    edge_vectors = np.array([[-1.0, 0, 0], [1.0, 0, 0], v, -v])  # atom 0 at +x of atom 1
    line_index, cosines = line_graph(edge_index, edge_vectors, 3)
    got = {(int(a), int(b)): float(c) for (a, b), c in zip(line_index.T, cosines, strict=True)}
    assert got[(0, 2)] == pytest.approx(-0.5)
    assert got[(3, 1)] == pytest.approx(-0.5)


def test_fcc_angle_cosines() -> None:
    """12 neighbours: for one bond direction, the 12 directions are 1 x 1, 4 x 0.5, 2 x 0,
    4 x -0.5, 1 x -1 (cosine of the angle between them)."""
    graph = crystal_graph(fcc_primitive())
    counts = Counter(np.round(graph.angle_cosines.astype(float), 5).tolist())
    assert counts == {1.0: 12, 0.5: 48, 0.0: 24, -0.5: 48, -1.0: 12}


@pytest.mark.parametrize("make", [ternary, rocksalt])
def test_line_graph_joins_bonds_that_share_an_atom(make) -> None:
    graph = crystal_graph(make())
    src, dst = graph.edge_index
    a, b = graph.line_index
    assert np.array_equal(dst[a], src[b])
    out_degree = np.bincount(src, minlength=graph.num_atoms)
    assert len(a) == out_degree[dst].sum()
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) == len(a)  # no duplicates
    r_a = -graph.edge_vectors[a].astype(float)
    r_b = graph.edge_vectors[b].astype(float)
    expected = (r_a * r_b).sum(1) / np.linalg.norm(r_a, axis=1) / np.linalg.norm(r_b, axis=1)
    assert np.allclose(graph.angle_cosines, expected, atol=1e-5)
    assert np.all(np.abs(graph.angle_cosines) <= 1.0)


# --- invariances -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [ternary, rocksalt])
def test_rotation_keeps_lengths_and_cosines(make) -> None:
    structure = make()
    rotated = structure.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, -0.5], 37.0))
    assert not np.allclose(rotated.lattice.matrix, structure.lattice.matrix)
    g0, g1 = crystal_graph(structure), crystal_graph(rotated)
    assert g0.edge_index.shape == g1.edge_index.shape
    assert np.allclose(np.sort(lengths(g0)), np.sort(lengths(g1)), atol=1e-4)
    assert np.allclose(np.sort(g0.angle_cosines), np.sort(g1.angle_cosines), atol=1e-5)
    assert same_shells(g0, g1)


def test_translation_and_wrapping_keep_the_graph() -> None:
    structure = ternary()
    moved = structure.copy()
    moved.translate_sites(range(len(moved)), [0.37, -0.81, 1.42], to_unit_cell=True)
    g0, g1 = crystal_graph(structure), crystal_graph(moved)
    assert same_shells(g0, g1)
    assert np.allclose(np.sort(g0.angle_cosines), np.sort(g1.angle_cosines), atol=1e-5)


@pytest.mark.parametrize("make", [ternary, rocksalt])
def test_supercell_has_8x_edges_with_the_same_shells(make) -> None:
    structure = make()
    supercell = structure.make_supercell([2, 2, 2], in_place=False)
    g1, g8 = crystal_graph(structure), crystal_graph(supercell)
    assert g8.num_atoms == 8 * g1.num_atoms
    assert g8.edge_index.shape[1] == 8 * g1.edge_index.shape[1]
    assert g8.line_index.shape[1] == 8 * g1.line_index.shape[1]
    shells = Counter(per_atom_lengths(g1))
    assert Counter(per_atom_lengths(g8)) == Counter({s: 8 * n for s, n in shells.items()})
