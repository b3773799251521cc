"""npe2 reader: SEM TIFFs as images (pixel size, data-bar row) and class-map label files as
``grains`` and ``pores`` Labels layers laid over their image.

Images of more than :data:`LAZY_ABOVE` pixels (and OME-Zarr folders) are read lazily: the layer
holds dask arrays over tifffile's zarr store or the zarr datasets, with every pyramid level
(``multiscale=True``) when the file has more than one, so napari reads only what it shows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .classes import GRAIN, IGNORE, LAYER_COLOURS, LAYER_NAMES, MATRIX, PORE
from .io import (
    IMAGE_SUFFIXES,
    LABEL_SUFFIXES,
    TIFF_SUFFIXES,
    ImageReadError,
    open_sample,
    read_labels,
    read_sample,
)
from .io.lazy import is_zarr
from .sample import Sample

LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | os.PathLike
LABELS_SUFFIX = "_labels"
LABELS_FOLDER = "labels"
LAZY_ABOVE = 1 << 26
"""Images with more pixels than this (64 MP) are read lazily (dask over zarr)."""


def napari_get_reader(
    path: PathLike | Sequence[PathLike],
) -> Callable[[PathLike | Sequence[PathLike]], list[LayerData]] | None:
    """A reader for label files (all of them) or .tif/.tiff images (all of them); else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        return None
    if all(is_label_file(p) for p in paths):
        return read_label_files
    if all(Path(p).suffix.lower() in TIFF_SUFFIXES or is_zarr(p) for p in paths):
        return read_sem_tiffs
    return None


def is_label_file(path: PathLike) -> bool:
    """A label-map file: its stem ends in ``_labels`` or it lies in a ``labels`` folder."""
    path = Path(path)
    return path.suffix.lower() in LABEL_SUFFIXES and (
        path.stem.lower().endswith(LABELS_SUFFIX) or path.parent.name.lower() == LABELS_FOLDER
    )


def read_sem_tiffs(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read SEM TIFFs (or OME-Zarr images) as image layer data; ImageReadError on a bad file.

    Above :data:`LAZY_ABOVE` pixels (and for OME-Zarr) the data is lazy (see the module doc).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [_image_layer(Path(p)) for p in paths]


def _pixel_count(path: Path) -> int:
    """Pixels of a TIFF's first series (0 when tifffile cannot tell: read it the usual way)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            return int(np.prod(tf.series[0].shape)) if tf.series else 0
    except Exception:  # a bad file: read_sample says why in one sentence
        return 0


def _image_layer(path: Path) -> LayerData:
    """One image's layer data: NumPy when small, dask (all pyramid levels) when large."""
    if not is_zarr(path) and _pixel_count(path) <= LAZY_ABOVE:
        return layer_data(read_sample(path))
    sample = open_sample(path, lazy=True)
    if isinstance(sample.pixels, np.ndarray):  # palette / MINISWHITE TIFFs are read whole
        return layer_data(sample)
    data, kwargs, kind = layer_data(sample)
    levels = lazy_levels(path, data)
    kwargs["metadata"]["lazy"] = True
    if len(levels) > 1:
        kwargs["multiscale"] = True
        return levels, kwargs, kind
    return levels[0], kwargs, kind


def lazy_levels(path: Path, first: Any) -> list[Any]:
    """Dask arrays of an image's resolution levels, highest first (``first`` is level 0)."""
    import dask.array as da

    levels = [first if hasattr(first, "dask") else da.from_zarr(first)]
    for level in _lower_levels(path, first.shape):
        levels.append(level if hasattr(level, "dask") else da.from_zarr(level))
    return levels


def _lower_levels(path: Path, shape: tuple[int, ...]) -> list[Any]:
    """The zarr arrays of the pyramid levels below level 0 that shrink ``shape`` (may be [])."""
    import zarr

    if is_zarr(path):
        from .io.lazy import _multiscales, _spatial

        group = zarr.open_group(path, mode="r")
        image = _multiscales(group.attrs.asdict())[0]
        axes = [a if isinstance(a, dict) else {"name": a} for a in image.get("axes", [])]
        found = [_spatial(group[d["path"]], axes)[0] for d in image["datasets"][1:]]
    else:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            n = len(tf.series[0].levels)
            found = [zarr.open(tf.aszarr(series=0, level=i), mode="r") for i in range(1, n)]
    return [a for a in found if a.ndim == len(shape) and a.shape[-1] < shape[-1]]


def _geometry(pixel_size_nm: float | None, spatial: int) -> dict[str, Any]:
    """Scale in µm per pixel (units with it) for a layer of ``spatial`` axes."""
    px_um = pixel_size_nm / 1000.0 if pixel_size_nm else 1.0
    geo: dict[str, Any] = {"scale": [1.0] * (spatial - 2) + [px_um, px_um]}
    if pixel_size_nm:
        geo["units"] = ["pixel"] * (spatial - 2) + ["micrometer", "micrometer"]
    return geo


def layer_data(image: Sample) -> LayerData:
    """Image layer data: name, scale = µm per pixel, pixel size and bar row in metadata."""
    source = image.metadata.get("source_path", "")
    kwargs: dict[str, Any] = {
        "name": image.name or (Path(source).stem if source else "image"),
        **_geometry(image.pixel_size_nm, len(image.shape)),
        "rgb": image.rgb,
        "metadata": {
            "pixel_size_nm": image.pixel_size_nm,
            "data_bar_row": image.data_bar_row,
            "source_path": source,
        },
    }
    return image.pixels, kwargs, "image"


# -- label files -------------------------------------------------------------------------------
def image_for(label_path: PathLike) -> Path | None:
    """The image a label file belongs to: ``X_labels.*`` -> ``X.*`` beside it; ``labels/X.*`` ->
    ``X.*`` beside the ``labels`` folder or in a folder next to it (``images/X.tif``)."""
    path = Path(label_path)
    stem = path.stem
    if stem.lower().endswith(LABELS_SUFFIX):
        folders, stem = [path.parent], stem[: -len(LABELS_SUFFIX)]
    else:
        root = path.parent.parent
        siblings = sorted(p for p in root.iterdir() if p.is_dir() and p != path.parent)
        folders = [root, *siblings]
    for folder in folders:
        for suffix in IMAGE_SUFFIXES:
            for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
                if candidate.is_file() and candidate != path:
                    return candidate
    return None


def read_label_files(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read class-map files (0 matrix, 1 grain, 2 pore, 255 ignored) as grains/pores layers."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [layer for p in paths for layer in label_layers(Path(p))]


def label_layers(path: Path) -> list[LayerData]:
    """``grains`` and ``pores`` Labels layer data of one class map, at its image's pixel size.

    Raises ImageReadError (one sentence naming the files) for values other than 0/1/2/255 or an
    image of another shape.
    """
    labels = read_labels(path)
    unknown = sorted(set(np.unique(labels).tolist()) - {MATRIX, GRAIN, PORE, IGNORE})
    if unknown:
        raise ImageReadError(
            f"Cannot read labels {path}: a class map holds 0 (matrix), 1 (grain), 2 (pore) and "
            f"255 (ignored), not {', '.join(map(str, unknown[:5]))}."
        )
    image_path = image_for(path)
    pixel_size_nm = None
    if image_path is not None:
        image = read_sample(image_path)
        if tuple(image.shape[-2:]) != labels.shape:
            raise ImageReadError(
                f"Cannot read labels {path}: they are {labels.shape[1]}x{labels.shape[0]} "
                f"pixels but the image {image_path.name} is "
                f"{image.shape[-1]}x{image.shape[-2]}."
            )
        pixel_size_nm = image.pixel_size_nm
    meta = {
        "source_path": str(path),
        "image_path": None if image_path is None else str(image_path),
        "pixel_size_nm": pixel_size_nm,
    }
    return [
        (
            (labels == cls).astype(np.uint8),
            {
                "name": LAYER_NAMES[cls],
                **_geometry(pixel_size_nm, 2),
                "colormap": {None: "transparent", 0: "transparent", 1: LAYER_COLOURS[cls]},
                "opacity": 0.5,
                "metadata": dict(meta),
            },
            "labels",
        )
        for cls in (GRAIN, PORE)
    ]
