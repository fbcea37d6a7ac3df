"""Periodic crystal graphs and their line graphs, as ALIGNN builds them.

The atom graph joins each atom to its 12 nearest neighbours (every neighbour out to the 12th
distance, ties included), periodic images included, searched within 8 A; when some atom has
fewer than 12 neighbours inside the cutoff, the cutoff grows (to the longest lattice vector, then
doubling) until every atom has them. The graph is made symmetric: each bond appears in both
directions. The line graph joins bond k->j to bond j->i; its feature is the cosine of the angle
k-j-i at the shared atom j (ALIGNN, npj Comput. Mater. 7, 185 (2021), sec. Methods).
Shapes are documented in :mod:`tcdesign.data.keys`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

TIE_TOLERANCE = 1e-3  # Angstrom; neighbours this close to the k-th distance count as ties


@dataclass(frozen=True)
class GraphSettings:
    """How neighbours are chosen; saved inside every model checkpoint."""

    cutoff: float = 8.0  # Angstrom, first search radius
    max_neighbors: int = 12  # k nearest neighbours per atom (ties included)


@dataclass
class CrystalGraph:
    """Arrays of one crystal graph (shapes in :mod:`tcdesign.data.keys`)."""

    atomic_numbers: np.ndarray  # (n_atoms,)
    edge_index: np.ndarray  # (2, n_edges)
    edge_vectors: np.ndarray  # (n_edges, 3)
    line_index: np.ndarray  # (2, n_triplets)
    angle_cosines: np.ndarray  # (n_triplets,)

    @property
    def num_atoms(self) -> int:
        return len(self.atomic_numbers)


def neighbor_edges(
    structure: Structure, settings: GraphSettings = GraphSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric k-nearest-neighbour edges with periodic images.

    Returns ``edge_index`` (2, n_edges) as (source, target) and ``edge_vectors`` (n_edges, 3),
    the Cartesian vector from the source atom to the target atom's image (Angstrom).
    """
    n_atoms = len(structure)
    k = settings.max_neighbors
    cutoff = settings.cutoff
    longest = max(structure.lattice.abc)
    found = []  # (centers, neighbors, images, distances) of the atoms that have k neighbours
    todo = np.arange(n_atoms)  # atoms with fewer than k neighbours so far
    while len(todo):
        # a grown cutoff searches only around the atoms still short of neighbours: searching
        # every atom of a large cell out to its longest lattice vector takes gigabytes
        sites = None if len(todo) == n_atoms else [structure[i] for i in todo]
        centers, neighbors, images, distances = structure.get_neighbor_list(cutoff, sites)
        centers = todo[centers]  # site-list positions -> atom indices
        if sites is not None:  # pymatgen's exclude_self compares list positions with indices
            other = (centers != neighbors) | (distances > 1e-8)
            centers, neighbors, images, distances = (
                centers[other],
                neighbors[other],
                images[other],
                distances[other],
            )
        done = np.bincount(centers, minlength=n_atoms) >= k  # (n_atoms,)
        rows = done[centers]
        found.append((centers[rows], neighbors[rows], images[rows], distances[rows]))
        todo = todo[~done[todo]]
        cutoff = longest if cutoff < longest else 2.0 * cutoff
    centers, neighbors, images, distances = (np.concatenate(a) for a in zip(*found, strict=True))
    counts = np.bincount(centers, minlength=n_atoms)
    # k-th smallest distance of each centre: sort by (centre, distance)
    order = np.lexsort((distances, centers))
    centers, neighbors, images, distances = (
        centers[order],
        neighbors[order],
        images[order],
        distances[order],
    )
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    kth = distances[starts + k - 1]  # (n_atoms,)
    keep = distances <= kth[centers] + TIE_TOLERANCE
    src, dst, img = centers[keep], neighbors[keep], np.rint(images[keep]).astype(np.int64)
    # both directions: j seen from i with image t, and i seen from j with image -t
    src_all = np.concatenate((src, dst))
    dst_all = np.concatenate((dst, src))
    img_all = np.concatenate((img, -img))
    keys = np.concatenate((src_all[:, None], dst_all[:, None], img_all), axis=1)
    keys = np.unique(keys, axis=0)  # drops bonds found from both ends; sorted by source
    edge_index = keys[:, :2].T.copy()  # (2, n_edges)
    cart = structure.cart_coords
    shift = keys[:, 2:].astype(np.float64) @ structure.lattice.matrix  # (n_edges, 3)
    edge_vectors = cart[edge_index[1]] + shift - cart[edge_index[0]]  # (n_edges, 3)
    return edge_index, edge_vectors


def line_graph(
    edge_index: np.ndarray, edge_vectors: np.ndarray, n_atoms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Line graph of a directed atom graph: bond a = k->j feeds bond b = j->i.

    Returns ``line_index`` (2, n_triplets) as (a, b) and the cosine of the angle k-j-i,
    between -r_a (from j back to k) and r_b (from j to i). Back-tracking pairs (i == k, same
    image) are kept, as in ALIGNN; their cosine is 1.
    """
    src, dst = edge_index
    out_degree = np.bincount(src, minlength=n_atoms)  # (n_atoms,)
    by_source = np.argsort(src, kind="stable")  # (n_edges,) edges grouped by source atom
    first_out = np.concatenate(([0], np.cumsum(out_degree)[:-1]))  # (n_atoms,)
    pairs_per_edge = out_degree[dst]  # (n_edges,) bonds leaving the target atom
    a = np.repeat(np.arange(len(src)), pairs_per_edge)  # (n_triplets,)
    offset = np.arange(len(a)) - np.repeat(
        np.cumsum(pairs_per_edge) - pairs_per_edge, pairs_per_edge
    )  # (n_triplets,) rank within group
    b = by_source[first_out[dst[a]] + offset]  # (n_triplets,)
    r_a = -edge_vectors[a]  # (n_triplets, 3) from j back to k
    r_b = edge_vectors[b]  # (n_triplets, 3) from j to i
    cosines = np.einsum("ij,ij->i", r_a, r_b) / (
        np.linalg.norm(r_a, axis=1) * np.linalg.norm(r_b, axis=1)
    )
    return np.stack((a, b)), np.clip(cosines, -1.0, 1.0)


def crystal_graph(structure: Structure, settings: GraphSettings = GraphSettings()) -> CrystalGraph:
    """The ALIGNN atom graph and line graph of ``structure``."""
    edge_index, edge_vectors = neighbor_edges(structure, settings)
    line_index, cosines = line_graph(edge_index, edge_vectors, len(structure))
    return CrystalGraph(
        atomic_numbers=np.array(structure.atomic_numbers, dtype=np.int64),
        edge_index=edge_index.astype(np.int64),
        edge_vectors=edge_vectors.astype(np.float32),
        line_index=line_index.astype(np.int64),
        angle_cosines=cosines.astype(np.float32),
    )
