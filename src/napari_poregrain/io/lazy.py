"""Reading huge images lazily: TIFF through tifffile's zarr store, OME-Zarr through ``zarr``.

:func:`read_lazy` returns a :class:`~napari_poregrain.sample.Sample` whose pixels are a zarr
array: slicing it reads only the strips or tiles it touches, so nothing here (nor ``predict``,
which reads tile by tile) holds the whole image. The data bar is found from a bounded band of
rows (:func:`.databar.detect_data_bar`), the pixel size from the TIFF tags or the OME-Zarr
``coordinateTransformations``. Palette and MINISWHITE TIFFs need a per-pixel mapping and are
read whole by :func:`.images.read_sample`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..sample import Sample
from .databar import detect_data_bar
from .files import TIFF_SUFFIXES, ImageReadError, check_regular, reason
from .metadata import length_to_nm, tiff_metadata

ZARR_SUFFIXES = (".zarr", ".ome.zarr")
NGFF_UNITS = {"picometer": "pm", "nanometer": "nm", "micrometer": "um", "millimeter": "mm"}
NGFF_UNITS |= {"meter": "m", "angstrom": "pm"}


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a folder holding a zarr group or array (OME-Zarr images are such folders)."""
    path = Path(path)
    return path.is_dir() and any(
        (path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray")
    )


def read_lazy(path: str | os.PathLike) -> Sample:
    """A Sample whose pixels are read on demand from a TIFF or an OME-Zarr image.

    Raises :class:`~.files.ImageReadError` (one sentence naming the path) when the path holds no
    readable image.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"Cannot read {path}: the file does not exist.")
    if is_zarr(path):
        return _read_ome_zarr(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ImageReadError(
            f"Cannot read {path} lazily: only TIFF files and OME-Zarr folders can be read lazily."
        )
    check_regular(path)  # before opening: a named pipe would block
    try:
        return _read_tiff(path)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile and zarr raise many types for corrupt files
        raise ImageReadError(f"Cannot read {path}: {reason(exc)}.") from exc


def open_sample(path: str | os.PathLike, lazy: bool = True) -> Sample:
    """``read_sample`` with laziness: TIFF and OME-Zarr lazily when ``lazy``, the rest whole."""
    from .images import read_sample

    path = Path(path)
    if is_zarr(path) or (lazy and path.suffix.lower() in TIFF_SUFFIXES):
        return read_lazy(path)
    return read_sample(path)


def _read_tiff(path: Path) -> Sample:
    import tifffile
    import zarr

    from .images import check_shape, read_sample

    with tifffile.TiffFile(path) as tf:
        if not tf.pages or not tf.series:
            raise ImageReadError(f"Cannot read {path}: the TIFF holds no image.")
        page = tf.pages.first
        photometric = int(page.photometric)
        vendor, pixel_size_nm, scan_rows = tiff_metadata(tf, page)
        if photometric in (0, 3):  # MINISWHITE, PALETTE: mapped per pixel, read whole
            return read_sample(path)
        pixels = zarr.open(tf.aszarr(series=0, level=0), mode="r")
    rgb = photometric in (2, 6) and pixels.ndim >= 3 and pixels.shape[-1] in (3, 4)
    check_shape(path, pixels.shape, rgb)  # before any compute: 4-D or 2-channel data
    metadata: dict[str, Any] = {"source_path": str(path), "rgb": rgb, "lazy": True, **vendor}
    bar = detect_data_bar(pixels, scan_rows=scan_rows, rgb=rgb)
    return Sample(pixels, None, pixel_size_nm, bar, name=path.stem, rgb=rgb, metadata=metadata)


def _read_ome_zarr(path: Path) -> Sample:
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
        multiscales = _multiscales(group.attrs.asdict())
    except Exception as exc:
        raise ImageReadError(f"Cannot read {path}: not a zarr group ({reason(exc)}).") from exc
    if not multiscales or not multiscales[0].get("datasets"):
        raise ImageReadError(f"Cannot read {path}: the OME-Zarr holds no image (no multiscales).")
    image = multiscales[0]
    level = image["datasets"][0]
    try:
        pixels = group[level["path"]]
    except KeyError:
        raise ImageReadError(
            f"Cannot read {path}: its multiscale level {level['path']!r} is missing."
        ) from None
    axes = [a if isinstance(a, dict) else {"name": a} for a in image.get("axes", [])]
    pixels, names = _spatial(pixels, axes)
    if pixels.ndim != 2:
        raise ImageReadError(f"Cannot read {path}: expected a 2-D image, not {pixels.shape}.")
    size = _pixel_size_nm(level, image, axes, names)
    name = path.name.removesuffix(".zarr").removesuffix(".ome")
    metadata = {"source_path": str(path), "rgb": False, "lazy": True, "vendor": "ome-zarr"}
    bar = detect_data_bar(pixels, rgb=False)
    return Sample(pixels, None, size, bar, name=name, rgb=False, metadata=metadata)


def _multiscales(attrs: dict) -> list[dict]:
    """``multiscales`` of NGFF 0.4 (top-level attributes) or 0.5 (under ``ome``)."""
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        attrs = attrs["ome"]
    return list(attrs.get("multiscales") or [])


def _spatial(pixels: Any, axes: list[dict]) -> tuple[Any, list[str]]:
    """Drop leading singleton axes (t, c, z of size 1); return the array and its axis names."""
    names = [str(a.get("name", "")) for a in axes] or ["y", "x"][-pixels.ndim :]
    if pixels.ndim > 2 and pixels.shape[0] == 1:
        import dask.array as da

        pixels = da.from_zarr(pixels)  # indexing a zarr array would read the whole plane
        while pixels.ndim > 2 and pixels.shape[0] == 1:
            pixels, names = pixels[0], names[1:]
    return pixels, names


def _pixel_size_nm(level: dict, image: dict, axes: list[dict], names: list[str]) -> float | None:
    """Pixel size along x from the level's (and the image's) scale transforms, in nm."""
    scale = 1.0
    key = "coordinateTransformations"
    for transforms in (level.get(key), image.get(key)):
        for t in transforms or []:
            if t.get("type") == "scale" and t.get("scale"):
                scale *= float(t["scale"][-1])
    unit = next((a.get("unit") for a in axes if a.get("name") == "x"), None)
    if unit is None:
        return None
    if unit == "angstrom":
        scale *= 100.0
    return length_to_nm(scale, NGFF_UNITS.get(str(unit), str(unit)))
