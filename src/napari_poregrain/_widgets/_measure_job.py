"""What the measure dock measures, without Qt: the Sample from its layers and the one call."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..analysis.measure import measure, parse_pixel_size
from ..sample import Sample
from ._layers import geometry, sample_from_layers, scale_nm, spatial_shape
from ._progress import StepProgress

PIXEL_WORDS = ("px", "pixel", "pixels")


def layer_pixel_nm(layer) -> float | None:
    """The pixel size of a layer's scale in nm (None: no scale); ValueError if not square."""
    sizes = scale_nm(layer)
    if sizes is None:
        return None
    sy, sx = sizes
    if not math.isclose(sy, sx, rel_tol=1e-6):
        raise ValueError(
            f"layer {layer.name!r} has different pixel sizes in y and x ({sy:g}, {sx:g} nm)"
        )
    return sy


def pixel_size_nm(text: str, grains, pores) -> float | None:
    """Typed pixel size ("px": none), else the labels' scale (grains and pores must agree)."""
    text = text.strip()
    if text:
        return None if text.lower() in PIXEL_WORDS else parse_pixel_size(text)
    sizes = [layer_pixel_nm(ly) for ly in (pores, grains) if ly is not None]
    if len(sizes) == 2 and (
        (sizes[0] is None) != (sizes[1] is None)
        or (sizes[0] is not None and not math.isclose(sizes[0], sizes[1], rel_tol=1e-6))
    ):
        raise ValueError("the grains and pores layers have different scales")
    return sizes[0]


def _checked_labels(grains, pores) -> tuple[Any, tuple[int, ...]]:
    """The reference layer (pores, else grains) and the labels' shape; ValueError if unusable."""
    if grains is None and pores is None:
        raise ValueError("choose a grains or a pores Labels layer (or both)")
    for ly in (grains, pores):
        if ly is not None and ly.data.ndim != 2:
            raise ValueError(f"layer {ly.name!r} is not 2-D (shape {tuple(ly.data.shape)})")
    ref = pores if pores is not None else grains
    return ref, tuple(ref.data.shape)


def _bar_row(image, shape: tuple[int, ...]) -> int | None:
    """The image's data-bar row (None without an image); its shape must be the labels'."""
    if image is None:
        return None
    ishape = spatial_shape(image)[-2:]
    if ishape != shape:
        raise ValueError(f"image {image.name!r} has shape {ishape} but the labels {shape}")
    return image.metadata.get("data_bar_row")


def confidence_of(layer, shape: tuple[int, ...]) -> tuple[np.ndarray | None, float | None]:
    """The confidence layer's data and scale (None, None without one)."""
    if layer is None:
        return None, None
    conf = np.asarray(layer.data)
    if conf.shape != shape:
        raise ValueError(f"confidence {layer.name!r} has shape {conf.shape}, not {shape}")
    return conf, layer.metadata.get("confidence_scale")


class MeasureJob:
    """The Sample and options of one measurement; calling it measures (worker thread)."""

    def __init__(self, sample: Sample, options: dict[str, Any], geometry: dict) -> None:
        self.sample, self.options, self.geometry = sample, options, geometry

    @classmethod
    def from_layers(
        cls, grains, pores, *, image=None, region=None, confidence=None, pixel_text="", **options
    ) -> MeasureJob:
        """Read the layers (GUI thread): the class map, region, bar, pixel size, confidence.

        ``options``: ``min_size``, ``confidence_threshold`` (passed to :func:`measure`).
        """
        ref, shape = _checked_labels(grains, pores)
        names = [f"{k}={ly.name}" for k, ly in (("grains", grains), ("pores", pores)) if ly]
        sample = sample_from_layers(ref, grains, pores, region, name="layers " + ", ".join(names))
        if sample.valid is not None and not sample.valid.any():
            raise ValueError(f"the shapes of {region.name!r} do not cover the labels")
        bar = _bar_row(image, shape)
        sample = replace(
            sample,
            pixel_size_nm=pixel_size_nm(pixel_text, grains, pores),
            data_bar_row=sample.data_bar_row if bar is None else bar,
        )
        conf, conf_scale = confidence_of(confidence, shape)
        options.update(confidence=conf, confidence_scale=conf_scale)
        return cls(sample, options, geometry(ref, 2))

    def __call__(self, emit, should_stop):
        return measure(
            self.sample,
            **self.options,
            keep_labels=True,
            progress=StepProgress(emit),
            should_stop=should_stop,
        )
