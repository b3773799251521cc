"""Grey conversion and robust intensity normalisation.

The normalisation is a percentile stretch: the ``p_low`` and ``p_high``
percentiles of the whole image (estimated on a strided subsample, so it stays
cheap on huge images) map to 0 and 1, then ``(x - mean) / std`` centres the
values for the network. The parameters travel in every checkpoint so training
and inference use the same mapping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MAX_SAMPLES = 1 << 22


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
    def from_dict(cls, d: dict) -> Normalization:
        if d.get("method") != "percentile":
            raise ValueError(f"unknown normalisation method {d.get('method')!r}")
        norm = cls(**{k: float(d[k]) for k in ("p_low", "p_high", "mean", "std")})
        if not (0 <= norm.p_low < norm.p_high <= 100 and norm.std > 0):
            raise ValueError(f"invalid normalisation parameters {d}")
        return norm


def is_rgb(image: Any) -> bool:
    """True for a (Y, X, 3|4) colour image (napari's own convention)."""
    return image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[0] > 4


def to_grey(image: Any, rgb: bool | None = None) -> np.ndarray:
    """Return a 2-D (or stacked 3-D) float32 grey array of ``image``: the one RGB -> grey.

    ``rgb`` says whether the last axis holds colour channels (None: guess with :func:`is_rgb`).
    RGB/RGBA images are weighted to luminance (alpha is dropped); NaN and infinite values are
    left for :func:`normalize` to handle.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not (np.issubdtype(image.dtype, np.number)) or np.iscomplexobj(image):
        raise ValueError(f"unsupported image data type {image.dtype}")
    if is_rgb(image) if rgb is None else rgb:
        return image[..., :3].astype(np.float32) @ _LUMA
    return image.astype(np.float32, copy=False)


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
    step = max(1, int(np.ceil((np.prod(spatial) / _MAX_SAMPLES) ** (1 / len(spatial)))))
    sample = to_grey(image[tuple(slice(None, None, step) for _ in spatial)], rgb).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, [norm.p_low, norm.p_high])
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def normalize(grey: np.ndarray, low: float, high: float, norm: Normalization) -> np.ndarray:
    """Map grey values to network input: stretch, clip to [-0.5, 1.5], standardise.

    NaN becomes the low value and +/-inf are clipped, so the output is finite.
    """
    x = (np.asarray(grey, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    x = np.nan_to_num(x, nan=0.0, posinf=1.5, neginf=-0.5)
    np.clip(x, -0.5, 1.5, out=x)
    x -= np.float32(norm.mean)
    x /= np.float32(norm.std)
    return x
