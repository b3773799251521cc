"""npe2 reader for SEM TIFFs: the image with its physical pixel size and data-bar row."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .io.images import TIFF_SUFFIXES, read_sample
from .sample import Sample

LayerData = tuple[Any, dict[str, Any], str]
PathLike = str | os.PathLike


def napari_get_reader(
    path: PathLike | Sequence[PathLike],
) -> Callable[[PathLike | Sequence[PathLike]], list[LayerData]] | None:
    """Return a reader for a .tif/.tiff path (or a list of them), None for anything else."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(
        isinstance(p, (str, os.PathLike)) and Path(p).suffix.lower() in TIFF_SUFFIXES
        for p in paths
    ):
        return None
    return read_sem_tiffs


def read_sem_tiffs(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read one or more SEM TIFFs as image layer data (raises ImageReadError on a bad file)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [layer_data(read_sample(p)) for p in paths]


def layer_data(image: Sample) -> LayerData:
    """Image layer data: name, scale = µm per pixel, pixel size and bar row in metadata."""
    source = image.metadata.get("source_path", "")
    spatial = len(image.shape)
    px_um = image.pixel_size_nm / 1000.0 if image.pixel_size_nm else 1.0
    scale = [1.0] * (spatial - 2) + [px_um, px_um]
    kwargs: dict[str, Any] = {
        "name": image.name or (Path(source).stem if source else "image"),
        "scale": scale,
        "rgb": image.rgb,
        "metadata": {
            "pixel_size_nm": image.pixel_size_nm,
            "data_bar_row": image.data_bar_row,
            "source_path": source,
        },
    }
    if image.pixel_size_nm:
        kwargs["units"] = ["pixel"] * (spatial - 2) + ["micrometer", "micrometer"]
    return image.pixels, kwargs, "image"
