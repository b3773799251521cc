"""What every reader shares: the file types, the one error type and its one-sentence messages."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


class ImageReadError(ValueError):
    """An image or label file cannot be read; the message is one sentence naming the file."""


def check_path(path: Path, suffixes: tuple[str, ...], prefix: str, kinds: str) -> None:
    """Raise ImageReadError unless ``path`` is an existing file with one of ``suffixes``.

    ``prefix`` starts the message (``Cannot read ...``); ``kinds`` introduces the suffix list.
    """
    if path.suffix.lower() not in suffixes:
        raise ImageReadError(
            f"{prefix}: unsupported file type {path.suffix or '(none)'!r} "
            f"({kinds}: {', '.join(suffixes)})."
        )
    check_regular(path)


def check_regular(path: Path) -> None:
    """ImageReadError unless ``path`` is an existing regular file (checked without opening it:
    a named pipe would block, a device never end)."""
    if not path.exists():
        raise ImageReadError(f"Cannot read {path}: the file does not exist.")
    kind = not_regular(path)
    if kind:
        raise ImageReadError(f"Cannot read {path}: it is {kind}, not a file.")


def not_regular(path: Path) -> str | None:
    """``"a named pipe (FIFO)"``, ``"a device"``, ``"a socket"``, ``"a folder"``, or None for a
    regular file (or one that does not exist); from ``stat`` alone, nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = (
        (stat.S_ISREG, None),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    )
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def reason(exc: Exception) -> str:
    """A reader library's exception as the end of a one-sentence message."""
    text = " ".join(str(exc).split()).rstrip(".")
    if not text:
        text = type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return f"not a valid image file ({text})"


def channels_equal(data: np.ndarray) -> bool:
    """True when the first three channels of a colour array are identical (grey saved as RGB)."""
    return bool(
        np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 0], data[..., 2])
    )
