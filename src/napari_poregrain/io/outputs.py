"""Output names, checked before any compute: the one place that decides where results go.

:func:`plan_outputs` maps input files to ``DIR/<stem><suffix>`` (or ``DIR/<folder>_<stem>...`` when
asked), refuses two inputs that would share an output (naming both) and outputs that exist
already (unless ``overwrite``); :func:`check_folder` creates the folder and proves it writable;
:func:`check_space` compares a cheap size estimate with the free space. Problems raise
:class:`OutputError`, one sentence naming the path. :func:`save_error` words an ``OSError``
raised while saving as one sentence naming the file.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .atomic import TMP_NAME_LENGTH, short_name

CHECK_PREFIX = ".poregrain-check-"
"""Prefix of the empty file that proves a folder writable (removed at once)."""
LABEL_BYTES_PER_PIXEL = 0.1
"""Typical size of a 0/1/2 class-map PNG per pixel (deflate packs the few values ~10x)."""
FATAL_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}
"""Save errors that will strike every further file as well: the run stops at the first."""


class OutputError(ValueError):
    """Outputs cannot be written as asked; the message is one sentence naming the path."""


def output_names(inputs: Sequence[Path], *, by_folder: bool = False) -> list[str]:
    """The output stem of each input: its stem, or ``<folder>_<stem>`` with ``by_folder``."""
    if not by_folder:
        return [Path(p).stem for p in inputs]
    return [f"{Path(p).resolve().parent.name}_{Path(p).stem}" for p in inputs]


def plan_outputs(
    inputs: Sequence[Path],
    folder: Path,
    suffixes: Sequence[str],
    *,
    overwrite: bool = False,
    by_folder: bool = False,
    each: Sequence[str] | None = None,
    protect: Iterable[Path | None] = (),
) -> list[list[Path]]:
    """For each input, its output files ``folder/<name><suffix>`` (one per suffix; with
    ``each``, input ``i`` gets the one suffix ``each[i]``, e.g. decided from that file alone).

    Raises OutputError when an input is given twice, two inputs share an output name, an
    output would replace one of ``inputs`` or ``protect`` (other files the command reads; with
    or without ``overwrite``), or an output exists already and ``overwrite`` is False. Touches
    nothing on disk.
    """
    seen: dict[str, Path] = {}
    plan = []
    for path, name in zip(inputs, output_names(inputs, by_folder=by_folder)):
        own = [each[len(plan)]] if each else list(suffixes)
        other = seen.get(name)
        if other is not None:
            raise OutputError(_clash(other, Path(path), folder / f"{name}{own[0]}"))
        seen[name] = Path(path)
        plan.append([folder / f"{name}{s}" for s in own])
    check_not_inputs(_flat(plan), [*inputs, *protect])
    if not overwrite:
        taken = next((p for p in _flat(plan) if _taken(p)), None)
        if taken is not None:
            raise OutputError(
                f"{taken} exists already; pass --overwrite to replace it, or choose another --out"
            )
    return plan


def _taken(path: Path) -> bool:
    """True when a file or link has the name (a name too long to look up is not taken:
    :func:`check_names` reports it)."""
    try:
        return path.exists() or path.is_symlink()
    except OSError:
        return False


def _clash(first: Path, second: Path, output: Path) -> str:
    if first.resolve() == second.resolve():
        return f"{second} is given twice"
    return (
        f"{first} and {second} would both be written to {output}; rename one, run them "
        "separately, or pass --unique-names (outputs named <folder>_<stem>)"
    )


def _flat(plan: Iterable[list[Path]]) -> Iterable[Path]:
    return (p for paths in plan for p in paths)


def check_folder(folder: Path) -> Path:
    """Create ``folder`` (and its parents) and prove it writable; OutputError otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"cannot write to the output folder {folder}: it is a file, not a folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=CHECK_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {folder}: {_why(exc)}") from None
    return folder


def check_names(paths: Iterable[Path]) -> None:
    """Prove the file system takes each name of ``paths`` (and its fixed-length temporary form):
    an empty probe file as long as the longest name is created in each folder, then removed.

    OutputError naming the path when a name is too long (or the folder refuses a file).
    """
    longest: dict[Path, Path] = {}
    for p in map(Path, paths):
        folder = p.parent
        if folder not in longest or len(os.fsencode(p.name)) > len(
            os.fsencode(longest[folder].name)
        ):
            longest[folder] = p
    for folder, p in longest.items():
        _probe(folder, max(len(os.fsencode(p.name)), TMP_NAME_LENGTH), p)


def _probe(folder: Path, length: int, path: Path) -> None:
    probe = folder / (
        CHECK_PREFIX + secrets.token_hex(length)[: max(0, length - len(CHECK_PREFIX))]
    )
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return  # a probe of that length exists: the name length is fine
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise OutputError(
                f"cannot write {path}: its name is {len(os.fsencode(path.name))} bytes, longer "
                f"than the file system of {folder} allows; choose a shorter name"
            ) from None
        raise OutputError(f"cannot write to the output folder {folder}: {_why(exc)}") from None
    os.unlink(probe)


def check_not_inputs(outputs: Iterable[Path], inputs: Iterable[Path | None]) -> None:
    """OutputError (naming both) when an output path is one of the command's own inputs.

    Checked with and without ``--overwrite``: an input is never written over.
    """
    given = [Path(p) for p in inputs if p is not None]
    for out in map(Path, outputs):
        hit = next((p for p in given if same_file(out, p)), None)
        if hit is not None:
            raise OutputError(
                f"{out} would be written over the input {hit}; choose another --out or name "
                "(an input is never replaced, even with --overwrite)"
            )


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file or folder (links and ``..`` resolved)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_space(folder: Path, needed_bytes: float) -> None:
    """OutputError when ``folder``'s disk has less free space than ``needed_bytes``."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the save reports it
    if needed_bytes > free:
        raise OutputError(
            f"the outputs need about {_mb(needed_bytes)} but {folder} has only {_mb(free)} free"
        )


def label_bytes(shapes: Iterable[tuple[int, ...] | None]) -> float:
    """A typical total size of class-map PNGs of these image shapes (unknown shapes: 0)."""
    total = 0.0
    for shape in shapes:
        if shape:
            total += LABEL_BYTES_PER_PIXEL * float(_pixels(shape)) + 1024
    return total


def _pixels(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def image_shape(path: Path) -> tuple[int, ...] | None:
    """The (Y, X) shape of an image from its header only, or None when it cannot be told
    (never opens anything but a regular file: a named pipe would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        if Path(path).suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                return tuple(tf.pages.first.shape[:2])
        from PIL import Image

        with Image.open(path) as img:
            return (img.height, img.width)
    except Exception:  # an unreadable file is named by the reader later
        return None


def keep_elsewhere(target: Path, write: Callable[[Path], Path]) -> Path | None:
    """After a failed save of ``target``: ``write`` the finished work under a short name
    (:func:`.atomic.short_name`) beside it, else in the system's temporary folder; the path
    written, or None when neither takes it."""
    for folder in (Path(target).parent, Path(tempfile.gettempdir())):
        try:
            return write(short_name(target, folder))
        except (OSError, ValueError):
            continue
    return None


def save_error(path: Path, exc: OSError) -> str:
    """One sentence for an ``OSError`` raised while writing ``path`` (a writer's own
    ``Cannot write <path>:`` is not repeated)."""
    why = _why(exc).removeprefix(f"cannot write {path}: ").rstrip(".")
    return f"cannot save {path}: {why}"


def is_fatal(exc: OSError) -> bool:
    """True when the error will strike every further save too (disk full, read-only, denied)."""
    return exc.errno in FATAL_ERRNOS


def _why(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"
