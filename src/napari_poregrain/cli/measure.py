"""``poregrain measure LABELS... --out DIR``: porosity and per-object sizes of class maps."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..analysis.export import write_objects_csv, write_summary_csv, write_summary_json
from ..analysis.summary import DEFAULT_MIN_SIZE, Measurement, flat_summary
from . import CliError
from ._options import add_inputs_and_out, add_output_arguments, pixel_size, positive_int

SUMMARY_CSV = "summary.csv"
OUTPUT_SUFFIXES = ("_objects.csv", "_summary.json")
"""Per label file: ``<stem>_objects.csv`` (one row per pore or grain), ``<stem>_summary.json``."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inputs_and_out(
        p, "labels", "LABELS", "class maps (PNG/TIF: 0 matrix, 1 grain, 2 pore, 255 ignored)",
        "folder for the tables: <name>_objects.csv (one row per pore or grain), "
        "<name>_summary.json per file and summary.csv for all; created if missing",
    )  # fmt: skip
    p.add_argument(
        "--pixel-size",
        type=pixel_size,
        metavar="SIZE",
        help="the length of one pixel with its unit, e.g. 13.96nm or 0.01396um "
        "(else lengths and areas are given in pixels)",
    )
    p.add_argument(
        "--image",
        type=Path,
        metavar="IMAGE",
        help="the SEM image of a single LABELS file: its pixel size (unless --pixel-size) and "
        "data bar (left out of the measurement) are read from the image file",
    )
    p.add_argument(
        "--min-size",
        type=positive_int,
        default=DEFAULT_MIN_SIZE,
        metavar="N",
        help="smallest pore or grain counted, in pixels, at least 1 "
        f"(default {DEFAULT_MIN_SIZE}); smaller specks are left out of the sizes",
    )
    p.add_argument(
        "--unit",
        default="auto",
        choices=["auto", "nm", "um", "px"],
        help="length unit of the tables (auto: nm for pixels below 100 nm, else µm; "
        "px when no pixel size is known)",
    )
    add_output_arguments(p, "tables")


def _plan(args: argparse.Namespace) -> list[list[Path]]:
    """Each file's two output paths, checked (names, existing files, folder) before measuring."""
    from ..io.outputs import OutputError, check_folder, check_names, check_not_inputs, plan_outputs

    combined = args.out / SUMMARY_CSV
    try:
        check_not_inputs([combined], [*args.labels, args.image])
        if combined.exists() and not args.overwrite:
            raise OutputError(
                f"{combined} exists already; pass --overwrite to replace the outputs"
            )
        plan = plan_outputs(
            args.labels, args.out, OUTPUT_SUFFIXES, overwrite=args.overwrite,
            by_folder=args.unique_names, protect=[args.image],
        )  # fmt: skip
        check_folder(args.out)
        check_names([combined, *(p for paths in plan for p in paths)])
    except OutputError as exc:
        raise CliError(str(exc)) from None
    return plan


def run(args: argparse.Namespace) -> int:
    from ..io.images import ImageReadError
    from ..io.outputs import is_fatal, save_error

    scale = _Scale.from_arguments(args)
    plan = _plan(args)
    rows, failures = [], 0
    files = list(zip(args.labels, plan))
    for path, outputs in tqdm(files, desc="measure", unit="file", disable=len(files) < 2):
        try:
            m = _measure_file(path, outputs, args, scale)
        except _SaveError as exc:
            failures += 1
            kept = f"; the table is kept as {exc.kept}" if exc.kept else ""
            tqdm.write(f"poregrain measure: {save_error(exc.path, exc.error)}{kept}", sys.stderr)
            if is_fatal(exc.error):
                return 1
            continue
        except (ImageReadError, ValueError, OSError) as exc:
            failures += 1
            msg = str(exc)
            msg = msg if str(path) in msg else f"{path}: {msg}"
            tqdm.write(f"poregrain measure: {msg}", sys.stderr)
            continue
        rows.append({"file": str(path), **flat_summary(m.summary)})
        tqdm.write(_line(path, m.summary), sys.stdout)
    return _write_combined(rows, args.out / SUMMARY_CSV) or (1 if failures else 0)


def _write_combined(rows: list[dict], path: Path) -> int:
    """Write summary.csv (when any file was measured); 1 and one line on a save error."""
    from ..io.outputs import save_error

    if not rows:
        return 0
    try:
        write_summary_csv(rows, path)
    except OSError as exc:
        print(f"poregrain measure: {save_error(path, exc)}", file=sys.stderr)
        return 1
    return 0


class _SaveError(Exception):
    """An OSError while writing ``path`` (not while reading); ``kept``: where the table went."""

    def __init__(self, path: Path, error: OSError, kept: Path | None = None) -> None:
        super().__init__(str(error))
        self.path, self.error, self.kept = path, error, kept


class _TableWriter:
    """``write(m, path)`` as a one-argument call (for :func:`..io.outputs.keep_elsewhere`)."""

    def __init__(self, write, m: Measurement) -> None:
        self.write, self.m = write, m

    def __call__(self, path: Path) -> Path:
        return self.write(self.m, path)


@dataclass(frozen=True)
class _Scale:
    """What the options say of every file: pixel size, data bar row and shape (``--image``)."""

    pixel_size_nm: float | None = None
    data_bar_row: int | None = None
    shape: tuple[int, ...] | None = None

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> _Scale:
        """From ``--pixel-size``, ``--image`` and ``--unit``; a bad option is a CliError."""
        pixel_nm = args.pixel_size  # nm, checked at parse time
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


def _measure_file(
    path: Path, outputs: list[Path], args: argparse.Namespace, scale: _Scale
) -> Measurement:
    """Measure one label file and write its two files; problems raise (the caller reports)."""
    from ..io.images import read_labels
    from ..io.outputs import keep_elsewhere

    class_map = read_labels(path)
    if scale.shape is not None and scale.shape != class_map.shape:
        raise ValueError(f"its shape {class_map.shape} differs from {args.image}'s {scale.shape}")
    from ..analysis.measure import class_map_sample, measure  # scipy: not needed to parse

    sample = class_map_sample(
        class_map, scale.pixel_size_nm, data_bar_row=scale.data_bar_row, name=str(path)
    )
    m = measure(sample, min_size=args.min_size, unit=args.unit)
    objects, summary = outputs
    for target, write in ((objects, write_objects_csv), (summary, write_summary_json)):
        try:
            write(m, target)
        except OSError as exc:  # the measurement is kept under a short name, said where
            raise _SaveError(target, exc, keep_elsewhere(target, _TableWriter(write, m))) from None
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
