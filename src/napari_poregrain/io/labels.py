"""Reading and writing label maps: single-channel uint8 (0 matrix, 1 grain, 2 pore, 255 ignore)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .files import (
    LABEL_SUFFIXES,
    TIFF_SUFFIXES,
    ImageReadError,
    channels_equal,
    check_path,
    reason,
)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel integer label map (PNG/TIF/BMP) as (Y, X) uint8.

    Palette PNG/TIFF label maps give their palette indices. Raises ImageReadError for missing,
    corrupt, multi-channel, non-integer or out-of-range (> 255) files.
    """
    path = Path(path)
    check_path(path, LABEL_SUFFIXES, f"Cannot read labels {path}", "label maps must be lossless")
    try:
        data = _read_array(path, path.suffix.lower() in TIFF_SUFFIXES)
    except Exception as exc:
        raise ImageReadError(f"Cannot read labels {path}: {reason(exc)}.") from exc
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3 and data.shape[-1] in (3, 4) and channels_equal(data):
        data = data[..., 0]  # grey saved as RGB
    if data.ndim != 2:
        raise ImageReadError(
            f"Cannot read labels {path}: a label map must be single-channel (Y, X), "
            f"not shape {data.shape}."
        )
    return _as_label_uint8(data, f"Cannot read labels {path}")


def _read_array(path: Path, tiff: bool) -> np.ndarray:
    if tiff:
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return np.array(img)  # mode "P" gives the indices


def _as_label_uint8(data: np.ndarray, prefix: str) -> np.ndarray:
    if data.dtype == bool:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        raise ImageReadError(f"{prefix}: labels must be integers, not {data.dtype}.")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ImageReadError(
            f"{prefix}: label values must be 0-255, found {data.min()}-{data.max()}."
        )
    return np.ascontiguousarray(data, dtype=np.uint8)


def write_labels(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a (Y, X) integer label map as a single-channel uint8 PNG, atomically."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"Cannot write labels {path}: label maps are written as .png files.")
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(
            f"Cannot write labels {path}: expected a (Y, X) array, not {array.shape}."
        )
    try:
        data = _as_label_uint8(array, f"Cannot write labels {path}")
    except ImageReadError as exc:
        raise ValueError(str(exc)) from None
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
