"""``poregrain measure LABELS... --out DIR``: porosity and per-object sizes of class maps."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..analysis.export import (
    export_paths,
    first_existing,
    write_objects_csv,
    write_summary_csv,
    write_summary_json,
)
from ..analysis.measure import DEFAULT_MIN_SIZE, class_map_sample, measure
from ..analysis.summary import Measurement, flat_summary
from ..analysis.units import parse_pixel_size
from . import CliError

SUMMARY_CSV = "summary.csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "labels",
        nargs="+",
        type=Path,
        metavar="LABELS",
        help="class maps (PNG/TIF: 0 matrix, 1 grain, 2 pore, 255 ignored)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument(
        "--pixel-size",
        metavar="SIZE",
        help="pixel size with its unit, e.g. 13.96nm or 0.01396um (else lengths in pixels)",
    )
    p.add_argument(
        "--image",
        type=Path,
        metavar="IMAGE",
        help="the SEM image of a single LABELS file: its pixel size (unless --pixel-size) and "
        "data bar (excluded) are read from its metadata",
    )
    p.add_argument(
        "--min-size",
        type=int,
        default=DEFAULT_MIN_SIZE,
        metavar="N",
        help=f"smallest object in pixels (default {DEFAULT_MIN_SIZE})",
    )
    p.add_argument(
        "--unit",
        default="auto",
        choices=["auto", "nm", "um", "px"],
        help="length unit (auto: nm below 100 nm pixels, else µm; px without a pixel size)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    from ..io.images import ImageReadError

    if args.min_size < 1:
        raise CliError(f"--min-size must be at least 1 pixel, not {args.min_size}")
    scale = _Scale.from_arguments(args)
    combined = args.out / SUMMARY_CSV
    if combined.exists() and not args.overwrite:
        raise CliError(f"{combined} exists already; pass --overwrite to replace the outputs")
    rows, failures = [], 0
    for path in tqdm(args.labels, desc="measure", unit="file", disable=len(args.labels) < 2):
        try:
            m = _measure_file(path, args, scale)
        except (ImageReadError, ValueError, OSError) as exc:
            failures += 1
            msg = str(exc)
            msg = msg if str(path) in msg else f"{path}: {msg}"
            tqdm.write(f"poregrain measure: {msg}", sys.stderr)
            continue
        rows.append({"file": str(path), **flat_summary(m.summary)})
        tqdm.write(_line(path, m.summary), sys.stdout)
    if rows:
        write_summary_csv(rows, combined)
    return 1 if failures else 0


@dataclass(frozen=True)
class _Scale:
    """What the options say of every file: pixel size, data bar row and shape (``--image``)."""

    pixel_size_nm: float | None = None
    data_bar_row: int | None = None
    shape: tuple[int, ...] | None = None

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> _Scale:
        """From ``--pixel-size``, ``--image`` and ``--unit``; a bad option is a CliError."""
        pixel_nm = None
        if args.pixel_size is not None:
            try:
                pixel_nm = parse_pixel_size(args.pixel_size)
            except ValueError as exc:
                raise CliError(f"--pixel-size: {exc}") from None
        scale = cls(pixel_nm) if args.image is None else cls._from_image(args, pixel_nm)
        if args.unit not in ("auto", "px") and scale.pixel_size_nm is None:
            raise CliError(f"--unit {args.unit} needs a pixel size (--pixel-size or --image)")
        return scale

    @classmethod
    def _from_image(cls, args: argparse.Namespace, pixel_nm: float | None) -> _Scale:
        from ..io.images import ImageReadError, read_sample

        if len(args.labels) != 1:
            raise CliError(
                f"--image {args.image} goes with one LABELS file, not {len(args.labels)}"
            )
        try:
            img = read_sample(args.image)
        except ImageReadError as exc:
            raise CliError(str(exc)) from None
        if pixel_nm is None:
            pixel_nm = img.pixel_size_nm
            if pixel_nm is None:
                print(
                    f"poregrain measure: {args.image}: no pixel size in its metadata; "
                    "lengths are in pixels (give --pixel-size)",
                    file=sys.stderr,
                )
        return cls(pixel_nm, img.data_bar_row, tuple(img.shape[-2:]))


def _measure_file(path: Path, args: argparse.Namespace, scale: _Scale) -> Measurement:
    """Measure one label file and write its two files; problems raise (the caller reports)."""
    from ..io.images import read_labels

    class_map = read_labels(path)
    if scale.shape is not None and scale.shape != class_map.shape:
        raise ValueError(f"its shape {class_map.shape} differs from {args.image}'s {scale.shape}")
    objects, summary = export_paths(args.out / path.stem)
    taken = None if args.overwrite else first_existing((objects, summary))
    if taken is not None:
        raise ValueError(f"{taken} exists already; pass --overwrite to replace it")
    sample = class_map_sample(
        class_map, scale.pixel_size_nm, data_bar_row=scale.data_bar_row, name=str(path)
    )
    m = measure(sample, min_size=args.min_size, unit=args.unit)
    write_objects_csv(m, objects)
    write_summary_json(m, summary)
    return m


def _line(path: Path, s: dict) -> str:
    """One human-readable line per file on stdout."""
    u = {"µm": "um"}.get(s["unit"], s["unit"])
    parts = []
    for name, key in (("pores", "pore_fraction"), ("grains", "grain_fraction")):
        frac = s[key]
        st = s[name]
        d50 = st.get(f"d50_{u}")
        extra = f", D50 {d50:.4g} {s['unit']}" if d50 is not None else ""
        pct = "–" if frac is None else f"{100 * frac:.3g} %"
        parts.append(f"{name} {pct} ({st['count']}{extra})")
    return f"{path.name}: " + "; ".join(parts)
