"""Grey conversion and robust intensity normalisation.

The normalisation is a percentile stretch: the ``p_low`` and ``p_high``
percentiles of the whole image (estimated on a strided subsample, so it stays
cheap on huge images) map to 0 and 1, then ``(x - mean) / std`` centres the
values for the network. The parameters travel in every checkpoint so training
and inference use the same mapping.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MAX_SAMPLES = 1 << 22
_F32_MAX = float(np.finfo(np.float32).max)
_F32_SMALL = float(np.finfo(np.float32).tiny) * 2**24  # below it, float32 keeps no detail


@dataclass(frozen=True)
class Normalization:
    """Percentile stretch followed by standardisation (stored in checkpoints)."""

    method: str = "percentile"
    p_low: float = 1.0
    p_high: float = 99.0
    mean: float = 0.5
    std: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Normalization:
        """Validate a stored normalisation by type and range; ValueError names the problem."""
        if not isinstance(d, dict):
            raise ValueError(f"its normalization is {type(d).__name__}, not a mapping")
        if d.get("method") != "percentile":
            raise ValueError(f"unknown normalisation method {d.get('method')!r}")
        values = {}
        for key in ("p_low", "p_high", "mean", "std"):
            v = d.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"its normalization {key} is {v!r}, not a finite number")
            values[key] = float(v)
        norm = cls(**values)
        if not (0 <= norm.p_low < norm.p_high <= 100 and norm.std > 0):
            raise ValueError(f"invalid normalisation parameters {values}")
        return norm


def is_rgb(image: Any) -> bool:
    """True for a (Y, X, 3|4) colour image (napari's own convention)."""
    return image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[0] > 4


def check_pixels(image: Any, *, finite: bool = False) -> None:
    """Raise ValueError (the reason, one clause) unless ``image`` holds usable pixel values.

    Refused: an empty shape, a non-numeric or complex type, and for floating-point images no
    finite value at all or finite values beyond the float32 range the network works in.
    With ``finite``, any NaN or infinite pixel is refused too. Reads the whole array: give it
    NumPy arrays (a lazy image is checked tile by tile in :func:`to_grey`).
    """
    shape = tuple(image.shape)
    if len(shape) == 0 or 0 in shape:
        raise ValueError(f"the image of shape {shape} has no pixels")
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"unsupported pixel data type {dtype}")
    if dtype.kind != "f":
        return
    values = np.asarray(image)
    ok = np.isfinite(values)
    n_bad = values.size - int(np.count_nonzero(ok))
    if n_bad == values.size:
        raise ValueError("the image holds no finite pixel value (all NaN or infinite)")
    if finite and n_bad:
        raise ValueError(f"{n_bad} of its {values.size} pixel values are NaN or infinite")
    _check_float32_range(values, ok)


def _check_float32_range(values: np.ndarray, ok: np.ndarray | None = None) -> None:
    """ValueError when float64 pixel values would overflow or all underflow in float32."""
    if values.dtype.itemsize <= 4:
        return
    big = np.abs(values[ok] if ok is not None else values[np.isfinite(values)], dtype=np.float64)
    peak = float(big.max(initial=0.0))
    if peak > _F32_MAX:
        raise ValueError(
            f"pixel values reach {peak:.3g}, beyond the float32 range (about 3.4e38) the "
            "network works in; rescale the image"
        )
    if 0 < peak < _F32_SMALL:
        raise ValueError(
            f"pixel values are at most {peak:.3g}, below the float32 precision the network "
            "works in; rescale the image"
        )


def to_grey(image: Any, rgb: bool | None = None) -> np.ndarray:
    """Return a 2-D (or stacked 3-D) float32 grey array of ``image``: the one RGB -> grey.

    ``rgb`` says whether the last axis holds colour channels (None: guess with :func:`is_rgb`).
    RGB/RGBA images are weighted to luminance (alpha is dropped); NaN and infinite values are
    left for :func:`normalize` to handle. ValueError for non-numeric data and for finite
    values that do not fit in float32 (they would silently become infinite).
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not (np.issubdtype(image.dtype, np.number)) or np.iscomplexobj(image):
        raise ValueError(f"unsupported image data type {image.dtype}")
    colour = is_rgb(image) if rgb is None else rgb
    if colour:
        image = image[..., :3]
    with np.errstate(over="ignore"):  # overflow is checked just below
        grey = image.astype(np.float32, copy=False)
    if image.dtype.kind == "f" and image.dtype.itemsize > 4:
        _check_float32_range(image)
    return grey @ _LUMA if colour else grey


def intensity_range(
    image: Any, norm: Normalization, rgb: bool | None = None
) -> tuple[float, float]:
    """The (low, high) intensities of ``image`` at the normalisation percentiles.

    Uses at most about four million finite pixels taken on a regular grid: only that strided
    subsample is read, so a huge or lazy (dask, zarr) image is never copied whole.
    ``rgb`` as for :func:`to_grey`.
    """
    if not hasattr(image, "shape"):
        image = np.asarray(image)
    rgb = is_rgb(image) if rgb is None else rgb
    spatial = image.shape[:-1] if rgb else image.shape
    if len(spatial) == 0 or 0 in spatial:
        raise ValueError(f"the image of shape {tuple(image.shape)} has no pixels")
    step = max(1, int(np.ceil((np.prod(spatial) / _MAX_SAMPLES) ** (1 / len(spatial)))))
    sample = to_grey(image[tuple(slice(None, None, step) for _ in spatial)], rgb).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise ValueError("the image holds no finite pixel value (all NaN or infinite)")
    low, high = (float(v) for v in np.percentile(sample, [norm.p_low, norm.p_high]))
    if not high > low:  # a flat image: any positive span maps it to 0
        high = low + max(1.0, abs(low) * 1e-6)
    return low, high


def normalize(grey: np.ndarray, low: float, high: float, norm: Normalization) -> np.ndarray:
    """Map grey values to network input: stretch, clip to [-0.5, 1.5], standardise.

    NaN becomes the low value and +/-inf are clipped, so the output is finite. Intensities
    near the float32 limits are stretched in float64 (their difference would overflow).
    """
    wide = max(abs(low), abs(high)) > 1e30
    dtype = np.float64 if wide else np.float32
    x = (np.asarray(grey, dtype=dtype) - dtype(low)) / dtype(high - low)
    x = np.nan_to_num(x.astype(np.float32, copy=False), nan=0.0, posinf=1.5, neginf=-0.5)
    np.clip(x, -0.5, 1.5, out=x)
    x -= np.float32(norm.mean)
    x /= np.float32(norm.std)
    return x
