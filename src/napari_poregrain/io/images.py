"""Reading SEM images as Samples: TIFF (vendor metadata, palettes) and PNG/JPEG/BMP.

Engine module: no Qt, no napari. TIFFs go through tifffile (Zeiss ``CZ_SEM`` and FEI/Thermo
metadata, palettes applied), PNG/JPEG/BMP through Pillow. The pixel size comes from
:mod:`.metadata`, the data-bar row from :mod:`.databar`, label maps from :mod:`.labels`; their
public names stay importable from here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..preprocess import check_pixels
from ..sample import Sample
from .databar import detect_data_bar
from .files import (
    IMAGE_SUFFIXES,
    LABEL_SUFFIXES,
    PIL_SUFFIXES,
    TIFF_SUFFIXES,
    ImageReadError,
    channels_equal,
    check_path,
    reason,
)
from .labels import read_labels, write_labels
from .metadata import length_to_nm, tiff_metadata

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "PIL_SUFFIXES",
    "TIFF_SUFFIXES",
    "ImageReadError",
    "apply_palette",
    "detect_data_bar",
    "length_to_nm",
    "read_labels",
    "read_sample",
    "write_labels",
]


def read_sample(path: str | os.PathLike, labels: str | os.PathLike | None = None) -> Sample:
    """Read a .tif/.tiff/.png/.jpg/.jpeg/.bmp SEM image (and optionally its label map) as a Sample.

    Raises ImageReadError (one sentence naming the file) on any problem.
    """
    path = Path(path)
    check_path(path, IMAGE_SUFFIXES, f"Cannot read {path}", "supported")
    try:
        image = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else _read_pil(path)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile/Pillow raise many types for corrupt files
        raise ImageReadError(f"Cannot read {path}: {reason(exc)}.") from exc
    if image.pixels.size == 0:
        raise ImageReadError(f"Cannot read {path}: the image is empty.")
    check_shape(path, image.pixels.shape, image.rgb)
    if labels is not None:
        truth = read_labels(labels)
        if truth.shape != image.shape:
            raise ImageReadError(
                f"{labels}: labels are {'x'.join(map(str, truth.shape))} but the image "
                f"{path.name} is {'x'.join(map(str, image.shape))}."
            )
        image = image.with_labels(truth)
    return image


MAX_CHANNELS = 4
"""A 3-D grey array whose last axis is this short (and shorter than the others) holds channels."""


def check_shape(path: Path, shape: tuple[int, ...], rgb: bool) -> None:
    """ImageReadError unless ``shape`` can be segmented: (Y, X) or a (Z, Y, X) stack, grey or
    with an RGB(A) last axis; 4-D data and 2-channel (or unmarked colour) images are refused."""
    dims = "x".join(map(str, shape))
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]  # leading singleton axes (tifffile's lazy arrays keep them)
    spatial = shape[:-1] if rgb else shape
    if len(spatial) > 3:
        raise ImageReadError(
            f"Cannot read {path}: its data is {len(spatial)}-D ({dims}); give a 2-D image or a "
            "stack of 2-D images."
        )
    if not rgb and len(shape) == 3 and shape[-1] <= MAX_CHANNELS and shape[-1] < min(shape[:2]):
        raise ImageReadError(
            f"Cannot read {path}: it holds {shape[-1]} channels ({dims}); give a grey or RGB "
            "image (e.g. one channel saved on its own)."
        )


def _read_tiff(path: Path) -> Sample:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        if not tf.pages or not tf.series:
            raise ImageReadError(f"Cannot read {path}: the TIFF holds no image.")
        page = tf.pages.first
        data, rgb = _tiff_pixels(page, tf.series[0].asarray())
        vendor, pixel_size_nm, scan_rows = tiff_metadata(tf, page)
    metadata: dict[str, Any] = {"source_path": str(path), "rgb": rgb, **vendor}
    _check(path, data)
    bar = detect_data_bar(data, scan_rows=scan_rows, rgb=rgb)
    return Sample(data, None, pixel_size_nm, bar, name=path.stem, rgb=rgb, metadata=metadata)


def _tiff_pixels(page: Any, data: np.ndarray) -> tuple[np.ndarray, bool]:
    """A TIFF page's pixels as ordinary grey or RGB (palette applied, MINISWHITE inverted)."""
    rgb = False
    photometric = int(page.photometric)
    colormap = getattr(page, "colormap", None)
    if photometric == 3 and colormap is not None:  # PALETTE
        data, rgb = apply_palette(data, colormap)
    elif photometric in (2, 6):  # RGB, YCbCr (decoded to RGB)
        rgb = data.ndim >= 3 and data.shape[-1] in (3, 4)
    elif photometric == 0 and np.issubdtype(data.dtype, np.unsignedinteger):
        data = np.iinfo(data.dtype).max - data  # MINISWHITE -> ordinary grey
    while data.ndim > (3 if rgb else 2) and data.shape[0] == 1:
        data = data[0]
    return data, rgb


def _read_pil(path: Path) -> Sample:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        mode = img.mode
        if mode == "P" or mode == "PA":
            img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
        elif mode == "1":
            img = img.convert("L")
        elif mode == "LA":
            img = img.convert("RGBA")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGB")
        data = np.asarray(img)
        palette = mode in ("P", "PA")
    if data.dtype == np.int32 and data.size and data.min() >= 0 and data.max() <= 65535:
        data = data.astype(np.uint16)  # 16-bit PNGs come back as mode "I"
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    if palette and rgb and channels_equal(data):
        data, rgb = np.ascontiguousarray(data[..., 0]), False
    data = np.array(data)  # writable, detached from Pillow
    metadata: dict[str, Any] = {"source_path": str(path), "vendor": None, "rgb": rgb}
    _check(path, data)
    bar = detect_data_bar(data, rgb=rgb)
    return Sample(data, None, None, bar, name=path.stem, rgb=rgb, metadata=metadata)


def _check(path: Path, data: np.ndarray) -> None:
    """ImageReadError (the reason) for empty, non-numeric, non-finite or out-of-range pixels."""
    try:
        check_pixels(data, finite=True)
    except ValueError as exc:
        raise ImageReadError(f"Cannot read {path}: {exc}.") from None


def apply_palette(indices: np.ndarray, colormap: np.ndarray) -> tuple[np.ndarray, bool]:
    """Map palette indices through a TIFF colormap (3, N); return (pixels, is_rgb).

    A grey palette gives a single-channel image, a colour palette (..., 3). A palette counts as
    grey when at most 1% of the pixels use non-grey entries (Zeiss palettes are grey plus a few
    annotation colours for the data-bar logo); those entries become their luminance.
    16-bit colormap entries are scaled to uint8.
    """
    cmap = np.asarray(colormap)
    if cmap.ndim != 2 or cmap.shape[0] != 3:
        raise ValueError(f"colormap must have shape (3, N), not {cmap.shape}")
    if cmap.max(initial=0) > 255:
        cmap = cmap >> 8
    cmap = cmap.astype(np.uint8)
    idx = np.clip(indices, 0, cmap.shape[1] - 1)
    colour = (cmap[0] != cmap[1]) | (cmap[0] != cmap[2])
    used = np.bincount(idx.ravel(), minlength=cmap.shape[1])
    if used[colour].sum() <= 0.01 * idx.size:
        luminance = np.round(cmap.T.astype(np.float64) @ [0.299, 0.587, 0.114])
        grey = np.where(colour, np.clip(luminance, 0, 255), cmap[0]).astype(np.uint8)
        return grey[idx], False
    return cmap.T[idx], True
