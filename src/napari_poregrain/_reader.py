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

from .classes import GRAIN, IGNORE, LAYER_NAMES, MATRIX, PORE
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
    """A reader for label files or 0/1/2/255 PNG maps (all of them) or .tif/.tiff images (all
    of them); else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        return None
    if all(is_label_file(p) or is_class_map(p) for p in paths):
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
    image_path = image_for(path) if is_label_file(path) else None
    geo, owner = _geometry(None, 2), None
    if image_path is not None:
        image = read_sample(image_path)
        _check_shape(path, labels.shape, image.shape[-2:], image_path.name)
        geo, owner = _geometry(image.pixel_size_nm, 2), image_path.stem
    else:
        open_image = _open_image_of(labels.shape, path)
        if open_image is not None:
            geo = {
                k: [float(v) for v in getattr(open_image, k)[-2:]] for k in ("scale", "translate")
            }
            geo["units"] = [str(u) for u in open_image.units[-2:]]
            owner = open_image.name
    meta = {
        "source_path": str(path),
        "image_path": None if image_path is None else str(image_path),
        "pixel_size_nm": None if image_path is None else image.pixel_size_nm,
        "image": owner,
    }
    if owner is None:
        del meta["image"]
    masks = _class_masks(labels)
    return [
        (
            masks[cls],
            {
                "name": LAYER_NAMES[cls],
                **geo,
                "colormap": _colours(cls),
                "opacity": 0.5,
                "metadata": dict(meta),
            },
            "labels",
        )
        for cls in (GRAIN, PORE)
    ]


GEOMETRY = ("scale", "translate")


def _class_masks(labels: np.ndarray) -> dict[int, np.ndarray]:
    """The grains/pores layers' data: 1 for the class, 255 unlabelled in both, else 0."""
    from ._widgets._layers import class_masks

    return class_masks(labels)


def _colours(cls: int) -> dict:
    from ._widgets._layers import class_colours

    return class_colours(cls)


def _check_shape(path: Path, labels: tuple[int, ...], image: tuple[int, ...], name: str) -> None:
    if tuple(image) != tuple(labels):
        raise ImageReadError(
            f"Cannot read labels {path}: they are {labels[1]}x{labels[0]} pixels but the image "
            f"{name} is {image[-1]}x{image[-2]}."
        )


def _open_image_of(shape: tuple[int, ...], path: Path):
    """The newest image layer of ``shape`` in the current viewer (its scale is the map's);
    ImageReadError when images are open but none has that shape; None without a viewer."""
    import napari
    from napari.layers import Image

    viewer = napari.current_viewer()
    images = [] if viewer is None else [ly for ly in viewer.layers if isinstance(ly, Image)]
    fits = [ly for ly in images if _shape(ly)[-2:] == tuple(shape) and not ly.rgb]
    if fits:
        return fits[-1]
    if images:
        sizes = ", ".join(f"{ly.name} {_shape(ly)[-1]}x{_shape(ly)[-2]}" for ly in images)
        raise ImageReadError(
            f"Cannot lay labels {path} over an open image: they are {shape[1]}x{shape[0]} "
            f"pixels, the open images are {sizes}."
        )
    return None


def _shape(layer) -> tuple[int, ...]:
    return tuple((layer.data[0] if layer.multiscale else layer.data).shape)


def is_class_map(path: PathLike) -> bool:
    """A PNG/BMP of one channel holding only 0/1/2/255: a class map wherever it lies."""
    path = Path(path)
    if path.suffix.lower() not in LABEL_SUFFIXES or path.suffix.lower() in TIFF_SUFFIXES:
        return False
    try:
        labels = read_labels(path)
    except Exception:  # not a readable single-channel map: napari's own readers take it
        return False
    return labels.ndim == 2 and set(np.unique(labels).tolist()) <= {MATRIX, GRAIN, PORE, IGNORE}
