"""Where and how precisely a network runs: devices, precision, autocast, and lending a model.

Engine module: no Qt, no napari.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .options import CPU_TILE, DEFAULT_TILE, PRECISIONS

__all__ = ["CPU_TILE", "DEFAULT_TILE", "PRECISIONS", "LentModel", "autocast", "forward"]
__all__ += ["available_devices", "default_batch", "default_tile", "resolve_device"]
__all__ += ["resolve_precision"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device choices on this machine: ``auto``, ``cpu`` and whichever of cuda/mps exist."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if _mps_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    if dev.type == "mps" and not _mps_available():
        raise ValueError("device 'mps' was asked for but Apple MPS is not available")
    return dev


def default_tile(device: torch.device) -> int:
    """Nominal tile side: :data:`CPU_TILE` on the CPU, :data:`DEFAULT_TILE` on a GPU."""
    return CPU_TILE if device.type == "cpu" else DEFAULT_TILE


def default_batch(device: torch.device) -> int:
    """Tiles per forward pass: 8 on CUDA; 1 elsewhere (no speed gain, more memory)."""
    return 8 if device.type == "cuda" else 1


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA (else fp16) and on CPUs with native bf16; fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """The one autocast context: none for ``dtype`` None or float32, else autocast to ``dtype``."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def forward(
    net: torch.nn.Module, batch: torch.Tensor, dev: torch.device, dtype: torch.dtype | None
) -> torch.Tensor:
    """Class probabilities (float32, on the CPU) for a (B, 1, H, W) batch."""
    if dev.type == "cuda":
        batch = batch.pin_memory().to(dev, non_blocking=True)
    else:
        batch = batch.to(dev)
    if dev.type != "mps":
        batch = batch.contiguous(memory_format=torch.channels_last)
    with autocast(dev, dtype):
        logits = net(batch)
    return torch.softmax(logits.float(), dim=1).cpu()


class LentModel:
    """``with LentModel(net, device) as net:`` the network in eval mode on ``device``, laid out
    channels_last (not on MPS); on leaving, every module's train/eval mode and every parameter's
    and buffer's device and memory layout are put back as the caller had them.

    Parameters are moved in place (``.data``), as ``Module.to`` does, so an optimiser holding
    them keeps working.
    """

    def __init__(self, net: torch.nn.Module, device: torch.device) -> None:
        self.net = net
        self.device = device
        modules = list(net.modules()) if isinstance(net, torch.nn.Module) else []
        self._modes = [(m, m.training) for m in modules]
        self._layouts = [
            (m, name, t.device, t.stride())
            for m in modules
            for name, t in (*m.named_parameters(recurse=False), *m.named_buffers(recurse=False))
        ]

    def __enter__(self) -> torch.nn.Module:
        if not isinstance(self.net, torch.nn.Module):  # an ONNX Runtime network: nothing to lend
            return self.net
        self.net.to(self.device).eval()
        if self.device.type != "mps":
            self.net.to(memory_format=torch.channels_last)
        return self.net

    def __exit__(self, *exc: object) -> None:
        for module, training in self._modes:
            module.training = training
        for module, name, device, stride in self._layouts:
            tensor = getattr(module, name)
            if tensor.device == device and tensor.stride() == stride:
                continue
            back = torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype, device=device)
            back.copy_(tensor.detach())
            if isinstance(tensor, torch.nn.Parameter):
                tensor.data = back
            else:
                setattr(module, name, back)
