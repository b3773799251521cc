"""Reading SEM images (pixel size, burned-in data bar) and reading/writing label maps.

Engine module: no Qt, no napari. TIFFs go through tifffile (Zeiss ``CZ_SEM`` and FEI/Thermo
metadata, palettes applied), PNG/JPEG/BMP through Pillow.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..sample import Sample
from .atomic import atomic_write_bytes

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")

# Length units (as vendors spell them) -> nanometres.
_UNIT_NM = {
    "fm": 1e-6,
    "pm": 1e-3,
    "nm": 1.0,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # greek mu U+03BC
    "um": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "mm": 1e6,
    "m": 1e9,
}

# Data-bar heuristic thresholds (fractions of a row's pixels sharing one grey level).
BAR_ROW_DOMINANCE = 0.5  # every bar row (text rows included) is at least this uniform
BAR_SOLID_DOMINANCE = 0.75  # the bar's top row and its median row are at least this uniform
BAR_EDGE_DOMINANCE = 0.95  # some bar rows (between text lines) are nearly flat
BAR_MIN_FRACTION = 0.02  # plausible bar height, as a fraction of the image height
BAR_MAX_FRACTION = 0.30


class ImageReadError(ValueError):
    """An image or label file cannot be read; the message is one sentence naming the file."""


# ---------------------------------------------------------------------------------------------
# Reading images


def read_sample(path: str | os.PathLike, labels: str | os.PathLike | None = None) -> Sample:
    """Read a .tif/.tiff/.png/.jpg/.jpeg/.bmp SEM image (and optionally its label map) as a Sample.

    Raises ImageReadError (one sentence naming the file) on any problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(
            f"Cannot read {path}: unsupported file type {path.suffix or '(none)'!r} "
            f"(supported: {', '.join(IMAGE_SUFFIXES)})."
        )
    _check_file(path)
    try:
        if suffix in TIFF_SUFFIXES:
            image = _read_tiff(path)
        else:
            image = _read_pil(path)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile/Pillow raise many types for corrupt files
        raise ImageReadError(f"Cannot read {path}: {_reason(exc)}.") from exc
    if image.pixels.size == 0:
        raise ImageReadError(f"Cannot read {path}: the image is empty.")
    if labels is not None:
        truth = read_labels(labels)
        if truth.shape != image.shape:
            raise ImageReadError(
                f"{labels}: label map of size {truth.shape} does not match image {path} "
                f"of size {image.shape}."
            )
        image = image.with_labels(truth)
    return image


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"Cannot read {path}: the file does not exist.")
    if not path.is_file():
        raise ImageReadError(f"Cannot read {path}: it is not a file.")


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()).rstrip(".")
    if not text:
        text = type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return f"not a valid image file ({text})"


def _read_tiff(path: Path) -> Sample:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        if not tf.pages or not tf.series:
            raise ImageReadError(f"Cannot read {path}: the TIFF holds no image.")
        page = tf.pages.first
        series = tf.series[0]
        data = series.asarray()
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

        metadata: dict[str, Any] = {"source_path": str(path), "vendor": None, "rgb": rgb}
        pixel_size_nm = None
        scan_rows = None
        sem = tf.sem_metadata if tf.is_sem else None
        fei = tf.fei_metadata if tf.is_fei else None
        if sem:
            metadata["vendor"] = "zeiss"
            metadata["sem_metadata"] = dict(sem)
            pixel_size_nm = zeiss_pixel_size_nm(sem)
        elif fei:
            metadata["vendor"] = "fei"
            metadata["fei_metadata"] = dict(fei)
            pixel_size_nm = fei_pixel_size_nm(fei)
            scan_rows = fei_scan_rows(fei)
        elif tf.is_imagej:
            pixel_size_nm = _imagej_pixel_size_nm(tf.imagej_metadata or {}, page)
            if pixel_size_nm is not None:
                metadata["vendor"] = "imagej"

    bar = detect_data_bar(data, scan_rows=scan_rows, rgb=rgb)
    return Sample(data, None, pixel_size_nm, bar, name=path.stem, rgb=rgb, metadata=metadata)


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
    if palette and rgb and _channels_equal(data):
        data, rgb = np.ascontiguousarray(data[..., 0]), False
    data = np.array(data)  # writable, detached from Pillow
    metadata: dict[str, Any] = {"source_path": str(path), "vendor": None, "rgb": rgb}
    bar = detect_data_bar(data, rgb=rgb)
    return Sample(data, None, None, bar, name=path.stem, rgb=rgb, metadata=metadata)


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


def _channels_equal(data: np.ndarray) -> bool:
    return bool(
        np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 0], data[..., 2])
    )


# ---------------------------------------------------------------------------------------------
# Pixel size


def length_to_nm(value: Any, unit: Any) -> float | None:
    """``value`` in ``unit`` (pm, nm, µm, um, mm, m, ...) as nanometres; None if unusable."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    factor = _UNIT_NM.get(str(unit).strip().lower().replace("\u00b5", "µ"))
    if factor is None:
        factor = _UNIT_NM.get(str(unit).strip())
    if factor is None or not math.isfinite(v) or v <= 0:
        return None
    return v * factor


def zeiss_pixel_size_nm(sem_metadata: Mapping[str, Any]) -> float | None:
    """Pixel size from Zeiss ``CZ_SEM`` metadata (``ap_pixel_size`` = (label, value, unit))."""
    for key in ("ap_pixel_size", "ap_image_pixel_size"):
        entry = sem_metadata.get(key)
        if isinstance(entry, (tuple, list)) and len(entry) >= 3:
            nm = length_to_nm(entry[1], entry[2])
            if nm is not None:
                return nm
    return None


def fei_pixel_size_nm(fei_metadata: Mapping[str, Any]) -> float | None:
    """Pixel size from FEI/Thermo metadata (``[Scan]``/``[EScan]`` ``PixelWidth`` in metres)."""
    for section in ("Scan", "EScan", "IScan"):
        values = fei_metadata.get(section)
        if isinstance(values, Mapping):
            nm = length_to_nm(values.get("PixelWidth"), "m")
            if nm is not None:
                return nm
    return None


def fei_scan_rows(fei_metadata: Mapping[str, Any]) -> int | None:
    """Number of scanned rows from FEI/Thermo metadata (``[Image]``/``[Scan]`` ``ResolutionY``)."""
    for section in ("Image", "Scan", "EScan"):
        values = fei_metadata.get(section)
        if isinstance(values, Mapping):
            try:
                rows = int(values.get("ResolutionY"))
            except (TypeError, ValueError):
                continue
            if rows > 0:
                return rows
    return None


def _imagej_pixel_size_nm(ij: Mapping[str, Any], page: Any) -> float | None:
    unit = ij.get("unit")
    res = page.tags.get("XResolution")
    if unit is None or res is None:
        return None
    num, den = res.value
    if not num:
        return None
    return length_to_nm(den / num, unit)


# ---------------------------------------------------------------------------------------------
# Data bar


def detect_data_bar(
    image: np.ndarray, scan_rows: int | None = None, rgb: bool | None = None
) -> int | None:
    """First row of the burned-in data bar at the bottom of ``image``, or None.

    ``scan_rows`` (from metadata, e.g. FEI ``ResolutionY``) gives the answer exactly when it is
    smaller than the image height. Otherwise a row-statistics heuristic: a band of rows each
    dominated by one grey level, contiguous from the bottom (a few stray rows allowed), that starts
    with a sharp edge below image content, 2-30% of the image height. Stacks use
    their first plane.
    """
    image = np.asarray(image)
    if rgb is None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    grey = image.astype(np.float32)[..., :3].mean(axis=-1) if rgb else image
    while grey.ndim > 2:
        grey = grey[0]
    if grey.ndim != 2 or grey.shape[0] < 8 or grey.shape[1] < 8:
        return None
    height = grey.shape[0]
    if scan_rows is not None and 0 < scan_rows < height:
        return int(scan_rows)

    dominance = row_dominance(grey)
    flat = dominance >= BAR_ROW_DOMINANCE
    solid = dominance >= BAR_SOLID_DOMINANCE
    edge = dominance >= BAR_EDGE_DOMINANCE
    slack = max(3, height // 40)  # stray rows below the bar / text rows inside it

    bottom = height - 1
    while bottom >= height - slack and not flat[bottom]:
        bottom -= 1
    if bottom < height - slack:
        return None
    run_top, gap = bottom, 0
    for r in range(bottom - 1, -1, -1):
        if flat[r]:
            run_top, gap = r, 0
        else:
            gap += 1
            if gap > slack:
                break
    # The bar starts with a sharp edge: a mostly flat row right below a row of image content.
    tops = [r for r in range(max(run_top, 1), bottom) if not flat[r - 1] and solid[r]]
    if not tops:
        return None
    top = tops[0]
    bar_height = height - top
    if not (BAR_MIN_FRACTION * height <= bar_height <= BAR_MAX_FRACTION * height):
        return None
    bar = dominance[top : bottom + 1]
    if np.median(bar) < BAR_SOLID_DOMINANCE or not edge[top : bottom + 1].any():
        return None
    return int(top)


def row_dominance(grey: np.ndarray, tolerance: int = 2) -> np.ndarray:
    """Per row, the largest fraction of pixels within ``tolerance`` of one grey level.

    Levels are the 256 steps of uint8 (other dtypes are scaled from their min-max range first);
    the tolerance absorbs JPEG ringing and noise in flat areas.
    """
    grey = np.asarray(grey)
    h, w = grey.shape
    if grey.dtype == np.uint8:
        q = grey
    else:
        g = grey.astype(np.float64)
        finite = np.isfinite(g)
        if not finite.any():
            return np.ones(h)
        lo, hi = float(g[finite].min()), float(g[finite].max())
        if hi <= lo:
            return np.ones(h)
        q = np.where(finite, np.round((g - lo) / (hi - lo) * 255), 0).astype(np.uint8)
    offsets = (np.arange(h, dtype=np.int64) * 256)[:, None]
    counts = np.bincount((q.astype(np.int64) + offsets).ravel(), minlength=256 * h)
    counts = counts.reshape(h, 256)
    if tolerance > 0:
        cum = np.pad(np.cumsum(counts, axis=1), ((0, 0), (tolerance + 1, tolerance)), mode="edge")
        cum[:, : tolerance + 1] = 0
        counts = cum[:, 2 * tolerance + 1 :] - cum[:, : -2 * tolerance - 1]
    return counts.max(axis=1) / w


# ---------------------------------------------------------------------------------------------
# Label maps


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel integer label map (PNG/TIF/BMP) as (Y, X) uint8.

    Palette PNG/TIFF label maps give their palette indices. Raises ImageReadError for missing,
    corrupt, multi-channel, non-integer or out-of-range (> 255) files.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise ImageReadError(
            f"Cannot read labels {path}: unsupported file type {path.suffix or '(none)'!r} "
            f"(label maps must be lossless: {', '.join(LABEL_SUFFIXES)})."
        )
    _check_file(path)
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            data = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as img:
                img.load()
                data = np.array(img)  # mode "P" gives the indices
    except Exception as exc:
        raise ImageReadError(f"Cannot read labels {path}: {_reason(exc)}.") from exc
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3 and data.shape[-1] in (3, 4) and _channels_equal(data):
        data = data[..., 0]  # grey saved as RGB
    if data.ndim != 2:
        raise ImageReadError(
            f"Cannot read labels {path}: a label map must be single-channel (Y, X), "
            f"not shape {data.shape}."
        )
    return _as_label_uint8(data, f"Cannot read labels {path}")


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
