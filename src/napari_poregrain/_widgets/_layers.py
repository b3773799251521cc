"""Conversions between napari layers and the package's single label-map encoding."""

from __future__ import annotations

import numpy as np

from ..classes import GRAIN, LAYER_COLOURS, LAYER_NAMES, MATRIX, PORE


def labels_from_layers(grains: np.ndarray, pores: np.ndarray) -> np.ndarray:
    """One uint8 map 0 matrix / 1 grain / 2 pore from two label arrays.

    Any non-zero value in ``grains`` is grain, in ``pores`` is pore; a pixel in
    both is refused with a clear message.
    """
    grains, pores = np.asarray(grains), np.asarray(pores)
    if grains.shape != pores.shape:
        raise ValueError(
            f"the grains layer has shape {grains.shape} but the pores layer {pores.shape}"
        )
    g, p = grains != 0, pores != 0
    both = int(np.count_nonzero(g & p))
    if both:
        raise ValueError(
            f"{both} pixels are marked both grain and pore; erase them from one layer first"
        )
    out = np.full(grains.shape, MATRIX, np.uint8)
    out[g] = GRAIN
    out[p] = PORE
    return out


def class_masks(class_map: np.ndarray) -> dict[int, np.ndarray]:
    """uint8 0/1 arrays for the ``grains`` and ``pores`` layers of a class map."""
    return {c: (class_map == c).astype(np.uint8) for c in (GRAIN, PORE)}


def geometry(layer, ndim: int) -> dict:
    """Scale, translate and units of ``layer``'s last ``ndim`` axes, for a layer laid over it.

    Copying the units too keeps napari from dropping them ("inconsistent units across layers").
    """
    geo = {"scale": tuple(layer.scale[-ndim:]), "translate": tuple(layer.translate[-ndim:])}
    units = getattr(layer, "units", None)  # napari >= 0.6
    if units is not None:
        geo["units"] = tuple(str(u) for u in units[-ndim:])
    return geo


def layer_kwargs(cls: int, image_layer) -> dict:
    """Name, colour and geometry for a class layer aligned with ``image_layer``."""
    from napari.utils.colormaps import DirectLabelColormap

    ndim = image_layer.data.ndim - (1 if image_layer.rgb else 0)
    return {
        "name": LAYER_NAMES[cls],
        **geometry(image_layer, ndim),
        "colormap": DirectLabelColormap(
            color_dict={None: "transparent", 0: "transparent", 1: LAYER_COLOURS[cls]}
        ),
        "opacity": 0.5,
    }
