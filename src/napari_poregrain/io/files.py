"""What every reader shares: the file types, the one error type and its one-sentence messages."""

from __future__ import annotations

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
    if not path.exists():
        raise ImageReadError(f"Cannot read {path}: the file does not exist.")
    if not path.is_file():
        raise ImageReadError(f"Cannot read {path}: it is not a file.")


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
