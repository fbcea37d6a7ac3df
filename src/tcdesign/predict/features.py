"""Pretrained per-atom features that can sit beside the CGCNN features of ALIGNN.

``chgnet``: the 64 atom features of CHGNet's last interaction layer (Deng et al., Nat. Mach.
Intell. 5, 1031 (2023)); its weights ship in the PyPI wheel, so this works offline. The network is
frozen: the features are computed once per structure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
from pymatgen.core import Structure
from tqdm.auto import tqdm

FEATURE_SIZES = {"none": 0, "chgnet": 64}
FEATURE_MAX_Z = {"chgnet": 94}  # CHGNet embeds the elements H..Pu
CHUNK = 64  # structures per CHGNet call


@cache
def _chgnet():
    import contextlib
    import io

    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints a banner when it loads
        model = CHGNet.load(verbose=False)
    # an atom with no neighbour within CHGNet's 6 A raised ValueError, ending a whole run over
    # many structures; its features are then its element embedding through the layers
    model.graph_converter.set_isolated_atom_response("ignore")
    return model


def chgnet_atom_features(
    structures: Sequence[Structure], progress: bool = False
) -> list[np.ndarray]:
    """(n_atoms, 64) CHGNet atom features of each structure."""
    model = _chgnet()
    features: list[np.ndarray] = []
    bar = tqdm(
        total=len(structures),
        desc="CHGNet features",
        unit="structure",
        disable=not progress,
        leave=False,
    )
    for start in range(0, len(structures), CHUNK):
        chunk = list(structures[start : start + CHUNK])
        outputs = model.predict_structure(
            chunk, task="e", return_atom_feas=True, batch_size=len(chunk)
        )
        outputs = [outputs] if isinstance(outputs, dict) else outputs
        features.extend(np.asarray(out["atom_fea"], dtype=np.float32) for out in outputs)
        bar.update(len(chunk))
    bar.close()
    return features


def unsupported_reason(name: str, structure: Structure) -> str | None:
    """Why the pretrained features ``name`` cannot describe ``structure`` (an element beyond
    the pretrained network's), or None when they can."""
    max_z = FEATURE_MAX_Z.get(name)
    if max_z is None:
        return None
    for element in structure.composition.element_composition.elements:
        if max_z < element.Z:
            return (
                f"element {element.symbol} (Z = {element.Z}) is beyond this model's {name} "
                f"features (Z 1-{max_z})"
            )
    return None


def atom_featurizer(name: str) -> Callable[..., list[np.ndarray]] | None:
    """The featurizer called ``name``, or None for ``"none"``."""
    if name == "none":
        return None
    if name == "chgnet":
        return chgnet_atom_features
    raise ValueError(f"unknown pretrained features {name!r}; choose from {sorted(FEATURE_SIZES)}")
