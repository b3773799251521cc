"""``predict``: a Sample in, a uint8 class map (and confidence) out, tiled and streamed.

Tiles are read from the Sample's pixels by slicing (a lazy array is read tile by tile), run
and blended by :mod:`.tiling`, and written block by block into the class map. The caller's
model is lent for the call and handed back as it was (see :class:`.device.LentModel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ..callbacks import ProgressFn, StopFn, check_stop
from ..preprocess import (
    Normalization,
    check_pixels,
    intensity_range,
    is_rgb,
    normalize,
    to_grey,
)
from ..sample import Sample
from .backend import resolve_backend
from .device import (
    CPU_TILE,
    DEFAULT_TILE,
    PRECISIONS,
    LentModel,
    available_devices,
    default_batch,
    default_tile,
    forward,
    resolve_device,
    resolve_precision,
)
from .tiling import DEFAULT_OVERLAP, Plan, blend_tiles, make_plan, padded

if TYPE_CHECKING:  # torch-free at import for the command line: the model module needs smp
    from ..model import LoadedModel

__all__ = ["LabelSink", "Prediction", "as_sample", "predict"]
# re-exported: the widgets, the CLI and the benchmarks import these from here
__all__ += ["CPU_TILE", "DEFAULT_OVERLAP", "DEFAULT_TILE", "PRECISIONS", "available_devices"]
__all__ += ["default_batch", "default_tile", "resolve_device", "resolve_precision"]

_forward = forward  # the one forward pass lives in .device, where blend_tiles finds it


@dataclass
class Prediction:
    """``labels``: uint8 class map (None when streamed to ``out``); ``confidence``: uint8
    top-class probability x 255, or None."""

    labels: np.ndarray | None
    confidence: np.ndarray | None = None


def predict(
    image: Sample | np.ndarray,
    model: LoadedModel,
    *,
    tile: int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    backend: str = "auto",
    return_confidence: bool = False,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    content_rows: int | None = None,
    out: LabelSink | None = None,
) -> Prediction:
    """Segment a Sample: a 2-D image, an RGB(A) image or a (Z, Y, X) stack slice by slice.

    Only the rows above ``image.data_bar_row`` are segmented; the rows below get class 0 (and
    confidence 0). A bare array with ``content_rows`` is accepted too (see :func:`as_sample`).
    ``tile`` is the nominal tile side (default: see :func:`~.device.default_tile`);
    ``batch_size`` tiles go through the network together (default: 8 on CUDA, 1 elsewhere,
    where batching gains no speed and costs memory). ``precision`` and ``backend`` (``auto``,
    ``torch``, ``onnxruntime``) pick what computes (see :func:`~.backend.resolve_backend`:
    by default fp32, on ONNX Runtime on the CPU). ``model`` is left as it was found
    (device, train/eval mode, memory layout). Raises
    :class:`~napari_poregrain.callbacks.Cancelled` when ``should_stop()`` is true.
    ``out`` (a 2-D image only): a sink such as :mod:`napari_poregrain.io.writers`' writers that
    takes each final block of classes as it is blended, so no class map is held (``labels`` of
    the result is then None; rows below the data bar are never written).
    """
    sample = as_sample(image, content_rows)
    if isinstance(sample.pixels, np.ndarray):  # a lazy image is checked tile by tile
        check_pixels(sample.content())
    if getattr(model, "head", None) is not None:  # a pixel head over the network (adapt/)
        return _with_head(sample, model, device, return_confidence, progress, should_stop, out)
    dev = resolve_device(device)
    engine = resolve_backend(backend, dev, precision)
    norm = model.meta.normalization
    n = sample.shape[0] if sample.is_stack else 1
    _check_sink(sample, out, return_confidence)
    labels = None if out is not None else np.zeros((n, sample.height, sample.width), np.uint8)
    conf = np.zeros_like(labels) if return_confidence else None
    with LentModel(model.net, dev) as net:
        runner = engine.network(net)
        plan = make_plan(runner, dev, engine.dtype, sample.rows, sample.width, tile, overlap,
                         batch_size)  # fmt: skip
        ticker = _Ticker(n * len(plan.ys) * len(plan.xs), progress)
        for z, part in enumerate(sample.slices()):
            check_stop(should_stop)
            target = out if labels is None else labels[z]
            job = _SliceJob(part, plan, norm, target, None if conf is None else conf[z])
            blend_tiles(
                job.tile_input, (part.rows, part.width), plan, job.write, ticker, should_stop
            )
    if labels is None:
        return Prediction(None)
    if not sample.is_stack:
        return Prediction(labels[0], None if conf is None else conf[0])
    return Prediction(labels, conf)


def _with_head(sample, model, device, confidence, progress, should_stop, out) -> Prediction:
    """:func:`predict` for a model carrying a pixel head (see :mod:`..adapt.apply`)."""
    from ..adapt.apply import predict_with_head

    _check_sink(sample, out, confidence)
    return predict_with_head(
        sample, model, device=device, return_confidence=confidence, progress=progress,
        should_stop=should_stop, out=out,
    )  # fmt: skip


def predict_to_file(sample: Sample, target, model: LoadedModel, **options) -> None:
    """Stream ``sample``'s classes into the label file ``target`` (``.tif``/``.tiff``, or
    ``.zarr``: an OME-Zarr that also holds the image), block by block, so memory does not grow
    with the image; ``options`` are :func:`predict`'s. A failed write removes the partial file."""
    from pathlib import Path

    from ..io.writers import open_label_writer

    image = sample.pixels if Path(target).suffix.lower() == ".zarr" else None
    with open_label_writer(target, sample.shape, sample.pixel_size_nm, image) as out:
        predict(sample, model, out=out, **options)


def as_sample(image: Sample | Any, content_rows: int | None = None) -> Sample:
    """Convenience for callers holding a bare array: ``image`` as a :class:`Sample`.

    A Sample is returned as it is (its ``data_bar_row`` already says which rows count, so
    ``content_rows`` must be None). An array — (Y, X), (Y, X, 3|4) colour or a (Z, Y, X) stack
    — becomes a Sample whose data bar starts at ``content_rows`` (None: no bar).
    """
    if isinstance(image, Sample):
        if content_rows is not None:
            raise TypeError("content_rows is for arrays: a Sample carries its data_bar_row")
        _check_shape(image.shape, image.pixels.shape)
        return image
    array = image if hasattr(image, "ndim") else np.asarray(image)
    rgb = is_rgb(array)
    shape = array.shape[:-1] if rgb else array.shape
    _check_shape(shape, array.shape)
    if content_rows is not None and not 1 <= int(content_rows) <= shape[-2]:
        raise ValueError(f"content_rows={content_rows} is outside the image's {shape[-2]} rows")
    bar = None if content_rows is None else int(content_rows)
    return Sample.from_array(array, data_bar_row=bar, rgb=rgb)


def _check_shape(spatial: tuple[int, ...], shape: tuple[int, ...]) -> None:
    if len(spatial) not in (2, 3):
        raise ValueError(f"expected a 2-D image, an RGB image or a 3-D stack, got shape {shape}")
    if min(shape) < 1:
        raise ValueError(f"image of shape {shape} has no pixels")


class LabelSink(Protocol):
    """Where streamed classes go: ``write(y0, x0, block)`` with a (h, w) uint8 block."""

    def write(self, y0: int, x0: int, block: np.ndarray) -> None: ...


def _check_sink(sample: Sample, out: LabelSink | None, confidence: bool) -> None:
    if out is None:
        return
    if sample.is_stack:
        raise ValueError("a stack cannot be streamed to one label file: predict its slices")
    if confidence:
        raise ValueError("return_confidence needs the in-memory class map (out=None)")


class _Ticker:
    """Counts finished tiles across a whole stack and reports ``(done, total)``."""

    def __init__(self, total: int, progress: ProgressFn | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


class _SliceJob:
    """One 2-D slice: network input read tile by tile, blended blocks written as classes."""

    def __init__(
        self,
        part: Sample,
        plan: Plan,
        norm: Normalization,
        labels: np.ndarray | LabelSink,
        confidence: np.ndarray | None,
        intensity: tuple[float, float] | None = None,
    ) -> None:
        self.pixels = part.content()  # a view: rows above the data bar, read tile by tile
        self.rgb = part.rgb
        self.plan, self.norm = plan, norm
        # the slice's own (low, high) stretch, unless a whole image's is given (scale.blocks)
        if intensity is None:
            intensity = intensity_range(self.pixels, norm, part.rgb)
        self.low, self.high = intensity
        self.labels, self.confidence = labels, confidence

    def tile_input(self, y0: int, x0: int) -> np.ndarray:
        """The normalised, padded network input of the tile starting at ``(y0, x0)``."""
        part = self.pixels[y0 : y0 + self.plan.tile_h, x0 : x0 + self.plan.tile_w]
        x = normalize(to_grey(part, self.rgb), self.low, self.high, self.norm)
        return padded(x, self.plan.tile_h, self.plan.tile_w)

    def write(self, y0: int, x0: int, sums: torch.Tensor, weights: torch.Tensor) -> None:
        """Write a final block's classes (and confidence) into the output."""
        top, cls = sums.max(0)
        h, w = cls.shape
        if isinstance(self.labels, np.ndarray):
            self.labels[y0 : y0 + h, x0 : x0 + w] = cls.numpy()
        else:
            self.labels.write(y0, x0, cls.numpy().astype(np.uint8))
        if self.confidence is not None:
            c = (top / weights).clamp(0, 1) * 255
            self.confidence[y0 : y0 + h, x0 : x0 + w] = c.round().numpy()
