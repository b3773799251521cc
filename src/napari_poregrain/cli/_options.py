"""Range-checked option types shared by every command: bad values stop at parse time.

Each type is a ``type=`` for ``argparse``; a bad value raises ``argparse.ArgumentTypeError``, so
argparse prints ``poregrain CMD: error: argument --batch: must be ≥ 1, not -1`` and exits 2
before anything is read or computed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


class Number:
    """A whole or decimal number within bounds; ``Number(int, low=1)`` is a positive count.

    ``low``/``high``: the bounds; ``low_open``/``high_open``: whether the bound itself is refused.
    ``multiple``: whole numbers only, the value must be a multiple of it.
    """

    def __init__(
        self,
        kind: type = int,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        high_open: bool = False,
        multiple: int | None = None,
    ) -> None:
        self.kind, self.low, self.high = kind, low, high
        self.low_open, self.high_open, self.multiple = low_open, high_open, multiple
        self.__name__ = "whole number" if kind is int else "number"

    def __call__(self, text: str) -> int | float:
        value = self._parse(text)
        problem = self._problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, not {text}")
        return value

    def _parse(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {self.__name__}, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite {self.__name__}, not {text}")
        return value

    def _problem(self, value: float) -> str | None:
        """What is wrong with ``value``, or None."""
        low_bad = self.low is not None and (
            value < self.low or (self.low_open and value == self.low)
        )
        high_bad = self.high is not None and (
            value > self.high or (self.high_open and value == self.high)
        )
        if low_bad or high_bad:
            return f"must be {self.describe()}"
        if self.multiple and value % self.multiple:
            return f"must be a multiple of {self.multiple}"
        return None

    def describe(self) -> str:
        """``≥ 1``, ``> 0``, ``in [0, 1)``."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {_num(self.low)}"
        return f"{'<' if self.high_open else '≤'} {_num(self.high)}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e18 else f"{x:g}"


positive_int = Number(int, 1)
"""A count of at least 1: ``--batch``, ``--steps``, ``--crop``, ``--min-size``, ``--epochs``."""
non_negative_int = Number(int, 0)
"""0 or more: ``--warmup``, ``--patience``, ``--workers``."""
tile_side = Number(int, 16, multiple=16)
"""A tile side: a multiple of 16 pixels, at least 16 (the network's stride)."""
fraction = Number(float, 0.0, 1.0, high_open=True)
"""A share in [0, 1): ``--overlap``."""
open_fraction = Number(float, 0.0, 1.0, low_open=True, high_open=True)
"""A share in (0, 1): ``--val-fraction``."""
share = Number(float, 0.0, 1.0)
"""A share in [0, 1]: ``--class-balance``."""
positive_float = Number(float, 0.0, low_open=True)
"""A number above 0: ``--lr``, ``--scale-range``."""
non_negative_float = Number(float, 0.0)
"""0 or more: ``--weight-decay``."""
label_value = Number(int, 0, 255)
"""A label-map value, 0-255."""


def pixel_size(text: str) -> float:
    """``13.96nm``, ``0.014um``, ``5 µm`` -> nanometres; anything else is refused at parse time."""
    from ..analysis.units import parse_pixel_size

    try:
        nm = parse_pixel_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not (math.isfinite(nm) and nm > 0):
        raise argparse.ArgumentTypeError(f"must be a positive length with its unit, not {text}")
    return nm


def add_output_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite`` and ``--unique-names`` (see :mod:`napari_poregrain.io.outputs`)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} left in DIR by an earlier run (otherwise the run stops before "
        "starting and names the first one)",
    )
    p.add_argument(
        "--unique-names",
        action="store_true",
        help=f"name the {what} after each file's folder too (<folder>_<name>), for files from "
        "different folders that share a name",
    )


def add_inputs_and_out(
    p: argparse.ArgumentParser, name: str, metavar: str, inputs_help: str, out_help: str
) -> None:
    """A batch command's input files (one or more) and its required ``--out`` folder."""
    p.add_argument(name, nargs="+", type=Path, metavar=metavar, help=inputs_help)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help=out_help)


seed = Number(int, 0, 2**32 - 1)
"""A random seed: 0 to 2³²-1 (what every generator in the run accepts)."""


def check_tiling(args: argparse.Namespace) -> None:
    """ArgumentTypeError when ``--tile`` and ``--overlap`` leave less than one network stride
    (16 pixels) between tiles; the default tile (768 or 1024 px) is checked at its smaller size."""
    from ..inference.options import CPU_TILE, DEFAULT_TILE

    stride = 16  # the network's output stride: tiles are multiples of it

    overlap = getattr(args, "overlap", None)
    if overlap is None:
        return
    tile = getattr(args, "tile", None) or min(CPU_TILE, DEFAULT_TILE)
    step = tile - round(tile * overlap)
    if step < stride:
        given = f"--tile {tile}" if getattr(args, "tile", None) else f"the default tile {tile}"
        raise argparse.ArgumentTypeError(
            f"--overlap {overlap:g} with {given} leaves {step} pixels between tiles; at least "
            f"{stride} are needed (lower --overlap or raise --tile)"
        )
