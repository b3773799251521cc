"""Porosity, pore- and grain-size distributions in physical units from a class map.

Engine module: no Qt, no napari. The analysed region is every pixel that is not ``IGNORE``
(255), not in or below a burned-in data bar and inside the optional ``valid`` mask. Area
fractions count every pixel of the region; objects are 8-connected components of one class
inside the region, measured with scikit-image's ``regionprops_table`` and kept when at least
``min_size`` pixels large:

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

Lengths are in nm, µm or pixels (``unit``); with no known pixel size everything is in pixels
and the summary says so plainly.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_components
from skimage.measure import regionprops_table

from ..callbacks import ProgressFn, StopFn, check_stop
from ..classes import GRAIN, IGNORE, MATRIX, PORE
from ..io.atomic import atomic_write_bytes

DEFAULT_MIN_SIZE = 4
"""Objects smaller than this many pixels are left out of the per-object table and statistics."""
DEFAULT_CONFIDENCE_THRESHOLD = 0.5
"""Pixels whose top-class probability is below this count as low-confidence."""
NM_UNTIL = 100.0
"""Automatic unit: nm for pixels smaller than this many nm, µm from there on."""

OBJECT_CLASSES = {"pores": PORE, "grains": GRAIN}
UNITS = ("nm", "µm", "px")
_UNIT_PER_NM = {"nm": 1.0, "µm": 1e-3}
_ASCII = {"nm": "nm", "µm": "um", "px": "px"}
PX_NOTE = "no pixel size known: lengths are in pixels (px) and areas in px²"

# column -> (kind, regionprops property): kind is how the value scales with the pixel size
_PROPS = {
    "area": ("area", "area"),
    "equivalent_diameter": ("length", "equivalent_diameter_area"),
    "perimeter": ("length", "perimeter_crofton"),
    "major_axis": ("length", "axis_major_length"),
    "minor_axis": ("length", "axis_minor_length"),
}
_COLUMNS = (
    "label",
    "centroid_row_px",
    "centroid_col_px",
    *_PROPS,
    "aspect_ratio",
    "orientation_deg",
    "touches_grain",
    "touches_edge",
)
_STRUCT = np.ones((3, 3), bool)


@dataclass
class Measurement:
    """Everything measured on one class map; lengths in ``unit``, areas in ``unit``²."""

    unit: str
    pixel_size_nm: float | None
    min_size_px: int
    region_pixels: int
    class_pixels: dict[str, int]
    excluded_pixels: dict[str, int]
    objects: dict[str, dict[str, np.ndarray]]
    """``"pores"`` / ``"grains"`` -> column -> one value per object (see module doc)."""
    object_labels: dict[str, np.ndarray] | None = None
    """Per class, the int32 object-id image (small objects removed), if asked for."""
    low_confidence: dict[str, float] | None = None
    source: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """Length of one pixel in ``unit``."""
        if self.pixel_size_nm is None:
            return 1.0
        return self.pixel_size_nm * _UNIT_PER_NM[self.unit]

    def fraction(self, name: str) -> float | None:
        """Area fraction of ``"pores"``, ``"grains"`` or ``"matrix"`` in the analysed region."""
        if self.region_pixels == 0:
            return None
        return self.class_pixels[name] / self.region_pixels


# ---------------------------------------------------------------------------------------------
# Units


def parse_pixel_size(text: str) -> float:
    """``"13.96nm"``, ``"0.01396 µm"``, ``"0.014um"`` -> nanometres; ValueError otherwise."""
    from ..io.images import length_to_nm

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9.]+)\s*", str(text))
    nm = length_to_nm(m.group(1), m.group(2)) if m else None
    if nm is None:
        raise ValueError(
            f"cannot read the pixel size {text!r}: give a positive number with a unit, "
            "e.g. 13.96nm or 0.01396um"
        )
    return nm


def choose_unit(pixel_size_nm: float | None, unit: str = "auto") -> str:
    """``"px"`` without a pixel size; ``"auto"``: nm below ``NM_UNTIL`` nm per pixel, else µm."""
    unit = {"um": "µm", "μm": "µm"}.get(unit, unit)
    if pixel_size_nm is None:
        if unit not in ("auto", "px"):
            raise ValueError(f"lengths in {unit} need a pixel size, and none is known")
        return "px"
    if not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"the pixel size must be a positive number of nm, not {pixel_size_nm}")
    if unit == "auto":
        return "nm" if pixel_size_nm < NM_UNTIL else "µm"
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; use one of auto, {', '.join(UNITS)}")
    return unit


def column_name(column: str, unit: str) -> str:
    """CSV/JSON name of a column with its unit: ``area`` -> ``area_nm2``, ``perimeter_um``."""
    u = _ASCII[unit]
    kind = _PROPS.get(column, ("", ""))[0]
    return f"{column}_{u}2" if kind == "area" else f"{column}_{u}" if kind == "length" else column


# ---------------------------------------------------------------------------------------------
# Measuring


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


def measure(
    class_map: np.ndarray,
    pixel_size_nm: float | None = None,
    *,
    valid: np.ndarray | None = None,
    data_bar_row: int | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    unit: str = "auto",
    confidence: np.ndarray | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    confidence_scale: float | None = None,
    keep_labels: bool = False,
    source: str = "",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Measurement:
    """Measure a (Y, X) class map (0 matrix, 1 grain, 2 pore, 255 ignored); see the module doc.

    ``valid``: optional boolean mask of the pixels to analyse. ``confidence``: optional
    per-pixel top-class probability (uint8 x 255 or float 0..1, see
    :func:`low_confidence_fraction`). ``keep_labels`` keeps the object-id images (for colouring
    objects by size). Raises ``ValueError`` for a wrong shape or values other than 0/1/2/255.
    """
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"expected a 2-D class map, got shape {class_map.shape}")
    if class_map.dtype.kind not in "biu":
        raise ValueError(f"the class map must hold integers, not {class_map.dtype}")
    bad = ~np.isin(class_map, (MATRIX, GRAIN, PORE, IGNORE))
    if bad.any():
        values = np.unique(class_map[bad])[:5].tolist()
        raise ValueError(f"the class map holds values {values} outside 0, 1, 2 and 255")
    if int(min_size) < 1:
        raise ValueError(f"min_size must be at least 1 pixel, not {min_size}")
    unit = choose_unit(pixel_size_nm, unit)
    region, excluded = analysed_region(class_map, valid, data_bar_row)
    steps, total = [0], len(OBJECT_CLASSES) + 1

    def tick() -> None:
        steps[0] += 1
        if progress is not None:
            progress(steps[0], total)

    masks = {name: (class_map == c) & region for name, c in OBJECT_CLASSES.items()}
    counts = {name: int(np.count_nonzero(m)) for name, m in masks.items()}
    counts["matrix"] = int(np.count_nonzero((class_map == MATRIX) & region))
    # pixels next to the image border or outside the region: objects there may be cut
    edge = ndimage.binary_dilation(~region, _STRUCT, border_value=1)
    near_grain = ndimage.binary_dilation(masks["grains"], _STRUCT)
    result = Measurement(
        unit=unit,
        pixel_size_nm=None if pixel_size_nm is None else float(pixel_size_nm),
        min_size_px=int(min_size),
        region_pixels=int(np.count_nonzero(region)),
        class_pixels=counts,
        excluded_pixels=excluded,
        objects={},
        object_labels={} if keep_labels else None,
        source=source,
    )
    for name, mask in masks.items():
        check_stop(should_stop)
        table, ids = _objects(mask, result.scale, int(min_size), edge, near_grain, name)
        result.objects[name] = table
        if keep_labels:
            result.object_labels[name] = ids
        tick()
    if confidence is not None:
        result.low_confidence = {
            "threshold": float(confidence_threshold),
            "fraction": low_confidence_fraction(
                confidence, confidence_threshold, region, scale=confidence_scale
            ),
        }
    result.summary = summarize(result)
    tick()
    return result


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
        ids, properties=("label", "centroid", *(p for _, p in _PROPS.values()), "orientation")
    )
    keep = props["area"] >= min_size
    lab = props["label"][keep].astype(np.int32)
    kept = np.zeros(int(ids.max()) + 1, bool)
    kept[lab] = True
    ids[~kept[ids]] = 0
    table: dict[str, np.ndarray] = {
        "label": lab,
        "centroid_row_px": props["centroid-0"][keep],
        "centroid_col_px": props["centroid-1"][keep],
    }
    for column, (kind, prop) in _PROPS.items():
        factor = scale**2 if kind == "area" else scale
        table[column] = props[prop][keep].astype(float) * factor
    major, minor = table["major_axis"], table["minor_axis"]
    table["aspect_ratio"] = np.divide(minor, major, out=np.ones_like(major), where=major > 0)
    angle = np.degrees(props["orientation"][keep]) + 90.0  # skimage: from the row axis
    table["orientation_deg"] = np.where(angle > 90.0, angle - 180.0, angle)
    table["touches_edge"] = np.isin(lab, ids[edge])
    if name == "pores":
        table["touches_grain"] = np.isin(lab, ids[near_grain])
    else:
        table["touches_grain"] = np.zeros(len(lab), bool)
    return {c: table[c] for c in _COLUMNS}, ids


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


# ---------------------------------------------------------------------------------------------
# Statistics


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Smallest value such that at least ``q`` % of the total weight lies at or below it."""
    order = np.argsort(values)
    cum = np.cumsum(np.asarray(weights, float)[order])
    i = int(np.searchsorted(cum, q / 100.0 * cum[-1] * (1 - 1e-12)))
    return float(np.asarray(values)[order][min(i, len(cum) - 1)])


def class_stats(table: dict[str, np.ndarray], unit: str) -> dict[str, Any]:
    """Count, total/mean area and number- and area-weighted D10/D50/D90 of one class.

    Percentiles are of the equivalent diameter: ``d50`` is the median object, ``d50_area``
    the diameter below which half of the class's (measured) area lies. None when no objects.
    """
    d, a = table["equivalent_diameter"], table["area"]
    u = _ASCII[unit]
    n = len(d)
    out: dict[str, Any] = {"count": n, f"total_area_{u}2": float(a.sum())}
    empty = n == 0
    out[f"mean_area_{u}2"] = None if empty else float(a.mean())
    out[f"mean_diameter_{u}"] = None if empty else float(d.mean())
    out[f"median_diameter_{u}"] = None if empty else float(np.median(d))
    for q in (10, 50, 90):
        out[f"d{q}_{u}"] = None if empty else float(np.percentile(d, q))
    for q in (10, 50, 90):
        out[f"d{q}_area_{u}"] = None if empty else weighted_percentile(d, a, q)
    out["mean_aspect_ratio"] = None if empty else float(table["aspect_ratio"].mean())
    out["touching_edge"] = int(table["touches_edge"].sum())
    return out


def summarize(m: Measurement) -> dict[str, Any]:
    """The JSON summary of a measurement (see :func:`write_summary_json`)."""
    u = _ASCII[m.unit]
    px_area = m.scale**2
    summary: dict[str, Any] = {
        "source": m.source,
        "unit": m.unit,
        "area_unit": f"{m.unit}²",
        "pixel_size_nm": m.pixel_size_nm,
        "unit_note": PX_NOTE if m.unit == "px" else f"lengths in {m.unit}, areas in {m.unit}²",
        "min_size_px": m.min_size_px,
        "analysed_pixels": m.region_pixels,
        f"analysed_area_{u}2": m.region_pixels * px_area,
        "excluded_pixels": dict(m.excluded_pixels),
        "pore_fraction": m.fraction("pores"),
        "grain_fraction": m.fraction("grains"),
        "matrix_fraction": m.fraction("matrix"),
    }
    for name, table in m.objects.items():
        stats = class_stats(table, m.unit)
        if name == "pores":
            stats["touching_grain"] = int(table["touches_grain"].sum())
        summary[name] = stats
    summary["low_confidence"] = m.low_confidence
    return summary


def flat_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """One-level dict (``pores_d50_nm``...) for a row of the combined CSV."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            for k, v in value.items():
                out[f"{key}_{k}"] = v
        elif value is None and key == "low_confidence":
            out["low_confidence_threshold"] = out["low_confidence_fraction"] = None
        else:
            out[key] = value
    return out


def summary_rows(m: Measurement) -> list[tuple[str, str]]:
    """(quantity, value) pairs for display, e.g. in the widget's table."""
    s, u = m.summary, _ASCII[m.unit]

    def pct(x):
        return "–" if x is None else f"{100 * x:.3g} %"

    rows = [
        (
            "unit",
            "pixels (no pixel size known)"
            if m.unit == "px"
            else f"{m.unit} (pixel {m.pixel_size_nm:.4g} nm)",
        ),
        ("analysed pixels", f"{m.region_pixels:,}"),
        ("pore fraction", pct(s["pore_fraction"])),
        ("grain fraction", pct(s["grain_fraction"])),
    ]
    for name in OBJECT_CLASSES:
        st = s[name]
        rows.append((f"{name}: count", f"{st['count']:,}"))
        for key, label in (
            (f"mean_diameter_{u}", "mean diameter"),
            (f"d10_{u}", "D10"),
            (f"d50_{u}", "D50 (median)"),
            (f"d90_{u}", "D90"),
            (f"d50_area_{u}", "D50 area-weighted"),
        ):
            rows.append((f"{name}: {label}", _fmt(st[key], m.unit)))
        if name == "pores":
            rows.append(("pores: touching a grain", f"{st['touching_grain']:,}"))
    if m.low_confidence is not None:
        lc = m.low_confidence
        rows.append((f"low confidence (< {lc['threshold']:.2f})", pct(lc["fraction"])))
    return rows


def _fmt(value: float | None, unit: str) -> str:
    return "–" if value is None else f"{value:.4g} {unit}"


def size_histogram(
    diameters: np.ndarray, areas: np.ndarray | None = None, bins: int = 20, log: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(edges, counts, area_fraction)`` of equivalent diameters, log-spaced bins by default.

    ``area_fraction`` is each bin's share of the total object area (counts when no areas).
    Empty input gives empty arrays.
    """
    d = np.asarray(diameters, float)
    if d.size == 0:
        return np.zeros(0), np.zeros(0, int), np.zeros(0)
    lo, hi = float(d.min()), float(d.max())
    if hi <= lo:
        lo, hi = lo / 1.1, hi * 1.1
    edges = np.geomspace(lo, hi, bins + 1) if log and lo > 0 else np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(d, edges)
    w = np.ones_like(d) if areas is None else np.asarray(areas, float)
    weighted, _ = np.histogram(d, edges, weights=w)
    return edges, counts, weighted / max(float(w.sum()), 1e-300)


def size_colours(
    diameters: np.ndarray, cmap: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """RGBA (N, 4) colours for objects from their diameters on a log scale (viridis)."""
    from matplotlib import colormaps

    d = np.asarray(diameters, float)
    if d.size == 0:
        return np.zeros((0, 4))
    logd = np.log10(np.maximum(d, 1e-12))
    span = float(logd.max() - logd.min())
    t = (logd - logd.min()) / span if span > 0 else np.full_like(logd, 0.5)
    return (cmap or colormaps["viridis"])(t)


# ---------------------------------------------------------------------------------------------
# Files


def objects_csv(m: Measurement) -> str:
    """Per-object CSV text: one row per pore and grain, ``class`` first, units in the headers."""
    columns = list(_COLUMNS)
    header = ["class", *(column_name(c, m.unit) for c in columns)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for name, table in m.objects.items():
        for i in range(len(table["label"])):
            row = [name[:-1]]
            for c in columns:
                v = table[c][i]
                if c == "touches_grain" and name != "pores":
                    row.append("")
                elif isinstance(v, np.bool_ | bool):
                    row.append(str(bool(v)))
                elif isinstance(v, np.integer | int):
                    row.append(str(int(v)))
                else:
                    row.append(f"{float(v):.10g}")
            writer.writerow(row)
    return buf.getvalue()


def write_objects_csv(m: Measurement, path: str | os.PathLike) -> Path:
    """Write :func:`objects_csv` atomically (UTF-8)."""
    return atomic_write_bytes(path, objects_csv(m).encode("utf-8"))


def write_summary_json(m: Measurement, path: str | os.PathLike) -> Path:
    """Write the summary (:func:`summarize`) as UTF-8 JSON, atomically."""
    text = json.dumps(_jsonable(m.summary), indent=2, ensure_ascii=False)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def write_summary_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write summary rows (e.g. ``{"file": ..., **flat_summary(...)}``) as one CSV, atomically.

    Columns are the union of the rows' keys in first-seen order; missing values are blank.
    """
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in _jsonable(row).items()})
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def export_paths(base: str | os.PathLike) -> tuple[Path, Path]:
    """``<base>_objects.csv`` and ``<base>_summary.json`` (a trailing ``_objects`` is dropped)."""
    base = Path(base)
    stem = base.stem if base.suffix.lower() in (".csv", ".json") else base.name
    stem = stem.removesuffix("_objects").removesuffix("_summary")
    return base.with_name(f"{stem}_objects.csv"), base.with_name(f"{stem}_summary.json")


def free_base(base: str | os.PathLike) -> Path:
    """``base`` or ``base-2``, ``base-3``...: the first whose export files do not exist yet."""
    objects, _ = export_paths(base)
    stem = objects.name.removesuffix("_objects.csv")
    candidate, n = objects.with_name(stem), 1
    while any(p.exists() for p in export_paths(candidate)):
        n += 1
        candidate = objects.with_name(f"{stem}-{n}")
    return candidate


def export_measurement(
    m: Measurement, base: str | os.PathLike, overwrite: bool = False
) -> list[Path]:
    """Write the per-object CSV and the summary JSON beside ``base`` (see :func:`export_paths`).

    Refuses (FileExistsError) to replace existing files unless ``overwrite``.
    """
    objects, summary = export_paths(base)
    if not overwrite:
        for p in (objects, summary):
            if p.exists():
                raise FileExistsError(f"{p} exists already")
    return [write_objects_csv(m, objects), write_summary_json(m, summary)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
