"""Device selection and the bridge that runs the score network elsewhere (tested on the CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tcdesign.data.io import InputError
from tcdesign.devices import DeviceBridge, bridge_decoder, resolve_device
from tcdesign.generate.cdvae import CDVAE
from tcdesign.generate.sample import LangevinSchedule, decode
from tests.generate.test_cdvae import TINY


def test_resolve_device_names() -> None:
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_missing_gpu_is_one_clear_error() -> None:
    with pytest.raises(InputError, match="sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda:1")


class Pair(nn.Module):
    """Returns a tuple and a dict, as networks do, to check the bridge moves nested outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, scale: float, extra: dict) -> tuple:
        y = self.linear(x) * scale
        return y, {"sum": y.sum() + extra["shift"]}


def test_bridge_passes_arguments_and_nested_outputs_through() -> None:
    torch.manual_seed(0)
    module = Pair()
    x = torch.randn(4, 3)
    expected = module(x, 2.0, {"shift": torch.tensor(1.0)})
    got = DeviceBridge(module, "cpu")(x, 2.0, extra={"shift": torch.tensor(1.0)})
    assert torch.equal(got[0], expected[0])
    assert torch.equal(got[1]["sum"], expected[1]["sum"])
    assert got[0].device == x.device


def test_sampling_through_a_bridged_score_network_is_unchanged() -> None:
    """decode() calls the score network through the bridge exactly as it calls it directly."""
    torch.manual_seed(0)
    model = CDVAE(TINY).eval()
    z = torch.randn(3, TINY.latent, generator=torch.Generator().manual_seed(1))
    schedule = LangevinSchedule(steps_per_level=2, levels=3, composition="cdvae")
    plain = decode(model, z, schedule, torch.Generator().manual_seed(2))
    model.decoder = DeviceBridge(model.decoder, "cpu")
    bridged = decode(model, z, schedule, torch.Generator().manual_seed(2))
    assert torch.equal(plain.frac_coords, bridged.frac_coords)
    assert torch.equal(plain.atom_types, bridged.atom_types)
    assert torch.equal(plain.lattice, bridged.lattice)


def test_bridge_decoder_leaves_a_cpu_model_alone() -> None:
    model = CDVAE(TINY)
    decoder = model.decoder
    assert bridge_decoder(model, torch.device("cpu")).decoder is decoder


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize(
    "verb", [["generate", "--n", "2"], ["csp", "--formula", "NbN", "--n", "1"]]
)
def test_cli_refuses_a_missing_device_before_any_work(verb, tmp_path, capsys) -> None:
    from tcdesign.cli import main

    out = tmp_path / "out"
    assert main([*verb, "--out", str(out), "--device", "cuda"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("verb", ["predict", "screen", "run"])
def test_predict_screen_and_run_refuse_a_missing_device_before_any_work(
    verb, tmp_path, capsys
) -> None:
    from pymatgen.core import Lattice, Structure

    from tcdesign.cli import main

    cif = tmp_path / "NbN.cif"
    Structure(Lattice.cubic(4.4), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(cif))
    out = tmp_path / ("tc.csv" if verb == "predict" else "out")
    argv = [verb] + ([] if verb == "run" else [str(cif)]) + ["--out", str(out)]
    assert main([*argv, "--device", "cuda", "--quiet"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_an_ensemble_on_the_cpu_device_predicts_as_before() -> None:
    from pymatgen.core import Lattice, Structure

    from tcdesign.predict.ensemble import Ensemble

    crystals = [
        Structure(Lattice.cubic(4.4), ["Nb", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.3), ["Nb"], [[0, 0, 0]]),
    ]
    plain = Ensemble.load()
    mean, std = plain.predict(crystals)
    moved = Ensemble.load().to(resolve_device("auto"))
    assert moved.device == resolve_device("auto")
    mean2, std2 = moved.predict(crystals)
    assert mean2 == pytest.approx(mean, rel=1e-4) and std2 == pytest.approx(std, rel=1e-4)
