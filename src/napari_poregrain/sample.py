"""``Sample``: an image and what is known about it — the one type every loop passes around.

Built in exactly two places: from a file (:func:`napari_poregrain.io.read_sample`) and from napari
layers (``_widgets/_layers.sample_from_layers``). Everything downstream (``predict``, the
``Trainer``, ``measure``, the confusion matrix) takes Samples, so the data bar is cut in
:meth:`Sample.content` and nowhere else, and RGB is turned grey in :func:`preprocess.to_grey` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .classes import IGNORE


@dataclass(frozen=True)
class Sample:
    """Pixels plus labels, usable region, pixel size and name.

    ``pixels``: (Y, X) grey, (Y, X, 3|4) colour (``rgb``) or a (Z, Y, X) stack; NumPy or any
    lazy array with NumPy slicing (dask, zarr) — nothing here reads more than it is asked for.
    ``labels``: optional class map of the spatial shape (0 matrix, 1 grain, 2 pore, 255 ignore).
    ``data_bar_row``: first row of a burned-in data bar (only the rows above are usable).
    ``valid``: optional boolean mask of the spatial shape (a user's region); False = not usable.
    ``pixel_size_nm``: physical pixel size in nanometres (the engine's one length unit), or None.
    ``metadata``: what the file said (``source_path``, ``vendor``, raw vendor metadata).
    """

    pixels: Any
    labels: np.ndarray | None = None
    pixel_size_nm: float | None = None
    data_bar_row: int | None = None
    valid: np.ndarray | None = None
    name: str = ""
    rgb: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = self.shape
        for what in ("labels", "valid"):
            arr = getattr(self, what)
            if arr is not None and tuple(arr.shape) != shape:
                raise ValueError(
                    f"{self.name or 'sample'}: {what} of shape {tuple(arr.shape)} do not match "
                    f"the image's {shape}"
                )
        if self.data_bar_row is not None and not 0 < self.data_bar_row <= self.height:
            raise ValueError(f"data bar row {self.data_bar_row} outside the image's rows")

    # -- arrays without a file or a layer ---------------------------------------------------
    @classmethod
    def from_array(cls, pixels: Any, **fields: Any) -> Sample:
        """An array held in memory (or lazy) as a Sample; colour is guessed when not given."""
        if "rgb" not in fields:
            from .preprocess import is_rgb

            fields["rgb"] = is_rgb(pixels)
        return cls(pixels, **fields)

    @classmethod
    def of_labels(cls, class_map: Any, **fields: Any) -> Sample:
        """A class map alone (a label file without its image), for measuring or scoring.

        Its pixels are a read-only zero view of the map's shape (nothing to segment).
        """
        labels = np.asarray(class_map)
        return cls(np.broadcast_to(np.uint8(0), labels.shape), labels=labels, **fields)

    # -- geometry ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape: (Y, X) or (Z, Y, X); colour channels left out."""
        shape = tuple(self.pixels.shape)
        return shape[:-1] if self.rgb else shape

    @property
    def is_stack(self) -> bool:
        return len(self.shape) == 3

    @property
    def height(self) -> int:
        return self.shape[-2]

    @property
    def width(self) -> int:
        return self.shape[-1]

    @property
    def rows(self) -> int:
        """Usable rows: those above the data bar (all rows when there is none)."""
        return self.height if self.data_bar_row is None else self.data_bar_row

    # -- the one place the data bar is cut ---------------------------------------------------
    def content(self, array: Any = None) -> Any:
        """``array`` (default: the pixels) without the data-bar rows; a view, never a copy."""
        arr = self.pixels if array is None else array
        if self.data_bar_row is None:
            return arr
        colour = array is None and self.rgb
        return arr[..., : self.data_bar_row, :, :] if colour else arr[..., : self.data_bar_row, :]

    def usable_mask(
        self, rows: tuple[int, int] | None = None, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """Boolean spatial mask of the pixels to learn from or score (region, bar, 255 out).

        ``rows=(y0, y1)``: only those rows of a 2-D Sample (a band of a large, lazy one), with
        ``labels`` that band's labels when they are already read.
        """
        y0, y1 = rows if rows is not None else (0, self.shape[-2])
        if labels is None and self.labels is not None:
            labels = self.labels if rows is None else self.labels[y0:y1]
        shape = self.shape if rows is None else (y1 - y0, self.shape[-1])
        valid = None if self.valid is None else self.valid if rows is None else self.valid[y0:y1]
        mask = np.ones(shape, bool) if valid is None else np.array(valid, bool)
        if self.data_bar_row is not None and self.data_bar_row < y1:
            mask[..., max(self.data_bar_row - y0, 0) :, :] = False
        if labels is not None:
            mask &= np.asarray(labels) != IGNORE
        return mask

    def masked_labels(self) -> np.ndarray:
        """The labels with everything outside :meth:`usable_mask` set to 255 (ignore)."""
        if self.labels is None:
            raise ValueError(f"{self.name or 'sample'} has no labels")
        out = np.asarray(self.labels, np.uint8).copy()
        out[~self.usable_mask()] = IGNORE
        return out

    # -- stacks --------------------------------------------------------------------------------
    def slices(self) -> Iterator[Sample]:
        """The 2-D Samples of a stack (the sample itself when it is 2-D)."""
        if not self.is_stack:
            yield self
            return
        for z in range(self.shape[0]):
            yield replace(
                self,
                pixels=self.pixels[z],
                labels=None if self.labels is None else self.labels[z],
                valid=None if self.valid is None else self.valid[z],
                name=f"{self.name}[{z}]",
            )

    def with_labels(self, labels: np.ndarray | None) -> Sample:
        """A copy carrying ``labels`` (same pixels, region and pixel size)."""
        return replace(self, labels=labels)
