"""Lattices in torch: parameters <-> matrices, fractional <-> Cartesian, periodic neighbours.

Conventions: a lattice matrix has the lattice vectors as rows, (n_crystals, 3, 3); lengths in
Angstrom, angles in degrees; Cartesian = fractional @ lattice. Everything is batched over crystals
with ``batch`` (n_atoms,) giving each atom's crystal, and differentiable where it matters.
"""

from __future__ import annotations

import torch


def lattice_from_parameters(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) lattices from (n, 3) lengths (A) and (n, 3) angles alpha, beta, gamma (deg).

    a lies along x, b in the xy plane (the pymatgen ``Lattice.from_parameters`` orientation up to
    a rotation; only the metric matters here).
    """
    alpha, beta, gamma = torch.deg2rad(angles).unbind(-1)  # (n,) each
    a, b, c = lengths.unbind(-1)
    cos_a, cos_b, cos_g = torch.cos(alpha), torch.cos(beta), torch.cos(gamma)
    sin_g = torch.sin(gamma).clamp_min(1e-6)
    cx = c * cos_b
    cy = c * (cos_a - cos_b * cos_g) / sin_g
    cz = torch.sqrt((c**2 - cx**2 - cy**2).clamp_min(1e-8))
    zeros = torch.zeros_like(a)
    rows = [
        torch.stack((a, zeros, zeros), -1),
        torch.stack((b * cos_g, b * sin_g, zeros), -1),
        torch.stack((cx, cy, cz), -1),
    ]
    return torch.stack(rows, dim=-2)  # (n, 3, 3)


def lattice_parameters(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3) lengths (A) and (n, 3) angles (deg) of (n, 3, 3) row-vector lattices."""
    lengths = matrix.norm(dim=-1)  # (n, 3)
    a, b, c = matrix.unbind(-2)

    def angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        cosine = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
        return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))

    return lengths, torch.stack((angle(b, c), angle(a, c), angle(a, b)), -1)


def frac_to_cart(frac: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """(n_atoms, 3) Cartesian coordinates (A)."""
    return torch.einsum("ni,nij->nj", frac, lattice[batch])  # (n_atoms, 3)


def cart_to_frac(cart: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """(n_atoms, 3) fractional coordinates, not wrapped."""
    inverse = torch.linalg.inv(lattice)  # (n_crystals, 3, 3)
    return torch.einsum("ni,nij->nj", cart, inverse[batch])


def min_image_difference(
    frac_from: torch.Tensor, frac_to: torch.Tensor, lattice: torch.Tensor, batch: torch.Tensor
) -> torch.Tensor:
    """(n_atoms, 3) shortest Cartesian vector from each ``frac_from`` to the images of ``frac_to``.

    Searches the 27 neighbouring cells around the wrapped difference; exact for cells that are not
    extremely skewed (Niggli-reduced cells are not).
    """
    delta = frac_to - frac_from
    delta = delta - torch.round(delta)  # (n_atoms, 3) in [-0.5, 0.5]
    shifts = _unit_shifts(delta.device, delta.dtype)  # (27, 3)
    candidates = delta[:, None, :] + shifts[None]  # (n_atoms, 27, 3)
    cart = torch.einsum("nki,nij->nkj", candidates, lattice[batch])  # (n_atoms, 27, 3)
    best = cart.norm(dim=-1).argmin(dim=1)  # (n_atoms,)
    return cart[torch.arange(len(best)), best]  # (n_atoms, 3)


def _unit_shifts(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    r = torch.arange(-1, 2, device=device, dtype=dtype)
    return torch.cartesian_prod(r, r, r)  # (27, 3)


def periodic_radius_graph(
    frac: torch.Tensor,
    lattice: torch.Tensor,
    batch: torch.Tensor,
    num_atoms: torch.Tensor,
    cutoff: float,
    max_neighbors: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges j -> i between atoms and periodic images within ``cutoff`` (A), vectorised in torch.

    Each atom keeps its ``max_neighbors`` nearest neighbours inside the cutoff (self-images
    included, the atom itself excluded). Returns ``edge_index`` (2, n_edges) as (source j, target
    i) and ``edge_vectors`` (n_edges, 3) = r_j + image - r_i (A), differentiable in ``frac`` and
    ``lattice``. The image range per crystal comes from its interplanar spacings, so long cutoffs
    in small cells are exact; pairs are enumerated densely per crystal (fine for the <= 30-atom
    cells of generative models, not meant for large supercells).
    """
    device, dtype = frac.device, frac.dtype
    n_crystals = lattice.shape[0]
    # images needed along each axis: cutoff / interplanar spacing d_k = 1 / |row k of inv(L)^T|
    with torch.no_grad():
        reciprocal = torch.linalg.inv(lattice).transpose(1, 2)  # (n_crystals, 3, 3)
        spacing = 1.0 / reciprocal.norm(dim=-1)  # (n_crystals, 3)
        reach = torch.ceil(cutoff / spacing).long().clamp(max=20)  # (n_crystals, 3)
        r = int(reach.max())
    offsets = torch.arange(-r, r + 1, device=device, dtype=dtype)
    images = torch.cartesian_prod(offsets, offsets, offsets)  # (n_images, 3)

    max_n = int(num_atoms.max())
    first = torch.cumsum(num_atoms, 0) - num_atoms  # (n_crystals,)
    local = torch.arange(len(batch), device=device) - first[batch]  # (n_atoms,) rank in crystal
    padded = frac.new_zeros(n_crystals, max_n, 3)
    padded[batch, local] = frac
    present = torch.zeros(n_crystals, max_n, dtype=torch.bool, device=device)
    present[batch, local] = True

    # (n_crystals, i, j, image, 3) fractional differences r_j + image - r_i
    diff = padded[:, None, :, None, :] - padded[:, :, None, None, :] + images[None, None, None]
    cart = torch.einsum("bijkx,bxy->bijky", diff, lattice)
    dist = cart.norm(dim=-1)  # (n_crystals, max_n, max_n, n_images)
    in_reach = (images.abs()[None] <= reach[:, None, :]).all(-1)  # (n_crystals, n_images)
    valid = (
        present[:, :, None, None]
        & present[:, None, :, None]
        & in_reach[:, None, None, :]
        & (dist > 1e-6)  # the atom itself
        & (dist <= cutoff)
    )
    dist = torch.where(valid, dist, torch.full_like(dist, float("inf")))

    flat = dist.reshape(n_crystals, max_n, -1)  # (n_crystals, max_n, max_n * n_images)
    k = min(max_neighbors, flat.shape[-1])
    nearest, index = torch.topk(flat, k, dim=-1, largest=False)  # (n_crystals, max_n, k)
    keep = torch.isfinite(nearest)
    crystal, target, slot = torch.nonzero(keep, as_tuple=True)
    pair = index[crystal, target, slot]
    n_images = images.shape[0]
    source, image = pair // n_images, pair % n_images
    vectors = cart[crystal, target, source, image]  # (n_edges, 3)
    edge_index = torch.stack((first[crystal] + source, first[crystal] + target))
    return edge_index, vectors


def volume(lattice: torch.Tensor) -> torch.Tensor:
    """(n,) cell volumes (A^3)."""
    return torch.linalg.det(lattice).abs()
