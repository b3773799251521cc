"""The one typed schema of a training recipe, checked before anything the recipe names is read.

:data:`SCHEMA` is the whole table: each section maps to a dict of ``key: type``, to a dataclass
(its fields and their annotations are the keys and types) or to a one-element list of either (an
array of tables, ``[[source]]``). A new section or key is one entry here (or one dataclass
field). Unknown keys, wrong types (text for a number, ``true`` for a count, a number for a list
or a name) and missing required keys are one sentence naming the key, its value and what is
expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from .config import TrainConfig

MODEL_KEYS: dict[str, Any] = {"encoder": str, "refine": bool, "name": str, "init": str}
"""``[model]``: the network of a run from scratch, its display name, the starting model."""
REQUIRED = {"source": ("name",)}
"""Keys every table of a section must have."""
NON_NEGATIVE = ("source",)
"""Sections whose whole numbers are counts, sizes or seeds: 0 or more."""
MAX_WORKERS = 64
SEEDS = (0, 2**32 - 1)
LIMITS: dict[str, dict[str, tuple[float, float]]] = {
    "train": {"num_workers": (0, MAX_WORKERS), "seed": SEEDS},
    "source": {"seed": SEEDS},
}
"""Ranges of single keys (the rest of the ranges: ``TrainConfig.validate``)."""
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"device": ("auto", "cpu", "cuda", "mps")},
}
"""Keys that take one of a few words."""


def _schema() -> dict[str, Any]:
    from .recipe import Source  # recipe imports this module: resolved when first checked

    return {"model": MODEL_KEYS, "train": TrainConfig, "source": [Source]}


def check_recipe(doc: dict, path: Path) -> None:
    """ValueError (one sentence starting with ``path``) for the first value off the schema."""
    schema = _schema()
    for section, value in doc.items():
        if section not in schema:
            raise ValueError(
                f"{path}: unknown section [{section}]; a recipe has {_listing(schema)}"
            )
        spec = schema[section]
        if isinstance(spec, list):
            _check_tables(path, section, value, spec[0])
        elif not isinstance(value, dict):
            raise ValueError(f"{path}: {section} = {_show(value)}: expected a [{section}] table")
        else:
            _check_table(path, f"[{section}]", section, value, spec)


def _check_tables(path: Path, section: str, value: Any, spec: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError(
            f"{path}: {section} = {_show(value)}: expected [[{section}]] tables (one per "
            f"{section}, each with its keys)"
        )
    for i, table in enumerate(value):
        name = table.get("name")
        where = f"[[{section}]] {i + 1}" + (f" ({name})" if isinstance(name, str) else "")
        _check_table(path, where, section, table, spec)


def _check_table(path: Path, where: str, section: str, table: dict, spec: Any) -> None:
    kinds = _kinds(spec)
    for key, value in table.items():
        if key not in kinds:
            close = difflib.get_close_matches(key, kinds, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(kinds))}"
            raise ValueError(
                f"{path}: {where} has an unknown key {key!r} (= {_show(value)}); {hint}"
            )
        expected = _problem(value, kinds[key], section in NON_NEGATIVE) or _off_range(
            value, LIMITS.get(section, {}).get(key), CHOICES.get(section, {}).get(key)
        )
        if expected:
            raise ValueError(f"{path}: {where} {key} = {_show(value)}: expected {expected}")
    for key in REQUIRED.get(section, ()):
        if key not in table:
            raise ValueError(f"{path}: {where} has no {key} (expected {_describe(kinds[key])})")


def _off_range(value: Any, limits: tuple | None, choices: tuple | None) -> str | None:
    """What is expected when a value of the right type is outside its range or choices."""
    if limits is not None and not limits[0] <= value <= limits[1]:
        return f"a whole number from {limits[0]} to {limits[1]}"
    if choices is not None and value not in choices:
        return f"one of {', '.join(choices)}"
    return None


def _kinds(spec: Any) -> dict[str, Any]:
    """``key: type`` of a dict spec or of a dataclass's fields."""
    if isinstance(spec, dict):
        return spec
    hints = typing.get_type_hints(spec)
    return {f.name: hints[f.name] for f in dataclasses.fields(spec)}


def _problem(value: Any, kind: Any, counts: bool = False) -> str | None:
    """What ``value`` should have been (for ``kind``), or None when it fits."""
    kind = _without_none(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (list, tuple):
        items = args[:1] if origin is list or args[-1:] == (...,) else args
        fits = isinstance(value, list) and (origin is list or len(value) == len(items))
        item_kinds = items * len(value) if origin is list else items
        if fits and not any(_problem(v, k) for v, k in zip(value, item_kinds)):
            return None
        return _describe(kind)
    fits = _fits(value, kind)
    if fits and counts and kind is int and value < 0:
        return "a whole number ≥ 0"
    return None if fits else _describe(kind)


def _fits(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if kind in (str, Path):
        return isinstance(value, str)
    return True  # a type the schema does not constrain


def _without_none(kind: Any) -> Any:
    """``X | None`` -> ``X`` (TOML has no null: a key left out is the default)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


def _describe(kind: Any) -> str:
    kind = _without_none(kind)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is tuple:
        return f"a list of {len(args)} {_plural(args[0])}"
    names = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}
    return names.get(kind, "a folder path (text)" if kind is Path else str(kind))


def _plural(kind: Any) -> str:
    return {int: "whole numbers", float: "numbers", str: "texts"}.get(kind, "values")


def _show(value: Any) -> str:
    """The value as the recipe spells it (TOML-like: ``true``, ``"64"``, ``[1]``)."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _listing(schema: dict) -> str:
    return ", ".join(f"[[{k}]]" if isinstance(v, list) else f"[{k}]" for k, v in schema.items())
