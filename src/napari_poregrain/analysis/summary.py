"""The :class:`Measurement` record and its statistics: percentiles, summaries, histograms, colours.

Engine module: no Qt, no napari. :func:`~napari_poregrain.analysis.measure.measure` fills a
Measurement; this module turns it into the JSON summary, display rows and histograms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..classes import GRAIN, PORE
from .units import COLUMN_KINDS, PX_NOTE, ascii_unit, pixel_length

DEFAULT_MIN_SIZE = 4
"""Objects smaller than this many pixels are left out of the per-object table and statistics."""

OBJECT_CLASSES = {"pores": PORE, "grains": GRAIN}
COLUMNS = (
    "label",
    "centroid_row_px",
    "centroid_col_px",
    *COLUMN_KINDS,
    "aspect_ratio",
    "orientation_deg",
    "touches_grain",
    "touches_edge",
)
"""Per-object columns, in table order (see :mod:`napari_poregrain.analysis.measure`)."""


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
        return pixel_length(self.pixel_size_nm, self.unit)

    def fraction(self, name: str) -> float | None:
        """Area fraction of ``"pores"``, ``"grains"`` or ``"matrix"`` in the analysed region."""
        if self.region_pixels == 0:
            return None
        return self.class_pixels[name] / self.region_pixels


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
    u = ascii_unit(unit)
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
    """The JSON summary of a measurement (see :func:`export.write_summary_json`)."""
    u = ascii_unit(m.unit)
    summary: dict[str, Any] = {
        "source": m.source,
        "unit": m.unit,
        "area_unit": f"{m.unit}²",
        "pixel_size_nm": m.pixel_size_nm,
        "unit_note": PX_NOTE if m.unit == "px" else f"lengths in {m.unit}, areas in {m.unit}²",
        "min_size_px": m.min_size_px,
        "analysed_pixels": m.region_pixels,
        f"analysed_area_{u}2": m.region_pixels * m.scale**2,
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


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.3g} %"


def _fmt(value: float | None, unit: str) -> str:
    return "–" if value is None else f"{value:.4g} {unit}"


_STAT_LABELS = (
    ("mean_diameter_{u}", "mean diameter"),
    ("d10_{u}", "D10"),
    ("d50_{u}", "D50 (median)"),
    ("d90_{u}", "D90"),
    ("d50_area_{u}", "D50 area-weighted"),
)


def summary_rows(m: Measurement) -> list[tuple[str, str]]:
    """(quantity, value) pairs for display, e.g. in the widget's table."""
    s, u = m.summary, ascii_unit(m.unit)
    unit = (
        "pixels (no pixel size known)"
        if m.unit == "px"
        else f"{m.unit} (pixel {m.pixel_size_nm:.4g} nm)"
    )
    rows = [
        ("unit", unit),
        ("analysed pixels", f"{m.region_pixels:,}"),
        ("pore fraction", _pct(s["pore_fraction"])),
        ("grain fraction", _pct(s["grain_fraction"])),
    ]
    for name in OBJECT_CLASSES:
        st = s.get(name)
        if st is None:
            rows.append((f"{name}: objects", "not measured"))
            continue
        rows.append((f"{name}: count", f"{st['count']:,}"))
        for key, label in _STAT_LABELS:
            rows.append((f"{name}: {label}", _fmt(st[key.format(u=u)], m.unit)))
        if name == "pores":
            rows.append(("pores: touching a grain", f"{st['touching_grain']:,}"))
    if m.low_confidence is not None:
        lc = m.low_confidence
        rows.append((f"low confidence (< {lc['threshold']:.2f})", _pct(lc["fraction"])))
    return rows


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
