"""Finding files for the command line: files by stem, pairs by stem, the first that exists."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import CliError


def files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """The files of ``folder`` with one of ``suffixes``, by stem; a clash, none, or a named
    pipe, device or socket among them is an error."""
    from ..io.files import not_regular

    if not folder.is_dir():
        raise CliError(f"{folder}: no such {what} folder")
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes or path.name.startswith("."):
            continue
        kind = not_regular(path)
        if kind and kind != "a folder":  # named, never opened (a named pipe would block)
            raise CliError(f"{path}: it is {kind}, not a file")
        if path.is_file():
            if path.stem in out:
                raise CliError(f"{path}: two {what} files share the stem {path.stem!r}")
            out[path.stem] = path
    if not out:
        raise CliError(f"{folder}: no {what} files ({', '.join(suffixes)})")
    return out


def pair_by_stem(
    left: dict[str, Path], right: dict[str, Path], left_what: str, right_what: str
) -> list[tuple[str, Path, Path]]:
    """``(stem, left, right)`` sorted by stem; a file without a partner is an error naming it.

    ``left``/``right`` come from :func:`files_by_stem` (one folder each, never empty).
    """
    for files, others, what in ((left, right, right_what), (right, left, left_what)):
        folder = next(iter(others.values())).parent if others else None
        for stem, path in files.items():
            if stem not in others:
                where = f" in {folder}" if folder is not None else ""
                raise CliError(f"{path}: no {what} file named {stem}.*{where}")
    return [(stem, left[stem], right[stem]) for stem in sorted(left)]


def check_model_file(path: Path) -> Path:
    """``path``, or CliError when it names a named pipe, device or socket (opening one would
    block or never end)."""
    from ..io.files import not_regular

    kind = not_regular(path)
    if kind and kind != "a folder":
        raise CliError(f"{path}: it is {kind}, not a model file")
    return path


def first_file(candidates: Iterable[Path]) -> Path | None:
    """The first of ``candidates`` that is an existing file, or None."""
    return next((p for p in candidates if p.is_file()), None)
