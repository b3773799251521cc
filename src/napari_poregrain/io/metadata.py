"""Physical pixel size (and FEI scan rows) from vendor metadata: Zeiss, FEI/Thermo, ImageJ."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Length units (as vendors spell them) -> nanometres.
_UNIT_NM = {
    "fm": 1e-6,
    "pm": 1e-3,
    "nm": 1.0,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # greek mu U+03BC
    "um": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "mm": 1e6,
    "m": 1e9,
}


def length_to_nm(value: Any, unit: Any) -> float | None:
    """``value`` in ``unit`` (pm, nm, µm, um, mm, m, ...) as nanometres; None if unusable."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    factor = _UNIT_NM.get(str(unit).strip().lower().replace("\u00b5", "µ"))
    if factor is None:
        factor = _UNIT_NM.get(str(unit).strip())
    if factor is None or not math.isfinite(v) or v <= 0:
        return None
    return v * factor


def zeiss_pixel_size_nm(sem_metadata: Mapping[str, Any]) -> float | None:
    """Pixel size from Zeiss ``CZ_SEM`` metadata (``ap_pixel_size`` = (label, value, unit))."""
    entries = (sem_metadata.get(key) for key in ("ap_pixel_size", "ap_image_pixel_size"))
    sizes = (
        length_to_nm(e[1], e[2]) for e in entries if isinstance(e, (tuple, list)) and len(e) >= 3
    )
    return next((nm for nm in sizes if nm is not None), None)


def fei_pixel_size_nm(fei_metadata: Mapping[str, Any]) -> float | None:
    """Pixel size from FEI/Thermo metadata (``[Scan]``/``[EScan]`` ``PixelWidth`` in metres)."""
    sections = (fei_metadata.get(name) for name in ("Scan", "EScan", "IScan"))
    sizes = (length_to_nm(v.get("PixelWidth"), "m") for v in sections if isinstance(v, Mapping))
    return next((nm for nm in sizes if nm is not None), None)


def fei_scan_rows(fei_metadata: Mapping[str, Any]) -> int | None:
    """Number of scanned rows from FEI/Thermo metadata (``[Image]``/``[Scan]`` ``ResolutionY``)."""
    for section in ("Image", "Scan", "EScan"):
        values = fei_metadata.get(section)
        if isinstance(values, Mapping):
            try:
                rows = int(values.get("ResolutionY"))
            except (TypeError, ValueError):
                continue
            if rows > 0:
                return rows
    return None


def imagej_pixel_size_nm(ij: Mapping[str, Any], page: Any) -> float | None:
    """Pixel size from ImageJ metadata (``unit``) and the page's ``XResolution`` tag."""
    unit = ij.get("unit")
    res = page.tags.get("XResolution")
    if unit is None or res is None:
        return None
    num, den = res.value
    if not num:
        return None
    return length_to_nm(den / num, unit)


def tiff_metadata(tf: Any, page: Any) -> tuple[dict[str, Any], float | None, int | None]:
    """``(metadata, pixel_size_nm, scan_rows)`` of an open ``tifffile.TiffFile``.

    ``metadata`` holds ``vendor`` (zeiss, fei, imagej or None) and the raw vendor metadata.
    """
    metadata: dict[str, Any] = {"vendor": None}
    sem = tf.sem_metadata if tf.is_sem else None
    fei = tf.fei_metadata if tf.is_fei else None
    if sem:
        metadata.update(vendor="zeiss", sem_metadata=dict(sem))
        return metadata, zeiss_pixel_size_nm(sem), None
    if fei:
        metadata.update(vendor="fei", fei_metadata=dict(fei))
        return metadata, fei_pixel_size_nm(fei), fei_scan_rows(fei)
    if tf.is_imagej:
        pixel_size_nm = imagej_pixel_size_nm(tf.imagej_metadata or {}, page)
        if pixel_size_nm is not None:
            metadata["vendor"] = "imagej"
        return metadata, pixel_size_nm, None
    return metadata, None, None
