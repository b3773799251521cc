"""Length units of measurements: the one place pixel sizes are parsed and lengths converted.

The engine's length unit is the nanometre (``Sample.pixel_size_nm``); tables and summaries give
lengths in nm, µm or pixels and areas in their square. Column kinds say how a column scales.
"""

from __future__ import annotations

import math
import re

NM_UNTIL = 100.0
"""Automatic unit: nm for pixels smaller than this many nm, µm from there on."""
UNITS = ("nm", "µm", "px")
PX_NOTE = "no pixel size known: lengths are in pixels (px) and areas in px²"
UNIT_PER_NM = {"nm": 1.0, "µm": 1e-3}
_ASCII = {"nm": "nm", "µm": "um", "px": "px"}
_ALIASES = {"um": "µm", "μm": "µm"}

COLUMN_KINDS = {
    "area": "area",
    "equivalent_diameter": "length",
    "perimeter": "length",
    "major_axis": "length",
    "minor_axis": "length",
}
"""Per-object columns with a physical size: ``"area"`` scales with the pixel area."""


SI_NM = {"pm": 1e-3, "Å": 0.1, "nm": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3, "mm": 1e6, "m": 1e9}
"""Length units of a typed pixel size, case-sensitive as SI writes them (``mm`` is not ``Mm``)."""
PIXEL_SIZE_RANGE_NM = (1e-3, 1e6)
"""A pixel size outside 1 pm .. 1 mm is a typing error, not an image."""


def parse_pixel_size(text: str) -> float:
    """``"13.96nm"``, ``"0.01396 µm"``, ``"0.014um"`` -> nanometres; ValueError otherwise.

    Units are case-sensitive (:data:`SI_NM`: ``Mm`` or ``NM`` are refused, not read as ``mm`` or
    ``nm``), and the size must lie in :data:`PIXEL_SIZE_RANGE_NM` (1 pm to 1 mm).
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9.]+)\s*", str(text))
    if m is None:
        raise ValueError(
            f"cannot read the pixel size {text!r}: give a positive number with a unit, "
            "e.g. 13.96nm or 0.01396um"
        )
    unit = m.group(2).replace("\u212b", "Å")  # the angstrom sign
    if unit not in SI_NM:
        raise ValueError(
            f"cannot read the pixel size {text!r}: unknown unit {unit!r} (units are "
            f"case-sensitive: {', '.join(SI_NM)})"
        )
    nm = float(m.group(1)) * SI_NM[unit]
    low, high = PIXEL_SIZE_RANGE_NM
    if not low <= nm <= high:
        raise ValueError(f"the pixel size {text.strip()} is outside 1 pm to 1 mm")
    return nm


def choose_unit(pixel_size_nm: float | None, unit: str = "auto") -> str:
    """``"px"`` without a pixel size; ``"auto"``: nm below ``NM_UNTIL`` nm per pixel, else µm."""
    unit = _ALIASES.get(unit, unit)
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


def ascii_unit(unit: str) -> str:
    """The unit as used in column and key names: ``µm`` -> ``um``."""
    return _ASCII[unit]


def pixel_length(pixel_size_nm: float | None, unit: str) -> float:
    """Length of one pixel in ``unit`` (1 when no pixel size is known: lengths in pixels)."""
    if pixel_size_nm is None:
        return 1.0
    return pixel_size_nm * UNIT_PER_NM[unit]


def scale_factor(column: str, pixel: float) -> float:
    """What a pixel-unit value of ``column`` is multiplied by (``pixel`` = one pixel's length)."""
    kind = COLUMN_KINDS.get(column)
    return pixel**2 if kind == "area" else pixel if kind == "length" else 1.0


def column_name(column: str, unit: str) -> str:
    """CSV/JSON name of a column with its unit: ``area`` -> ``area_nm2``, ``perimeter_um``."""
    u = _ASCII[unit]
    kind = COLUMN_KINDS.get(column, "")
    return f"{column}_{u}2" if kind == "area" else f"{column}_{u}" if kind == "length" else column


PIXEL_UNITS = ("", "none", "pixel", "pixels", "px")
"""Unit names that mean "no physical size" (napari's default unit is ``pixel``)."""


def scale_to_nm(scale, units) -> tuple[float, ...] | None:
    """Pixel size in nm per axis from a layer's ``scale`` and its ``units``; None for pixels.

    ``units``: pint units (as napari gives them) or unit names, any length unit (nm, µm, mm...);
    None or napari's default ``pixel`` means the scale is not physical (lengths in px). ValueError
    (one sentence) for a unit that is not a length or for axes of which only some have a unit.
    """
    scale = [float(s) for s in scale]
    names = [str(u if u is not None else "").strip() for u in (units or [None] * len(scale))]
    pixel = [n.lower() in PIXEL_UNITS for n in names]
    if all(pixel):
        return None
    if any(pixel):
        raise ValueError(f"the axes have units {', '.join(names)}: some in pixels, some not")
    return tuple(_to_nm(s, u, n) for s, u, n in zip(scale, units, names, strict=True))


def _to_nm(value: float, unit, name: str) -> float:
    """``value`` ``unit`` in nm (pint); ValueError when ``unit`` is not a length."""
    import pint

    registry = getattr(unit, "_REGISTRY", None) or pint.get_application_registry()
    try:
        nm = (value * registry.Unit(name.replace("µ", "u").replace("μ", "u"))).to("nm")
    except (pint.errors.PintError, AttributeError, TypeError, ValueError):
        raise ValueError(f"cannot convert the unit {name!r} to a length in nm") from None
    return float(f"{nm.magnitude:.12g}")
