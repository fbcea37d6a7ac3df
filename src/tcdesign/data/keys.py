"""Names and shapes of the arrays that describe a crystal graph and a batch of them.

One place for every shape; code that gathers, scatters or reshapes refers back here.
"""

ATOMIC_NUMBERS = "atomic_numbers"  # (n_atoms,) int64, Z of each site
EDGE_INDEX = "edge_index"  # (2, n_edges) int64, rows are (source atom, target atom)
EDGE_VECTORS = "edge_vectors"  # (n_edges, 3) float32, r_target + image - r_source (Angstrom)
LINE_INDEX = "line_index"  # (2, n_triplets) int64, rows are (bond k->j, bond j->i) sharing atom j
ANGLE_COSINES = "angle_cosines"  # (n_triplets,) float32, cosine of the angle k-j-i at atom j
BATCH = "batch"  # (n_atoms,) int64, index of the crystal each atom belongs to
NUM_ATOMS = "num_atoms"  # (n_crystals,) int64, atoms per crystal
EXTRA_ATOM_FEATURES = "extra_atom_features"  # (n_atoms, d_extra) float32, optional
