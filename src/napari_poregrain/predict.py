"""Tiled, strip-streamed inference: image in, uint8 class map (and confidence) out.

The image is processed one row of tiles at a time. Class probabilities of
overlapping tiles are blended with smooth weights into a buffer one tile high;
rows that no later tile touches are turned into classes and written out, so
memory stays bounded by ``3 x tile x width`` floats however tall the image is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from .callbacks import ProgressFn, StopFn, check_stop
from .classes import N_CLASSES
from .model import LoadedModel
from .preprocess import Normalization, intensity_range, is_rgb, normalize, to_grey
from .tiling import blend_window, layout, overlap_pixels

DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 0.0625


@dataclass
class Prediction:
    """``labels``: uint8 class map; ``confidence``: uint8 top-class probability x 255, or None."""

    labels: np.ndarray
    confidence: np.ndarray | None = None


def available_devices() -> list[str]:
    """Device choices on this machine: ``auto``, ``cpu`` and whichever of cuda/mps exist."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError("device 'mps' was asked for but Apple MPS is not available")
    return dev


def default_batch(device: torch.device) -> int:
    """Tiles per forward pass: 8 on CUDA; 1 elsewhere (no speed gain, more memory)."""
    return 8 if device.type == "cuda" else 1


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def predict(
    image: np.ndarray,
    model: LoadedModel,
    *,
    tile: int = DEFAULT_TILE,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    content_rows: int | None = None,
    return_confidence: bool = False,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Prediction:
    """Segment a 2-D image, an RGB(A) image or a (Z, Y, X) stack slice by slice.

    ``batch_size`` tiles go through the network together (default: 8 on CUDA,
    1 elsewhere, where batching gains no speed and costs memory).
    ``precision`` picks autocast (see :func:`resolve_precision`; ``fp32`` is exact).
    ``content_rows`` limits segmentation to the rows above a burned-in data bar;
    the rows below get class 0 (and confidence 0). Raises
    :class:`~napari_poregrain.callbacks.Cancelled` when ``should_stop()`` is true.
    """
    image = np.asarray(image)
    if image.ndim == 2 or is_rgb(image):
        slices = [image]
    elif image.ndim == 3:
        slices = list(image)
    else:
        raise ValueError(
            f"expected a 2-D image, an RGB image or a 3-D stack, got shape {image.shape}"
        )
    height, width = slices[0].shape[:2]
    if min(height, width) < 1:
        raise ValueError(f"image of shape {image.shape} has no pixels")
    rows = height if content_rows is None else int(content_rows)
    if not 1 <= rows <= height:
        raise ValueError(f"content_rows={content_rows} is outside the image's {height} rows")
    dev = resolve_device(device)
    ov = overlap_pixels(tile, overlap)
    (th, ys), (tw, xs) = layout(rows, tile, ov), layout(width, tile, ov)
    net = model.net.to(dev).eval()
    if dev.type != "mps":
        net = net.to(memory_format=torch.channels_last)
    plan = _Plan(
        net=net,
        norm=model.meta.normalization,
        device=dev,
        dtype=resolve_precision(precision, dev),
        tile_h=th,
        tile_w=tw,
        ys=ys,
        xs=xs,
        window=torch.from_numpy(blend_window(th, tw, ov)),
        batch_size=batch_size or default_batch(dev),
    )
    total = len(slices) * len(plan.ys) * len(plan.xs)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    labels = np.zeros((len(slices), height, width), np.uint8)
    conf = np.zeros_like(labels) if return_confidence else None
    for i, sl in enumerate(slices):
        check_stop(should_stop)
        out_conf = None if conf is None else conf[i]
        _predict_2d(sl[:rows], plan, labels[i], out_conf, tick, should_stop)
    if image.ndim == 2 or is_rgb(image):
        labels = labels[0]
        conf = None if conf is None else conf[0]
    return Prediction(labels, conf)


@dataclass
class _Plan:
    """Everything fixed for one call of :func:`predict`."""

    net: torch.nn.Module
    norm: Normalization
    device: torch.device
    dtype: torch.dtype
    tile_h: int
    tile_w: int
    ys: list[int]
    xs: list[int]
    window: torch.Tensor
    batch_size: int


def _predict_2d(image, plan: _Plan, out, conf, tick, should_stop) -> None:
    """Fill ``out[:rows]`` (and ``conf``) for one 2-D image, streaming rows of tiles."""
    norm, th, tw, ys, xs = plan.norm, plan.tile_h, plan.tile_w, plan.ys, plan.xs
    low, high = intensity_range(image, norm)
    rows, width = image.shape[:2]
    span_w = max(width, tw)
    acc = torch.zeros((N_CLASSES, th, span_w))
    wsum = torch.zeros((th, span_w))
    for j, y0 in enumerate(ys):
        for k in range(0, len(xs), plan.batch_size):
            check_stop(should_stop)
            chunk = xs[k : k + plan.batch_size]
            tiles = [_tile_input(image, y0, x, th, tw, low, high, norm) for x in chunk]
            batch = torch.from_numpy(np.stack(tiles))[:, None]
            probs = _forward(plan.net, batch, plan.device, plan.dtype)
            for x, p in zip(chunk, probs):
                acc[:, :, x : x + tw] += p * plan.window
                wsum[:, x : x + tw] += plan.window
            tick(len(chunk))
        # Rows above the next tile row are final: no later tile touches them.
        last = j == len(ys) - 1
        final = th if last else ys[j + 1] - y0
        stop = min(rows, y0 + final)
        if stop > y0:
            blended = acc[:, : stop - y0, :width]
            out[y0:stop] = blended.argmax(0).numpy().astype(np.uint8)
            if conf is not None:
                top = blended.max(0).values / wsum[: stop - y0, :width]
                conf[y0:stop] = (top.clamp(0, 1) * 255).round().numpy().astype(np.uint8)
        if not last:
            keep = th - final
            acc[:, :keep] = acc[:, final:].clone()
            acc[:, keep:] = 0
            wsum[:keep] = wsum[final:].clone()
            wsum[keep:] = 0


def _tile_input(image, y0, x0, th, tw, low, high, norm) -> np.ndarray:
    """One normalised (th, tw) float32 tile; reflection-padded where the image is smaller."""
    tile = normalize(to_grey(image[y0 : y0 + th, x0 : x0 + tw]), low, high, norm)
    pad = ((0, th - tile.shape[0]), (0, tw - tile.shape[1]))
    if pad[0][1] or pad[1][1]:
        tile = np.pad(tile, pad, mode="reflect" if min(tile.shape) > 1 else "edge")
    return tile


@torch.inference_mode()
def _forward(
    net: torch.nn.Module, batch: torch.Tensor, dev: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Class probabilities (float32, on the CPU) for a (B, 1, H, W) batch."""
    if dev.type == "cuda":
        batch = batch.pin_memory().to(dev, non_blocking=True)
    else:
        batch = batch.to(dev)
    if dev.type != "mps":
        batch = batch.contiguous(memory_format=torch.channels_last)
    with _autocast(dev, dtype):
        logits = net(batch)
    return torch.softmax(logits.float(), dim=1).cpu()
