"""Tiled, streamed inference: image in, uint8 class map (and confidence) out.

:func:`blend_tiles` runs the tiles row by row, left to right, blends the class
probabilities of overlapping tiles with smooth weights and hands each block that
no later tile touches to a sink at once: :func:`predict` turns blocks into
classes, training's validation scores them. Besides one tile of sums, only a
band as high as the overlap and as wide as the image is held, so memory stays
far below the uint8 output however large the image is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..callbacks import ProgressFn, StopFn, check_stop
from ..classes import N_CLASSES
from ..model import LoadedModel
from ..preprocess import intensity_range, is_rgb, normalize, to_grey
from .tiling import blend_window, layout, overlap_pixels

DEFAULT_TILE = 1024
"""Tile side on a GPU: big tiles keep it busy."""
CPU_TILE = 768
"""Tile side on the CPU: the same speed as 1024 at about half the working memory."""
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


def default_tile(device: torch.device) -> int:
    """Nominal tile side: :data:`CPU_TILE` on the CPU, :data:`DEFAULT_TILE` on a GPU."""
    return CPU_TILE if device.type == "cpu" else DEFAULT_TILE


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
    tile: int | None = None,
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

    ``tile`` is the nominal tile side (default: see :func:`default_tile`);
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
    net = model.net.to(dev).eval()
    if dev.type != "mps":
        net = net.to(memory_format=torch.channels_last)
    dtype = resolve_precision(precision, dev)
    plan = make_plan(net, dev, dtype, rows, width, tile, overlap, batch_size)
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
        img = sl[:rows]
        low, high = intensity_range(img, model.meta.normalization)

        def tile_input(y0, x0, img=img, low=low, high=high):
            part = img[y0 : y0 + plan.tile_h, x0 : x0 + plan.tile_w]
            x = normalize(to_grey(part), low, high, model.meta.normalization)
            return padded(x, plan.tile_h, plan.tile_w)

        def write(y0, x0, sums, weights, out=labels[i], out_conf=out_conf):
            top, cls = sums.max(0)
            h, w = cls.shape
            out[y0 : y0 + h, x0 : x0 + w] = cls.numpy()
            if out_conf is not None:
                c = (top / weights).clamp(0, 1) * 255
                out_conf[y0 : y0 + h, x0 : x0 + w] = c.round().numpy()

        blend_tiles(tile_input, (rows, width), plan, write, tick, should_stop)
    if image.ndim == 2 or is_rgb(image):
        labels = labels[0]
        conf = None if conf is None else conf[0]
    return Prediction(labels, conf)


@dataclass
class Plan:
    """How an image of a given size is cut into tiles and run (see :func:`make_plan`)."""

    net: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    tile_h: int
    tile_w: int
    ys: list[int]
    xs: list[int]
    window: torch.Tensor
    batch_size: int


def make_plan(
    net: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    rows: int,
    width: int,
    tile: int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int | None = None,
) -> Plan:
    """The tile grid, blend window and batch for a ``rows`` x ``width`` image."""
    tile = tile or default_tile(device)
    ov = overlap_pixels(tile, overlap)
    (th, ys), (tw, xs) = layout(rows, tile, ov), layout(width, tile, ov)
    return Plan(
        net=net,
        device=device,
        dtype=dtype,
        tile_h=th,
        tile_w=tw,
        ys=ys,
        xs=xs,
        window=torch.from_numpy(blend_window(th, tw, ov)),
        batch_size=batch_size or default_batch(device),
    )


TileFn = Callable[[int, int], np.ndarray]
"""``(y0, x0) -> (tile_h, tile_w)`` float32 network input of the tile starting there."""
BlockFn = Callable[[int, int, torch.Tensor, torch.Tensor], None]
"""``(y0, x0, sums (C, h, w), weights (h, w))``: a final block; probabilities = sums / weights."""


def blend_tiles(
    tile_input: TileFn,
    shape: tuple[int, int],
    plan: Plan,
    sink: BlockFn,
    tick: Callable[[int], None] | None = None,
    should_stop: StopFn | None = None,
) -> None:
    """Run every tile of ``plan`` and hand blended, final blocks of the image to ``sink``.

    Tiles run left to right within a row of tiles, rows top to bottom. Columns
    left of the next tile's start are final within the row: their top rows (above
    the next tile row) go to ``sink`` at once, their bottom rows join a
    full-width ``band`` that the next tile row adds in. Only one tile of sums
    and that band are ever held. Blocks are clipped to ``shape``.
    """
    th, tw, ys, xs = plan.tile_h, plan.tile_w, plan.ys, plan.xs
    rows, width = shape
    span_w = max(width, tw)
    band = torch.zeros((N_CLASSES, 0, span_w))  # sums carried into this tile row's top rows
    band_w = torch.zeros((0, span_w))
    for j, y0 in enumerate(ys):
        final = th if j == len(ys) - 1 else ys[j + 1] - y0  # rows no later tile row touches
        new_band = torch.zeros((N_CLASSES, th - final, span_w))
        new_band_w = torch.zeros((th - final, span_w))
        acc = torch.zeros((N_CLASSES, th, tw))  # sums for columns x .. x + tw of the tile at x
        wsum = torch.zeros((th, tw))
        filled = 0  # leading columns of acc already holding earlier tiles' sums
        for k in range(0, len(xs), plan.batch_size):
            check_stop(should_stop)
            chunk = xs[k : k + plan.batch_size]
            batch = torch.from_numpy(np.stack([tile_input(y0, x) for x in chunk]))[:, None]
            probs = _forward(plan.net, batch, plan.device, plan.dtype)
            for i, (x, p) in enumerate(zip(chunk, probs)):
                keep = band.shape[1]
                acc[:, :keep, filled:] += band[:, :, x + filled : x + tw]
                wsum[:keep, filled:] += band_w[:, x + filled : x + tw]
                acc += p * plan.window
                wsum += plan.window
                nxt = k + i + 1
                done = (xs[nxt] - x) if nxt < len(xs) else tw  # columns now final
                h, w = min(final, rows - y0), min(done, width - x)
                if h > 0 and w > 0:
                    sink(y0, x, acc[:, :h, :w], wsum[:h, :w])
                new_band[:, :, x : x + done] = acc[:, final:, :done]
                new_band_w[:, x : x + done] = wsum[final:, :done]
                filled = tw - done
                acc[:, :, :filled] = acc[:, :, done:].clone()
                acc[:, :, filled:] = 0
                wsum[:, :filled] = wsum[:, done:].clone()
                wsum[:, filled:] = 0
            if tick is not None:
                tick(len(chunk))
        band, band_w = new_band, new_band_w


def padded(x: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Reflection-pad a 2-D array at the bottom and right to ``(th, tw)``."""
    pad = ((0, th - x.shape[0]), (0, tw - x.shape[1]))
    if pad[0][1] or pad[1][1]:
        x = np.pad(x, pad, mode="reflect" if min(x.shape) > 1 else "edge")
    return x


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
