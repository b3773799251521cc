"""Layers <-> Samples: the one place Samples are built from napari layers, and label layers back.

Label encoding: one uint8 map (0 matrix, 1 grain, 2 pore, 255 ignore) made from a ``grains`` and a
``pores`` layer (:func:`labels_from_layers`), split back by :func:`class_masks`.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

import numpy as np
from napari.layers import Labels, Shapes

from ..analysis.units import scale_to_nm
from ..classes import GRAIN, IGNORE, LAYER_COLOURS, LAYER_NAMES, MATRIX, PORE
from ..sample import Sample


def real_viewer(viewer):
    """The viewer behind the ``PublicOnlyProxy`` napari hands a plugin's dock (else ``viewer``).

    Every attribute read through the proxy makes a new proxy object, so a weak reference to
    ``viewer.layers`` dies at once and ``layer is other`` never holds between two reads; docks
    and the brush keep the object behind it (wrapt's public ``__wrapped__``).
    """
    return getattr(viewer, "__wrapped__", viewer)


def checksum(data: Any) -> str:
    """Short digest of an array's bytes (tells an untouched layer from an edited one)."""
    return hashlib.blake2b(np.ascontiguousarray(data).data, digest_size=16).hexdigest()


def untouched(layer, key: str, shape: tuple[int, ...]) -> bool:
    """``layer`` is a Labels layer of ``shape`` whose data still has the checksum under ``key``
    in its metadata (written by this plugin and not edited since)."""
    return (
        isinstance(layer, Labels)
        and tuple(layer.data.shape) == tuple(shape)
        and layer.metadata.get(key) == checksum(np.asarray(layer.data))
    )


def layer_pixels(layer) -> Any:
    """The layer's data as it is: the highest-resolution level of a multiscale layer."""
    return layer.data[0] if layer.multiscale else layer.data


def spatial_shape(layer) -> tuple[int, ...]:
    """Shape of the layer's pixel grid (colour channels left out)."""
    shape = tuple(layer_pixels(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


class LayerChoices:
    """Choices callable for a ComboBox: the viewer's layers of one kind, by name."""

    def __init__(self, viewer, kind: type, first: tuple[str, Any] | None = None) -> None:
        self.viewer, self.kind, self.first = viewer, kind, first

    def __call__(self, _widget=None) -> list[tuple[str, Any]]:
        found = [(ly.name, ly) for ly in self.viewer.layers if isinstance(ly, self.kind)]
        return found if self.first is None else [self.first, *found]


# -- labels ------------------------------------------------------------------------------------
def class_pixels(layer_data: np.ndarray) -> np.ndarray:
    """Pixels a grains or pores layer marks as its class: non-zero and not 255 (unlabelled)."""
    return (layer_data != 0) & (layer_data != IGNORE)


def labels_from_layers(grains: np.ndarray, pores: np.ndarray) -> np.ndarray:
    """One uint8 map 0 matrix / 1 grain / 2 pore / 255 unlabelled from two label arrays.

    Any value but 0 and 255 in ``grains`` is grain, in ``pores`` is pore; a pixel of neither
    class that holds 255 in either layer is unlabelled (a label map opened with 255; painting
    a pixel labels it); a pixel in both classes is refused with a clear message.
    """
    grains, pores = np.asarray(grains), np.asarray(pores)
    if grains.shape != pores.shape:
        raise ValueError(
            f"the grains layer has shape {grains.shape} but the pores layer {pores.shape}"
        )
    g, p = class_pixels(grains), class_pixels(pores)
    if np.any(g & p):
        raise ValueError(f"{overlap_text(g & p)}; erase them from one layer first")
    out = np.full(grains.shape, MATRIX, np.uint8)
    out[(grains == IGNORE) | (pores == IGNORE)] = IGNORE
    out[g] = GRAIN
    out[p] = PORE
    return out


def overlap_text(both: np.ndarray) -> str:
    """The count and bounding box of a mask of pixels marked both grain and pore, in words."""
    where = np.nonzero(both)
    axes = ("slices", "rows", "columns")[-both.ndim :] if both.ndim <= 3 else ()
    box = ", ".join(
        f"{name} {int(w.min())}-{int(w.max())}" for name, w in zip(axes, where, strict=False)
    )
    return f"{len(where[0])} pixels are marked both grain and pore ({box})"


def _pair_labels(grains, pores, shape: tuple[int, ...]) -> np.ndarray:
    """The class map of a grains/pores pair (either may be None: no pixel of that class)."""
    arrays = [None if ly is None else np.asarray(layer_pixels(ly)) for ly in (grains, pores)]
    like = next(a for a in arrays if a is not None)
    g, p = (np.zeros(like.shape, np.uint8) if a is None else a for a in arrays)
    labels = labels_from_layers(g, p)
    if labels.shape != shape:
        raise ValueError(
            f"the grains and pores layers are {_shape_text(labels.shape)} "
            f"but the image is {_shape_text(shape)}"
        )
    return labels


def class_masks(class_map: np.ndarray) -> dict[int, np.ndarray]:
    """uint8 arrays for the ``grains`` and ``pores`` layers of a class map: 1 where the class
    is, 255 where the map is unlabelled (in both layers), else 0."""
    class_map = np.asarray(class_map)
    unlabelled = class_map == IGNORE
    masks = {}
    for c in (GRAIN, PORE):
        mask = (class_map == c).astype(np.uint8)
        mask[unlabelled] = IGNORE
        masks[c] = mask
    return masks


# -- geometry ----------------------------------------------------------------------------------
def scale_nm(layer) -> tuple[float, float] | None:
    """Pixel size in nm along y and x from the layer's scale and units; None without units.

    Any length unit napari's pint units give is converted (:func:`analysis.units.scale_to_nm`);
    a layer without units (napari's default ``pixel``) has no pixel size: lengths in px.
    """
    units = getattr(layer, "units", None)  # napari >= 0.6: pint units
    try:
        return scale_to_nm(layer.scale[-2:], None if units is None else tuple(units[-2:]))
    except ValueError as exc:
        raise ValueError(f"layer {layer.name!r}: {exc}") from None


def square_pixel_nm(sizes: tuple[float, float] | None) -> float | None:
    """The one pixel size of square pixels; None for no scale or non-square pixels."""
    if sizes is None or not math.isclose(sizes[0], sizes[1], rel_tol=1e-6):
        return None
    return sizes[0]


def region_mask(region, layer, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask, in ``layer``'s pixel grid, of the pixels inside any shape of ``region``.

    Vertices are mapped through world space (each layer's scale, translate, rotation), so a region
    drawn over a scaled image selects the right pixels; on a stack it applies to every slice.
    """
    if len(region.data) == 0:
        raise ValueError(f"the region layer {region.name!r} holds no shapes; draw one first")
    mapped = [
        np.array([layer.world_to_data(region.data_to_world(p))[-2:] for p in np.asarray(v)])
        for v in region.data
    ]
    # A detached layer with the shapes in pixel coordinates rasterises them (napari's own code:
    # ellipses are drawn as ellipses, not their bounding boxes).
    flat = Shapes(mapped, shape_type=list(region.shape_type))
    mask = np.asarray(flat.to_masks(mask_shape=shape[-2:]), bool).any(axis=0)
    return np.broadcast_to(mask, shape) if len(shape) > 2 else mask


def check_aligned(layer, image_layer) -> None:
    """ValueError in one sentence when ``layer`` is not drawn over ``image_layer`` pixel for
    pixel (another scale or offset: a map from another image or opened without its scale)."""
    if layer is None or layer is image_layer:
        return
    n = len(spatial_shape(image_layer))
    for what in ("scale", "translate"):
        mine, theirs = (np.asarray(getattr(ly, what)[-n:], float) for ly in (layer, image_layer))
        if not np.allclose(mine, theirs, rtol=1e-6, atol=1e-9 * np.abs(theirs).max(initial=1)):
            raise ValueError(
                f"the layer {layer.name!r} has {what} {_vector(mine)} but {image_layer.name!r} "
                f"has {_vector(theirs)}: they are not drawn over each other pixel for pixel "
                "(open a label map beside its image, or give it the image's scale)"
            )


def _vector(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def geometry(layer, ndim: int) -> dict:
    """Scale, translate and units of ``layer``'s last ``ndim`` axes, for a layer laid over it.

    Copying the units too keeps napari from dropping them ("inconsistent units across layers").
    """
    geo = {"scale": tuple(layer.scale[-ndim:]), "translate": tuple(layer.translate[-ndim:])}
    units = getattr(layer, "units", None)  # napari >= 0.6
    if units is not None:
        geo["units"] = tuple(str(u) for u in units[-ndim:])
    return geo


UNLABELLED_COLOUR = (0.5, 0.5, 0.5, 0.35)


def class_colours(cls: int) -> dict:
    """A class layer's colours: its class colour, unlabelled (255) faint grey in ``grains``."""
    unlabelled = UNLABELLED_COLOUR if cls == GRAIN else "transparent"
    return {None: "transparent", 0: "transparent", 1: LAYER_COLOURS[cls], IGNORE: unlabelled}


def layer_kwargs(cls: int, image_layer) -> dict:
    """Name, colour and geometry for a class layer aligned with ``image_layer``."""
    from napari.utils.colormaps import DirectLabelColormap

    return {
        "name": LAYER_NAMES[cls],
        **geometry(image_layer, len(spatial_shape(image_layer))),
        "colormap": DirectLabelColormap(color_dict=class_colours(cls)),
        "opacity": 0.5,
    }


# -- the one place Samples are built from layers ----------------------------------------------
def sample_from_layers(
    image_layer, grains=None, pores=None, region=None, *, name: str | None = None
) -> Sample:
    """A :class:`Sample` of ``image_layer`` (an Image, or a Labels layer when only labels matter).

    Pixels: the layer's data (highest-resolution level; a lazy array stays lazy), ``rgb`` and
    ``data_bar_row`` (``layer.metadata``) as the layer says, pixel size from its scale and units
    (:func:`scale_nm`; no units or non-square pixels: None). Labels: the grains/pores pair
    (either may be None). ``valid``: the shapes of ``region``. Raises ValueError in one sentence.
    """
    shape = spatial_shape(image_layer)
    labels = None
    if grains is not None or pores is not None:
        labels = _pair_labels(grains, pores, shape)
        for layer in (grains, pores):
            check_aligned(layer, image_layer)
    return Sample(
        pixels=layer_pixels(image_layer),
        labels=labels,
        pixel_size_nm=square_pixel_nm(scale_nm(image_layer)),
        data_bar_row=image_layer.metadata.get("data_bar_row"),
        valid=None if region is None else region_mask(region, image_layer, shape),
        name=image_layer.name if name is None else name,
        rgb=bool(getattr(image_layer, "rgb", False)),
        metadata={"layer": image_layer.name},
    )


class NamePreferences:
    """Layer ComboBoxes that pick a layer by its name until the user picks one by hand.

    ``prefer``: combo -> test of a layer name; on :meth:`refresh`, a combo the user has not set
    (or whose layer is gone) takes the first layer whose name passes its test.
    """

    def __init__(self, prefer: dict) -> None:
        self.prefer = prefer
        self.picked: set[int] = set()
        self._resetting = False
        for combo in prefer:
            combo.changed.connect(functools.partial(self._picked_by_hand, combo))

    def _picked_by_hand(self, combo, *_) -> None:
        if not self._resetting:
            self.picked.add(id(combo))

    def refresh(self, layers: list) -> None:
        """Reset every combo's choices and apply the name preferences."""
        self._resetting = True
        try:
            for combo, prefer in self.prefer.items():
                old = combo.value
                combo.reset_choices()
                kept = old is None or any(old is ly for ly in layers)
                if id(combo) in self.picked and kept:
                    continue
                for value in combo.choices:
                    if value is not None and prefer(value.name):
                        combo.value = value
                        break
        finally:
            self._resetting = False
