"""Measurement files: per-object CSV, summary JSON, the combined summary CSV; written atomically.

Engine module: no Qt, no napari. Units are in the column names (:func:`units.column_name`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_bytes
from .summary import COLUMNS, Measurement
from .units import column_name


def _cell(name: str, column: str, value: Any) -> str:
    """One CSV cell; ``touches_grain`` is blank for grains (it is a pore property)."""
    if column == "touches_grain" and name != "pores":
        return ""
    if isinstance(value, np.bool_ | bool):
        return str(bool(value))
    if isinstance(value, np.integer | int):
        return str(int(value))
    return f"{float(value):.10g}"


def objects_csv(m: Measurement) -> str:
    """Per-object CSV text: one row per pore and grain, ``class`` first, units in the headers."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", *(column_name(c, m.unit) for c in COLUMNS)])
    for name, table in m.objects.items():
        for i in range(len(table["label"])):
            writer.writerow([name[:-1], *(_cell(name, c, table[c][i]) for c in COLUMNS)])
    return buf.getvalue()


def write_objects_csv(m: Measurement, path: str | os.PathLike) -> Path:
    """Write :func:`objects_csv` atomically (UTF-8)."""
    return atomic_write_bytes(path, objects_csv(m).encode("utf-8"))


def write_summary_json(m: Measurement, path: str | os.PathLike) -> Path:
    """Write the summary (:func:`summary.summarize`) as UTF-8 JSON, atomically."""
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


def first_existing(paths: Iterable[str | os.PathLike]) -> Path | None:
    """The first of ``paths`` that exists already, or None: the one "would I overwrite?" check."""
    return next((Path(p) for p in paths if Path(p).exists()), None)


def free_base(base: str | os.PathLike) -> Path:
    """``base`` or ``base-2``, ``base-3``...: the first whose export files do not exist yet."""
    objects, _ = export_paths(base)
    stem = objects.name.removesuffix("_objects.csv")
    candidate, n = objects.with_name(stem), 1
    while first_existing(export_paths(candidate)) is not None:
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
    taken = None if overwrite else first_existing((objects, summary))
    if taken is not None:
        raise FileExistsError(f"{taken} exists already")
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
