"""Finding files for the command line."""

from __future__ import annotations

from pathlib import Path

from . import CliError


def files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """The files of ``folder`` with one of ``suffixes``, by stem; a clash or none is an error."""
    if not folder.is_dir():
        raise CliError(f"{folder}: no such {what} folder")
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in out:
                raise CliError(f"{path}: two {what} files share the stem {path.stem!r}")
            out[path.stem] = path
    if not out:
        raise CliError(f"{folder}: no {what} files ({', '.join(suffixes)})")
    return out
