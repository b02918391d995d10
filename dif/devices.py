"""Where to compute: one resolver for the service, the trainer and the scanners."""

from __future__ import annotations

import torch

from dif.errors import DifError


class DeviceUnavailable(DifError):
    code = "device_unavailable"
    status = 422


def resolve_device(name: str, setting: str = "--device") -> torch.device:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``; ``setting`` names the knob in the error
    (``--device`` on a command line, ``DIF_DEVICE`` for the service)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise DeviceUnavailable(f"{setting} must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"{setting} cuda was asked for but no CUDA device is available; "
                                f"use {setting} cpu or auto")
    return torch.device(name)
