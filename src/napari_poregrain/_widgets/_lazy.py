"""Zarr-backed ``grains``/``pores`` layers for lazy images: the store, its sink and helpers.

Segmenting a lazy (dask/zarr) image streams the classes block by block into two uint8 zarr
arrays on disk (:class:`ZarrLabelPair`, a sink for ``predict(..., out=...)``); the Labels
layers hold those arrays, so napari reads what it shows and paints into the store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.blockwise import PairClassMap, is_lazy
from ..classes import GRAIN, LAYER_NAMES, PORE
from ..sample import Sample
from ._layers import layer_pixels, sample_from_layers

__all__ = [
    "ZarrLabelPair",
    "default_store",
    "is_lazy",
    "lazy_pair",
    "lazy_pair_sample",
    "open_pair",
]

STORE_SUFFIX = ".poregrain.zarr"
CHUNK = 1024
"""Side of the zarr chunks of a label pair (one chunk is 1 MiB of uint8)."""


def lazy_pair(grains, pores) -> bool:
    """True when either label layer holds a lazy (dask/zarr) array."""
    return any(ly is not None and is_lazy(layer_pixels(ly)) for ly in (grains, pores))


def lazy_pair_sample(ref, grains, pores, region, name: str) -> Sample:
    """A Sample of a lazy grains/pores pair: labels read band by band (:class:`PairClassMap`)."""
    arrays = [None if ly is None else layer_pixels(ly) for ly in (grains, pores)]
    return sample_from_layers(ref, region=region, name=name).with_labels(PairClassMap(*arrays))


def default_store(image_layer, folder: str | Path | None = None) -> Path:
    """A free ``<image name>.poregrain.zarr`` path: in ``folder`` when given, else beside the
    image's source file when that folder is writable, else in the temporary folder."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in image_layer.name) or "image"
    if folder is None:
        source = image_layer.metadata.get("source_path") or ""
        parent = Path(source).parent if source else None
        if parent is not None and parent.is_dir() and _writable(parent):
            folder = parent
        else:
            folder = Path(tempfile.gettempdir()) / "napari-poregrain"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, n = folder / f"{name}{STORE_SUFFIX}", 1
    while path.exists():  # never replace an earlier store: the user may have painted in it
        n += 1
        path = folder / f"{name}-{n}{STORE_SUFFIX}"
    return path


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


class ZarrLabelPair:
    """Two uint8 zarr arrays ``grains`` and ``pores`` (0/1) in one zarr group on disk.

    ``write(y0, x0, block)`` (the ``LabelSink`` of ``predict``) splits a block of classes into
    the two arrays; unwritten pixels (rows below a data bar) stay 0.
    """

    def __init__(self, path: str | Path, shape: tuple[int, int], chunk: int = CHUNK) -> None:
        import zarr

        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already; choose another folder")
        try:
            group = zarr.open_group(self.path, mode="w-")
            chunks = (min(chunk, shape[0]), min(chunk, shape[1]))
            self.arrays = {
                cls: group.create_array(
                    LAYER_NAMES[cls], shape=shape, chunks=chunks, dtype="uint8", fill_value=0
                )
                for cls in (GRAIN, PORE)
            }
        except OSError as exc:
            raise ValueError(f"cannot create the label store {self.path}: {exc}") from None
        self.shape = tuple(shape)

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        """Write one block of classes (0 matrix, 1 grain, 2 pore) at ``(y0, x0)``."""
        h, w = block.shape
        for cls, arr in self.arrays.items():
            arr[y0 : y0 + h, x0 : x0 + w] = (block == cls).view(np.uint8)

    def __getitem__(self, cls: int) -> Any:
        return self.arrays[cls]


def open_pair(path: str | Path) -> dict[int, Any]:
    """The ``grains``/``pores`` zarr arrays of a store written by :class:`ZarrLabelPair`."""
    import zarr

    group = zarr.open_group(Path(path), mode="r+")
    return {cls: group[LAYER_NAMES[cls]] for cls in (GRAIN, PORE)}
