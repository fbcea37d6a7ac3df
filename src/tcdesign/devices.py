"""Where inference runs: a ``--device`` name checked up front, and a bridge that runs one network
on that device while the code around it keeps its tensors (and its random streams) on the CPU.

Sampling draws every random number on the CPU with a seeded ``torch.Generator``, so a seed gives
the same stream on every device; only the network that dominates the cost (the score network,
called hundreds of times per crystal) moves. Training has its own device flags (Lightning's).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tcdesign.data.io import InputError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (a GPU when there is one) as a device
    that exists here; anything else is an InputError that says what is available."""
    name = (name or "cpu").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {name!r}: this torch ({torch.__version__}) sees no CUDA GPU; "
                "use --device cpu, or install a CUDA build of torch on a GPU machine"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise InputError(f"device {name!r}: Apple's MPS backend is not available here")
        return device
    raise InputError(f"unsupported device {name!r}; use cpu, cuda, cuda:N, mps or auto")


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_move(v, device) for v in value)
    if isinstance(value, list):
        return [_move(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value


class DeviceBridge(nn.Module):
    """``module`` on ``device``, called with CPU tensors and returning CPU tensors.

    Tensor arguments (also inside tuples, lists and dicts) go to the device, the outputs come back
    to the device of the first tensor argument. On the CPU it is a plain pass-through.
    """

    def __init__(self, module: nn.Module, device: torch.device | str) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.module = module.to(self.device)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        home = next(
            (a.device for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)),
            torch.device("cpu"),
        )
        output = self.module(*_move(args, self.device), **_move(kwargs, self.device))
        return _move(output, home)


def bridge_decoder(model: nn.Module, device: torch.device) -> nn.Module:
    """Run ``model.decoder`` (the generator's score network) on ``device``; the rest of the
    model stays on the CPU. Nothing changes for the CPU. Returns ``model``."""
    if device.type != "cpu" and not isinstance(model.decoder, DeviceBridge):
        model.decoder = DeviceBridge(model.decoder, device)
    return model
