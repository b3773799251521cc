"""Porosity, pore- and grain-size distributions in physical units from a Sample's class map.

Engine module: no Qt, no napari. :func:`measure` takes a :class:`~napari_poregrain.sample.Sample`
(its ``labels`` are the class map; its pixels are not read). The analysed region is every pixel
that is not ``IGNORE`` (255), not in or below a burned-in data bar and inside the optional
``valid`` mask. Area fractions count every pixel of the region; objects are 8-connected
components of one class inside the region, measured with scikit-image's ``regionprops_table``
and kept when at least ``min_size`` pixels large:

- ``area``, ``equivalent_diameter`` (of the circle with the same area), ``perimeter``
  (Crofton estimate, robust for thin and diagonal objects);
- ``major_axis`` / ``minor_axis``: lengths of the ellipse with the same second moments;
- ``aspect_ratio`` = minor / major (1 round, towards 0 elongated; 1 for one-pixel objects);
- ``orientation_deg``: angle of the major axis from the image's horizontal, counter-clockwise
  as displayed, in (-90, 90] (0 = parallel to the image rows, e.g. bedding when horizontal;
  meaningless for round objects, aspect ratio near 1);
- ``touches_grain`` (pores only): the pore is 8-adjacent to a grain pixel;
- ``touches_edge``: the object reaches the image border or the edge of the analysed region,
  so it may be cut and its size underestimated.

Lengths are in nm, µm or pixels (``unit``, see :mod:`.units`); with no known pixel size
everything is in pixels and the summary says so plainly. Statistics live in :mod:`.summary`, files
in :mod:`.export`; their public names are re-exported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_components
from skimage.measure import regionprops_table

from ..callbacks import ProgressFn, StopFn, check_stop
from ..classes import GRAIN, IGNORE, MATRIX, PORE
from ..sample import Sample
from .export import (
    export_measurement,
    export_paths,
    first_existing,
    free_base,
    objects_csv,
    write_objects_csv,
    write_summary_csv,
    write_summary_json,
)
from .objects_blockwise import PROPS, object_table
from .summary import (
    COLUMNS,
    DEFAULT_MIN_SIZE,
    OBJECT_CLASSES,
    Measurement,
    class_stats,
    flat_summary,
    size_colours,
    size_histogram,
    summarize,
    summary_rows,
    weighted_percentile,
)
from .units import (
    NM_UNTIL,
    PX_NOTE,
    UNITS,
    choose_unit,
    column_name,
    parse_pixel_size,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_CONFIDENCE_THRESHOLD",
    "DEFAULT_MIN_SIZE",
    "NM_UNTIL",
    "OBJECT_CLASSES",
    "PX_NOTE",
    "UNITS",
    "Measurement",
    "analysed_region",
    "choose_unit",
    "class_map_sample",
    "class_stats",
    "column_name",
    "export_measurement",
    "export_paths",
    "first_existing",
    "flat_summary",
    "free_base",
    "low_confidence_fraction",
    "measure",
    "objects_csv",
    "parse_pixel_size",
    "size_colours",
    "size_histogram",
    "summarize",
    "summary_rows",
    "weighted_percentile",
    "write_objects_csv",
    "write_summary_csv",
    "write_summary_json",
]

DEFAULT_CONFIDENCE_THRESHOLD = 0.5
"""Pixels whose top-class probability is below this count as low-confidence."""

_STRUCT = np.ones((3, 3), bool)


def class_map_sample(class_map: Any, pixel_size_nm: float | None = None, **fields: Any) -> Sample:
    """A Sample of a class map alone (see :meth:`Sample.of_labels`)."""
    return Sample.of_labels(class_map, pixel_size_nm=pixel_size_nm, **fields)


class _Steps:
    """Counts finished steps and reports ``progress(done, total)``."""

    def __init__(self, progress: ProgressFn | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def analysed_region(
    class_map: np.ndarray, valid: np.ndarray | None = None, data_bar_row: int | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """Boolean mask of analysed pixels and the count of pixels excluded for each reason."""
    labelled = class_map != IGNORE
    inside = np.ones(class_map.shape, bool)
    if data_bar_row is not None:
        if not 0 <= int(data_bar_row) <= class_map.shape[0]:
            raise ValueError(
                f"data_bar_row={data_bar_row} is outside the map's {class_map.shape[0]} rows"
            )
        inside[int(data_bar_row) :] = False
    bar = int(np.count_nonzero(~inside))
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != class_map.shape:
            raise ValueError(
                f"the region mask has shape {valid.shape} but the class map {class_map.shape}"
            )
    region = inside if valid is None else inside & valid
    outside = int(np.count_nonzero(inside & ~region))
    ignored = int(np.count_nonzero(region & ~labelled))
    region &= labelled
    return region, {"data_bar": bar, "outside_region": outside, "ignore_255": ignored}


def _class_map(sample: Sample) -> np.ndarray:
    """The sample's labels as a checked (Y, X) integer map of 0/1/2/255."""
    if sample.labels is None:
        raise ValueError(f"{sample.name or 'the sample'} has no class map (labels) to measure")
    class_map = np.asarray(sample.labels)
    if class_map.ndim != 2:
        raise ValueError(f"expected a 2-D class map, got shape {class_map.shape}")
    if class_map.dtype.kind not in "biu":
        raise ValueError(f"the class map must hold integers, not {class_map.dtype}")
    bad = ~np.isin(class_map, (MATRIX, GRAIN, PORE, IGNORE))
    if bad.any():
        values = np.unique(class_map[bad])[:5].tolist()
        raise ValueError(f"the class map holds values {values} outside 0, 1, 2 and 255")
    return class_map


def measure(
    sample: Sample,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    unit: str = "auto",
    confidence: np.ndarray | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    confidence_scale: float | None = None,
    keep_labels: bool = False,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Measurement:
    """Measure a Sample's (Y, X) class map (0 matrix, 1 grain, 2 pore, 255 ignored).

    The region is ``sample.valid`` above ``sample.data_bar_row``; lengths use
    ``sample.pixel_size_nm``; ``sample.name`` is the summary's source. ``confidence``: optional
    per-pixel top-class probability (uint8 x 255 or float 0..1, see
    :func:`low_confidence_fraction`). ``keep_labels`` keeps the object-id images (for colouring
    objects by size). Raises ``ValueError`` for no labels, a wrong shape or values other than
    0/1/2/255, and :class:`~napari_poregrain.callbacks.Cancelled` when ``should_stop()``.
    """
    class_map = _class_map(sample)
    if int(min_size) < 1:
        raise ValueError(f"min_size must be at least 1 pixel, not {min_size}")
    pixel_nm = None if sample.pixel_size_nm is None else float(sample.pixel_size_nm)
    unit = choose_unit(pixel_nm, unit)
    region, excluded = analysed_region(class_map, sample.valid, sample.data_bar_row)
    masks = {name: (class_map == c) & region for name, c in OBJECT_CLASSES.items()}
    counts = {name: int(np.count_nonzero(m)) for name, m in masks.items()}
    counts["matrix"] = int(np.count_nonzero((class_map == MATRIX) & region))
    result = Measurement(
        unit=unit,
        pixel_size_nm=pixel_nm,
        min_size_px=int(min_size),
        region_pixels=int(np.count_nonzero(region)),
        class_pixels=counts,
        excluded_pixels=excluded,
        objects={},
        object_labels={} if keep_labels else None,
        source=sample.name,
    )
    steps = _Steps(progress, len(OBJECT_CLASSES) + 1)
    _measure_objects(result, masks, region, steps, should_stop)
    if confidence is not None:
        result.low_confidence = {
            "threshold": float(confidence_threshold),
            "fraction": low_confidence_fraction(
                confidence, confidence_threshold, region, scale=confidence_scale
            ),
        }
    result.summary = summarize(result)
    steps.tick()
    return result


def _measure_objects(
    result: Measurement,
    masks: dict[str, np.ndarray],
    region: np.ndarray,
    steps: _Steps,
    should_stop: StopFn | None,
) -> None:
    """Fill ``result.objects`` (and ``object_labels``) class by class, one step each."""
    # pixels next to the image border or outside the region: objects there may be cut
    edge = ndimage.binary_dilation(~region, _STRUCT, border_value=1)
    near_grain = ndimage.binary_dilation(masks["grains"], _STRUCT)
    for name, mask in masks.items():
        check_stop(should_stop)
        table, ids = _objects(mask, result.scale, result.min_size_px, edge, near_grain, name)
        result.objects[name] = table
        if result.object_labels is not None:
            result.object_labels[name] = ids
        steps.tick()


def _objects(
    mask: np.ndarray,
    scale: float,
    min_size: int,
    edge: np.ndarray,
    near_grain: np.ndarray,
    name: str,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-object columns of one class (scaled) and its object-id image."""
    ids = label_components(mask, connectivity=2).astype(np.int32, copy=False)
    props = regionprops_table(
        ids, properties=("label", "centroid", *PROPS.values(), "orientation")
    )
    keep = props["area"] >= min_size
    lab = props["label"][keep].astype(np.int32)
    kept = np.zeros(int(ids.max()) + 1, bool)
    kept[lab] = True
    ids[~kept[ids]] = 0
    grain = np.isin(lab, ids[near_grain]) if name == "pores" else np.zeros(len(lab), bool)
    return object_table(props, keep, scale, np.isin(lab, ids[edge]), grain), ids


def low_confidence_fraction(
    confidence: np.ndarray,
    threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    region: np.ndarray | None = None,
    scale: float | None = None,
) -> float | None:
    """Fraction of (region) pixels whose confidence is below ``threshold`` (0..1).

    ``scale`` is the value meaning probability 1: 255 by default for integer maps (the
    segmentation widget's uint8 x 255 layer), 1 for float maps. None when no pixel is analysed.
    """
    conf = np.asarray(confidence)
    if region is not None and conf.shape != region.shape:
        raise ValueError(
            f"the confidence map has shape {conf.shape} but the class map {region.shape}"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the confidence threshold must be within 0..1, not {threshold}")
    if scale is None:
        scale = 255.0 if conf.dtype.kind in "biu" else 1.0
    values = conf if region is None else conf[region]
    if values.size == 0:
        return None
    return float(np.count_nonzero(values < threshold * scale) / values.size)
