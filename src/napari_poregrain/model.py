"""DeepLabV3+ models, safetensors checkpoints and the model registry.

A checkpoint is one ``.safetensors`` file: the weights, plus a JSON document
under the header metadata key ``"poregrain"`` (architecture, encoder, classes,
input normalisation, provenance). Nothing is ever unpickled.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _st_save
from torch import nn

from .classes import CLASS_NAMES, IGNORE
from .io.atomic import atomic_write_bytes, write_exclusive
from .preprocess import Normalization

# re-exported: the light half of the model module, importable without torch
from .registry import DEFAULT_MODEL_PATH as DEFAULT_MODEL_PATH
from .registry import MODEL_DIR_ENV as MODEL_DIR_ENV
from .registry import CheckpointError as CheckpointError
from .registry import available_models as available_models
from .registry import resolve_model as resolve_model
from .registry import user_model_dir as user_model_dir

ARCHITECTURE = "DeepLabV3Plus"
FORMAT = "napari-poregrain/checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "poregrain"
REFINE_CHANNELS = 16


@dataclass
class ModelMeta:
    """What a checkpoint says about its model."""

    encoder: str = "resnet18"
    refine: bool = False
    """A full-resolution refinement head follows the DeepLabV3+ (:class:`RefinedDeepLabV3Plus`)."""
    normalization: Normalization = field(default_factory=Normalization)
    pixel_size_nm: float | None = None
    name: str = ""
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": ARCHITECTURE,
            "encoder": self.encoder,
            "refine": self.refine,
            "in_channels": 1,
            "classes": list(CLASS_NAMES),
            "ignore_index": IGNORE,
            "normalization": self.normalization.to_dict(),
            "pixel_size_nm": self.pixel_size_nm,
            "name": self.name,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ModelMeta:
        """Validate a metadata document by type; raise ValueError naming the first problem."""
        check_meta(d)
        pixel = d.get("pixel_size_nm")
        return cls(
            encoder=d["encoder"],
            refine=d.get("refine", False),  # absent in files older than the head
            normalization=Normalization.from_dict(d.get("normalization") or {}),
            pixel_size_nm=None if pixel is None else float(pixel),
            name=d.get("name") or "",
            provenance=dict(d.get("provenance") or {}),
        )


# The metadata schema: key -> (allowed types, required). ``bool`` is not a number here.
_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "format": ((str,), True),
    "format_version": ((int,), True),
    "architecture": ((str,), True),
    "encoder": ((str,), True),
    "in_channels": ((int,), True),
    "classes": ((list,), True),
    "ignore_index": ((int,), True),
    "normalization": ((dict,), False),
    "refine": ((bool,), False),
    "pixel_size_nm": ((int, float, type(None)), False),
    "name": ((str, type(None)), False),
    "provenance": ((dict, type(None)), False),
    "head": ((dict, type(None)), False),
}
_FIXED = {
    "format": FORMAT,
    "architecture": ARCHITECTURE,
    "in_channels": 1,
    "classes": list(CLASS_NAMES),
    "ignore_index": IGNORE,
}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_meta(d: Any) -> None:
    """Raise ValueError (what is wrong, one clause) unless ``d`` is checkpoint metadata."""
    if not isinstance(d, dict):
        raise ValueError(f"its metadata is {_type_name(d)}, not a JSON object")
    for key, (types, required) in _SCHEMA.items():
        if key not in d:
            if required:
                raise ValueError(f"its metadata has no {key!r}")
            continue
        value = d[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(
                f"its {key} has the wrong type ({_type_name(value)}: {_short(value)})"
            )
    for key, value in _FIXED.items():
        if d[key] != value:
            raise ValueError(f"its {key} is {_short(d[key])}, expected {value!r}")
    if d["format_version"] != FORMAT_VERSION:
        raise ValueError(f"its format version {d['format_version']!r} is unsupported")
    pixel = d.get("pixel_size_nm")
    if pixel is not None and not (math.isfinite(pixel) and pixel > 0):
        raise ValueError(f"its pixel size {pixel!r} nm is not a positive number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class LoadedModel:
    """A network in eval mode together with its metadata and source path."""

    net: torch.nn.Module
    meta: ModelMeta
    path: Path | None = None
    head: Any = None
    """An optional pixel head (:class:`napari_poregrain.adapt.head.PixelHead`) over the net."""


class RefinedDeepLabV3Plus(smp.DeepLabV3Plus):
    """DeepLabV3+ whose logits are corrected at full resolution from the input pixels.

    DeepLabV3+ predicts at a quarter of the resolution and upsamples bilinearly,
    which blurs pore outlines a few pixels wide. A small residual head of
    3x3 convolutions sees the input image and the upsampled logits at full
    resolution and adds a correction (zero at initialisation).
    """

    def __init__(self, *, hidden: int = REFINE_CHANNELS, **kwargs) -> None:
        super().__init__(**kwargs)
        classes = len(CLASS_NAMES)
        self.refine = nn.Sequential(
            nn.Conv2d(1 + classes, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, classes, 1),
        )
        nn.init.zeros_(self.refine[-1].weight)
        nn.init.zeros_(self.refine[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits + self.refine(torch.cat([x, logits.to(x.dtype)], dim=1))


def build_model(encoder: str = "resnet18", refine: bool = False) -> torch.nn.Module:
    """A randomly initialised DeepLabV3+ (1 input channel, 3 classes); no download."""
    cls = RefinedDeepLabV3Plus if refine else smp.DeepLabV3Plus
    try:
        return cls(
            encoder_name=encoder, encoder_weights=None, in_channels=1, classes=len(CLASS_NAMES)
        )
    except KeyError as exc:
        raise ValueError(f"unknown encoder {encoder!r} for DeepLabV3+") from exc


def new_model(encoder: str = "resnet18", refine: bool = False, **meta) -> LoadedModel:
    """A fresh, untrained model with its metadata."""
    net = build_model(encoder, refine).eval()
    return LoadedModel(net, ModelMeta(encoder=encoder, refine=refine, **meta))


def save_checkpoint(
    model: LoadedModel,
    path: str | os.PathLike,
    *,
    half: bool = False,
    overwrite: bool = False,
    exclusive: bool = False,
) -> Path:
    """Write ``model`` as safetensors + JSON metadata; return the path written.

    The file is written to a temporary name beside ``path`` and then given its name:
    replacing ``path`` with ``overwrite``; otherwise by claiming the name atomically, so a file
    that exists (or that a concurrent run creates first) is never replaced. When the name is
    taken: :class:`FileExistsError`, or with ``exclusive`` the model is saved under the first
    free name ``<stem>-2.safetensors``, ``<stem>-3.safetensors``, ... and that path is returned.
    """
    if overwrite and exclusive:
        raise ValueError("save_checkpoint: overwrite and exclusive exclude each other")
    path = Path(path)
    if path.exists() and not (overwrite or exclusive):
        raise FileExistsError(f"{path} already exists; choose another name")
    data = checkpoint_bytes(model, half=half)
    if overwrite:
        return atomic_write_bytes(path, data)
    return write_exclusive(path, data, free_name=exclusive)


def checkpoint_bytes(model: LoadedModel, *, half: bool = False) -> bytes:
    """The safetensors file of ``model`` (weights + metadata with creation provenance)."""
    meta = model.meta.to_dict()
    meta["provenance"] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": f"napari-poregrain {_version()}",
        **meta["provenance"],
    }
    dtype = torch.float16 if half else torch.float32
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.net.state_dict().items()
    }
    if model.head is not None:  # the pixel head: its tensors and JSON (adapt.store)
        from .adapt.store import attach_head

        attach_head(model, meta, tensors)
    return _st_save(tensors, metadata={METADATA_KEY: json.dumps(meta)})


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load and validate a checkpoint; raise :class:`CheckpointError` in one sentence."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors model (corrupt or truncated: {exc})"
        ) from None
    if METADATA_KEY not in header:
        raise CheckpointError(
            f"{path} is not a napari-poregrain model: it has no poregrain metadata"
        )
    try:
        doc = json.loads(header[METADATA_KEY])
        meta = ModelMeta.from_dict(doc)
        with torch.device("meta"):  # no random initialisation: the weights come from the file
            net = build_model(meta.encoder, meta.refine)
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not a napari-poregrain model: {_reason(exc)}") from None
    from .adapt.store import PREFIX, read_head

    head_tensors = {k: tensors.pop(k) for k in list(tensors) if k.startswith(PREFIX)}
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    bad_shape = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or extra or bad_shape:
        first = (missing or extra or bad_shape)[0]
        raise CheckpointError(
            f"{path} does not fit a DeepLabV3+ with encoder {meta.encoder}"
            f"{' and refinement head' if meta.refine else ''} "
            f"({len(missing)} missing, {len(extra)} unexpected, {len(bad_shape)} mis-shaped "
            f"tensors, e.g. {first})"
        )
    for k, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path} holds non-finite weights in {k}")
    state = {k: t.to(expected[k].dtype) for k, t in tensors.items()}
    net.load_state_dict(state, assign=True)
    head = read_head(path, doc.get("head"), head_tensors, net)
    return LoadedModel(net.to(device).eval(), meta, path, head)


def _reason(exc: BaseException) -> str:
    """An exception as the end of a one-sentence message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, json.JSONDecodeError):
        text = f"its metadata is not JSON ({text})"
    return text if len(text) <= 200 else text[:197] + "..."


def _version() -> str:
    from . import __version__

    return __version__
