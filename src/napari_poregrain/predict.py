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
from .preprocess import intensity_range, is_rgb, normalize, to_grey
from .tiling import blend_window, overlap_pixels, tile_size, tile_starts

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 0.125
DEFAULT_BATCH = 4


@dataclass
class Prediction:
    """``labels``: uint8 class map; ``confidence``: uint8 top-class probability x 255, or None."""

    labels: np.ndarray
    confidence: np.ndarray | None = None


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


def _autocast(device: torch.device):
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def predict(
    image: np.ndarray,
    model: LoadedModel,
    *,
    tile: int = DEFAULT_TILE,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH,
    device: str | torch.device = "auto",
    content_rows: int | None = None,
    return_confidence: bool = False,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Prediction:
    """Segment a 2-D image, an RGB(A) image or a (Z, Y, X) stack slice by slice.

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
    th, tw = tile_size(rows, tile), tile_size(width, tile)
    ys = tile_starts(rows, th, overlap_pixels(th, overlap))
    xs = tile_starts(width, tw, overlap_pixels(tw, overlap))
    total = len(slices) * len(ys) * len(xs)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    net = model.net.to(dev).eval()
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    labels = np.zeros((len(slices), height, width), np.uint8)
    conf = np.zeros_like(labels) if return_confidence else None
    for i, sl in enumerate(slices):
        check_stop(should_stop)
        _predict_2d(
            sl[:rows],
            net,
            model,
            dev,
            th,
            tw,
            ys,
            xs,
            overlap,
            batch_size,
            labels[i],
            None if conf is None else conf[i],
            tick,
            should_stop,
        )
    if image.ndim == 2 or is_rgb(image):
        labels = labels[0]
        conf = None if conf is None else conf[0]
    return Prediction(labels, conf)


def _predict_2d(
    image, net, model, dev, th, tw, ys, xs, overlap, batch_size, out, conf, tick, should_stop
) -> None:
    """Fill ``out[:rows]`` (and ``conf``) for one 2-D image, streaming rows of tiles."""
    norm = model.meta.normalization
    low, high = intensity_range(image, norm)
    rows, width = image.shape[:2]
    span_w = max(width, tw)
    window = torch.from_numpy(
        blend_window(th, tw, max(overlap_pixels(th, overlap), overlap_pixels(tw, overlap)))
    )
    acc = torch.zeros((N_CLASSES, th, span_w))
    wsum = torch.zeros((th, span_w))
    for j, y0 in enumerate(ys):
        check_stop(should_stop)
        strip = normalize(to_grey(image[y0 : y0 + th]), low, high, norm)
        pad = ((0, th - strip.shape[0]), (0, span_w - strip.shape[1]))
        if any(p[1] for p in pad):
            strip = np.pad(strip, pad, mode="reflect" if min(strip.shape) > 1 else "edge")
        strip_t = torch.from_numpy(np.ascontiguousarray(strip))
        for k in range(0, len(xs), batch_size):
            check_stop(should_stop)
            chunk = xs[k : k + batch_size]
            batch = torch.stack([strip_t[:, x : x + tw] for x in chunk])[:, None]
            probs = _forward(net, batch, dev)
            for x, p in zip(chunk, probs):
                acc[:, :, x : x + tw] += p * window
                wsum[:, x : x + tw] += window
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


@torch.inference_mode()
def _forward(net: torch.nn.Module, batch: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Class probabilities (float32, on the CPU) for a (B, 1, H, W) batch."""
    if dev.type == "cuda":
        batch = batch.pin_memory().to(dev, non_blocking=True)
        batch = batch.contiguous(memory_format=torch.channels_last)
    else:
        batch = batch.to(dev)
    with _autocast(dev):
        logits = net(batch)
    return torch.softmax(logits.float(), dim=1).cpu()
