"""What the measure dock measures, without Qt: the Sample from its layers and the one call.

A stack is measured slice by slice (objects do not cross slices) and in total: the total's
``summary["slices"]`` lists each slice's fractions and counts. Lazy (dask/zarr) label layers
are measured block-wise (:mod:`..analysis.blockwise`): the same fractions and object tables,
without the object-id images (no colouring by size).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..analysis.blockwise import is_lazy, measure_blockwise
from ..analysis.measure import measure, parse_pixel_size
from ..analysis.summary import Measurement, summarize
from ..sample import Sample
from ._layers import check_aligned, geometry, sample_from_layers, scale_nm, spatial_shape
from ._lazy import lazy_pair, lazy_pair_sample
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
        if ly is not None and ly.data.ndim not in (2, 3):
            shape = tuple(ly.data.shape)
            raise ValueError(f"layer {ly.name!r} is neither 2-D nor a stack (shape {shape})")
    ref = pores if pores is not None else grains
    return ref, tuple(ref.data.shape)


def _bar_row(image, shape: tuple[int, ...]) -> int | None:
    """The image's data-bar row (None without an image); its shape must be the labels'."""
    if image is None:
        return None
    ishape = spatial_shape(image)[-len(shape) :]
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
        if image is not None and spatial_shape(image) == shape:
            for layer in (grains, pores):
                check_aligned(layer, image)
        names = [f"{k}={ly.name}" for k, ly in (("grains", grains), ("pores", pores)) if ly]
        name = "layers " + ", ".join(names)
        if lazy_pair(grains, pores):
            if len(shape) != 2:
                raise ValueError("a lazy (zarr or dask) stack cannot be measured; use a 2-D image")
            sample = lazy_pair_sample(ref, grains, pores, region, name)
        else:
            sample = sample_from_layers(ref, grains, pores, region, name=name)
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
        return cls(sample, options, geometry(ref, len(shape)))

    def __call__(self, emit, should_stop) -> Measurement:
        if is_lazy(self.sample.labels):
            options = dict(self.options, progress=StepProgress(emit), should_stop=should_stop)
            return measure_blockwise(self.sample, **options)
        if not self.sample.is_stack:
            return measure(
                self.sample,
                **self.options,
                keep_labels=True,
                progress=StepProgress(emit),
                should_stop=should_stop,
            )
        conf = self.options.pop("confidence", None)
        parts = []
        slices = list(self.sample.slices())
        for z, part in enumerate(slices):
            options = dict(self.options, confidence=None if conf is None else conf[z])
            parts.append(measure(part, **options, keep_labels=True, should_stop=should_stop))
            emit((z + 1, len(slices)))
        return combine_slices(parts, self.sample.name)


def _stacked_labels(parts: list[Measurement], name: str) -> tuple[list, np.ndarray]:
    """Each slice's object labels shifted past the previous slices' and the stacked id image."""
    labels, images, offset = [], [], 0
    for m in parts:
        ids = m.object_labels[name]
        labels.append(m.objects[name]["label"] + offset)
        images.append(np.where(ids > 0, ids + offset, 0).astype(np.int32))
        offset += int(ids.max(initial=0))
    return labels, np.stack(images)


def _summed(parts: list[Measurement], what: str) -> dict[str, int]:
    counts = [getattr(m, what) for m in parts]
    return {k: sum(c[k] for c in counts) for k in counts[0]}


def combine_slices(parts: list[Measurement], source: str) -> Measurement:
    """The total of a stack's slice measurements; ``summary["slices"]`` holds each slice's."""
    first = parts[0]
    total = Measurement(
        unit=first.unit,
        pixel_size_nm=first.pixel_size_nm,
        min_size_px=first.min_size_px,
        region_pixels=sum(m.region_pixels for m in parts),
        class_pixels={k: sum(m.class_pixels[k] for m in parts) for k in first.class_pixels},
        excluded_pixels={
            k: sum(m.excluded_pixels[k] for m in parts) for k in first.excluded_pixels
        },
        objects={},
        object_labels={},
        source=source,
    )
    for name, table in first.objects.items():
        labels, total.object_labels[name] = _stacked_labels(parts, name)
        total.objects[name] = {
            col: np.concatenate([m.objects[name][col] for m in parts]) for col in table
        }
        total.objects[name]["label"] = np.concatenate(labels)
    if first.low_confidence is not None and total.region_pixels:
        fractions = [(m.low_confidence["fraction"] or 0.0) * m.region_pixels for m in parts]
        total.low_confidence = {
            "threshold": first.low_confidence["threshold"],
            "fraction": sum(fractions) / total.region_pixels,
        }
    total.summary = summarize(total)
    total.summary["slices"] = [slice_row(z, m) for z, m in enumerate(parts)]
    return total


def slice_row(z: int, m: Measurement) -> dict[str, Any]:
    """One slice's line of a stack's summary: its fractions and object counts."""
    return {
        "slice": z,
        "analysed_pixels": m.region_pixels,
        "pore_fraction": m.fraction("pores"),
        "grain_fraction": m.fraction("grains"),
        **{f"{name}_count": len(table["label"]) for name, table in m.objects.items()},
    }
