"""The seed's dataset layout: ``JPEGImages/``, ``SegmentationClassRaw/``, ``ImageSets/``."""

from __future__ import annotations

from pathlib import Path

from . import CliError
from ._files import first_file

SEED_IMAGES = "JPEGImages"
SEED_LABELS = "SegmentationClassRaw"
SEED_SETS = "ImageSets"


def seed_split(
    data_dir: Path, split: str, required: bool = True
) -> list[tuple[str, Path, Path]] | None:
    """``(stem, image, label)`` for the stems in ``ImageSets/<split>.txt``.

    Images may have any readable suffix (``.jpg`` first). A missing or empty
    listing is an error when ``required``, else None; a listed file that is
    missing is always an error naming it.
    """
    from ..io.images import IMAGE_SUFFIXES

    listing = data_dir / SEED_SETS / f"{split}.txt"
    if not listing.is_file():
        if required:
            raise CliError(f"{listing}: no such split file")
        return None
    stems = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not stems:
        if required:
            raise CliError(f"{listing}: lists no images")
        return None
    triples = []
    for stem in stems:
        candidates = [data_dir / SEED_IMAGES / f"{stem}{s}" for s in (".jpg", *IMAGE_SUFFIXES)]
        label = data_dir / SEED_LABELS / f"{stem}.png"
        triples.append((stem, _listed(candidates, listing), _listed([label], listing)))
    return triples


def _listed(candidates: list[Path], listing: Path) -> Path:
    """The first candidate that exists; none is an error naming the first."""
    found = first_file(candidates)
    if found is None:
        raise CliError(f"{candidates[0]}: listed in {listing} but missing")
    return found
