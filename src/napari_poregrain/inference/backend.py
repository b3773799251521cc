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

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import resolve_precision
from .onnx import OnnxNet
from .onnx import available as onnxruntime_available
from .options import BACKENDS

__all__ = ["BACKENDS", "Backend", "OnnxModel", "available_backends", "cached_model"]
__all__ += ["resolve_backend"]


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
        if isinstance(net, OnnxNet):
            if self.name != "onnxruntime":
                raise ValueError(f"this model was loaded for onnxruntime only, not {self.name}")
            return net
        if self.name == "torch":
            return net
        from .onnx import ExportError, onnx_net

        try:
            runner = onnx_net(net)
        except ExportError:
            if self.fallback:  # auto: a network ONNX cannot hold (a wrapper) runs on torch
                return net
            raise
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


@dataclass
class _Meta:
    normalization: object
    name: str = ""


@dataclass
class OnnxModel:
    """A checkpoint run by ONNX Runtime alone, no torch network built (nor segmentation-models
    imported): ``predict`` takes it in place of a :class:`~..model.LoadedModel`."""

    net: OnnxNet
    meta: _Meta
    path: Path
    head: None = None


def cached_model(path, backend: str = "auto", device: str = "auto") -> OnnxModel | None:
    """The checkpoint at ``path`` as an :class:`OnnxModel` when ``backend`` and ``device``
    resolve to ONNX Runtime and its export is cached (see :func:`.onnx.remember_file`), else
    None: load it with :func:`~..model.load_checkpoint` then. ``auto`` also needs the export to
    have passed its check; a model with an adaptation head always takes the torch path."""
    from ..preprocess import Normalization
    from .device import resolve_device
    from .onnx import cached_for_file

    try:
        if resolve_backend(backend, resolve_device(device)).name != "onnxruntime":
            return None
        doc = _header(path)
        if doc.get("head"):
            return None
        norm = Normalization.from_dict(doc.get("normalization") or {})
        net = cached_for_file(path)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None  # not a readable checkpoint: load_checkpoint says why in one sentence
    if net is None or (backend == "auto" and not net.exact):
        return None
    return OnnxModel(net, _Meta(norm, str(doc.get("name") or "")), Path(path))


def _header(path) -> dict:
    """The poregrain metadata of a safetensors file, read from its JSON header alone."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(min(n, 1 << 24)))
    return json.loads(header["__metadata__"]["poregrain"])
