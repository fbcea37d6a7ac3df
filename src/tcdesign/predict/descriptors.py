"""Crystal-level descriptors that can join ALIGNN's pooled features before its head.

``composition``: fraction-weighted mean, standard deviation, minimum and maximum of ten elemental
properties (pymatgen's element data: Z, mass, Pauling electronegativity, row, group, atomic
radius, Mendeleev number, melting point, molar volume, valence-electron count), plus the volume
per atom, the density, the number of elements, and the shortest and mean
interatomic distance within 4 A. Magpie-style statistics (Ward et al., npj Comput. Mater. 2, 16028
(2016)); the masses and distances carry the phonon scale that the McMillan formula depends on.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np
from pymatgen.core import Element, Structure

ELEMENT_PROPERTIES = (
    "Z",
    "atomic_mass",
    "X",
    "row",
    "group",
    "atomic_radius",
    "mendeleev_no",
    "melting_point",
    "molar_volume",
    "valence_electrons",
)
STATISTICS = ("mean", "std", "min", "max")
STRUCTURE_FEATURES = (
    "volume_per_atom",
    "density",
    "num_elements",
    "min_distance",
    "mean_distance",
)
DESCRIPTOR_SIZES = {
    "none": 0,
    "composition": len(ELEMENT_PROPERTIES) * len(STATISTICS) + len(STRUCTURE_FEATURES),
}
NEIGHBOR_RADIUS = 4.0  # Angstrom, for the distance statistics
MASS_COLUMN = ELEMENT_PROPERTIES.index("atomic_mass")
AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660  # 1 amu / A^3 in g / cm^3
MAX_Z = 100


def _valence_electrons(element: Element) -> float:
    """Electrons outside the noble-gas core and filled d shells: the group number up to 12,
    group - 10 beyond (He 2); lanthanides and actinides count 3."""
    if element.Z == 2:
        return 2.0
    if element.is_lanthanoid or element.is_actinoid:
        return 3.0
    return float(element.group if element.group <= 12 else element.group - 10)


@cache
def element_table() -> np.ndarray:
    """(MAX_Z + 1, n_properties) elemental properties; gaps filled by the column median."""
    table = np.full((MAX_Z + 1, len(ELEMENT_PROPERTIES)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for each missing value; medians fill them
        _fill_table(table)
    medians = np.nanmedian(table[1:], axis=0)
    gaps = np.isnan(table)
    table[gaps] = np.take(medians, np.nonzero(gaps)[1])
    table[0] = 0.0
    return table


def _fill_table(table: np.ndarray) -> None:
    for z in range(1, MAX_Z + 1):
        element = Element.from_Z(z)
        for k, name in enumerate(ELEMENT_PROPERTIES):
            if name == "valence_electrons":
                table[z, k] = _valence_electrons(element)
                continue
            try:
                value = getattr(element, name)
                table[z, k] = float(value) if value is not None else np.nan
            except (AttributeError, TypeError, ValueError):
                table[z, k] = np.nan


def composition_descriptors(structure: Structure) -> np.ndarray:
    """(DESCRIPTOR_SIZES['composition'],) descriptors of one structure (float32)."""
    # by element: oxidation-state labels (Fe2+ and Fe3+ from a CIF) are one element, not two
    counts = structure.composition.element_composition
    numbers = np.array([element.Z for element in counts], dtype=np.int64)
    amounts = np.array([counts[element] for element in counts])  # (n_elements,) atoms per cell
    weights = amounts / amounts.sum()  # (n_elements,) fractions
    values = element_table()[numbers]  # (n_elements, n_properties)
    mean = weights @ values
    std = np.sqrt(weights @ (values - mean) ** 2)
    features = [mean, std, values.min(axis=0), values.max(axis=0)]
    distances = structure.get_neighbor_list(NEIGHBOR_RADIUS)[3]
    distances = distances[distances > 1e-8]
    shortest = float(distances.min()) if len(distances) else NEIGHBOR_RADIUS
    average = float(distances.mean()) if len(distances) else NEIGHBOR_RADIUS
    structural = [
        structure.volume / len(structure),
        # g/cm^3 from amu/A^3; pymatgen's Structure.density gives the same through its unit
        # classes at 3 ms a structure, half the cost of building the graph
        float(amounts @ values[:, MASS_COLUMN]) * AMU_PER_A3_IN_G_PER_CM3 / structure.volume,
        len(numbers),
        shortest,
        average,
    ]
    return np.concatenate([*features, structural]).astype(np.float32)


def descriptors(name: str, structures: Sequence[Structure]) -> np.ndarray | None:
    """(n_structures, size) descriptors called ``name``, or None for ``"none"``."""
    if name == "none":
        return None
    if name == "composition":
        rows = [composition_descriptors(s) for s in structures]
        return np.stack(rows) if rows else np.zeros((0, DESCRIPTOR_SIZES[name]), np.float32)
    raise ValueError(f"unknown descriptors {name!r}; choose from {sorted(DESCRIPTOR_SIZES)}")
