"""Which engine runs the network: torch, or ONNX Runtime on the CPU (see :mod:`.onnx`).

:func:`resolve_backend` turns the user's ``backend`` and ``precision`` into a
:class:`Backend`; ``predict`` lends it the network (:meth:`Backend.network`). ``auto`` is the
fastest choice whose labels do not depend on the layout (threads, batch, cluster, blocks):

- on the CPU, ONNX Runtime fp32 when it is installed and its labels equal torch fp32's on the
  export check, else torch fp32. Automatic precision on the CPU is fp32: bf16 kernels give
  labels that change with the thread count (``--precision bf16`` still asks for them);
- on CUDA and MPS, torch at the automatic precision (bf16, else fp16, on CUDA).

Engine module: no Qt, no napari.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .device import resolve_precision
from .onnx import available as onnxruntime_available

BACKENDS = ("auto", "torch", "onnxruntime")


def available_backends() -> list[str]:
    """Backend choices on this machine: ``auto``, ``torch`` and ``onnxruntime`` if installed."""
    return [b for b in BACKENDS if b != "onnxruntime" or onnxruntime_available()]


@dataclass(frozen=True)
class Backend:
    """A resolved choice: ``name`` (``torch`` or ``onnxruntime``) at ``dtype``.

    ``fallback``: ``auto`` chose ONNX Runtime, so a network whose ONNX labels did not match
    torch fp32 at export runs on torch fp32 instead.
    """

    name: str
    dtype: torch.dtype
    fallback: bool = False

    def network(self, net: torch.nn.Module):
        """What runs the tiles: ``net`` itself, or its cached ONNX Runtime twin.

        ``net`` must be lent (eval mode, on its device), as ``predict`` does.
        """
        if self.name == "torch":
            return net
        from .onnx import onnx_net

        runner = onnx_net(net)
        return net if self.fallback and not runner.exact else runner

    def describe(self) -> str:
        """``onnxruntime fp32``, ``torch bf16``..."""
        return f"{self.name} {str(self.dtype).removeprefix('torch.').replace('float', 'fp')}"


def resolve_backend(
    backend: str = "auto", device: torch.device | str = "cpu", precision: str = "auto"
) -> Backend:
    """The :class:`Backend` for ``device`` (a resolved device); ValueError in one sentence."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    dev = torch.device(device)
    dtype = resolve_precision(precision, dev)  # validates precision
    if dev.type != "cpu":
        if backend == "onnxruntime":
            raise ValueError(
                f"the onnxruntime backend runs on the CPU, not on {dev.type}: "
                "choose the torch backend or the cpu device"
            )
        return Backend("torch", dtype)
    if precision == "auto":
        dtype = torch.float32  # exact, and the same labels in every layout
    if backend == "torch":
        return Backend("torch", dtype)
    if backend == "onnxruntime":
        if dtype != torch.float32:
            raise ValueError(f"the onnxruntime backend runs fp32, not {precision}")
        if not onnxruntime_available():
            raise ValueError("the onnxruntime backend needs the onnxruntime package")
        return Backend("onnxruntime", dtype)
    if dtype == torch.float32 and onnxruntime_available():
        return Backend("onnxruntime", dtype, fallback=True)
    return Backend("torch", dtype)
