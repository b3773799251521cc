"""Training recipes: a TOML file naming data sources, their fixed split and the settings.

The shipped default model is trained from ``recipes/default-model.toml`` with
``poregrain train --config``; ``poregrain evaluate --config`` reports its
validation IoU per source next to simple baselines. Paths in a recipe are
relative to the recipe file.

A source is either a folder pair (``images`` + ``labels``, matched by file
stem) or ``synthetic = true`` (images made by :mod:`synthetic` with exact
labels). Per source: ``val`` (stems held out), ``val_last`` (the last N stems in
sorted order held out: a contiguous block of tiles), ``repeat`` (sampling
weight: the training pairs are listed that many times) and ``pores_unlabelled``
(the labels have no pore class: pore-like dark pixels become 255, so the model
is not taught that pores are matrix or grain).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..classes import GRAIN, IGNORE, MATRIX, PORE
from ..synthetic import Style, make_sample

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DARK_MADS = 6.0
"""``pores_unlabelled``: pixels this many robust standard deviations below the median are pores."""


@dataclass
class Source:
    name: str
    images: Path | None = None
    labels: Path | None = None
    val: list[str] = field(default_factory=list)
    val_last: int = 0
    repeat: int = 1
    pores_unlabelled: bool = False
    synthetic: bool = False
    count: int = 0
    val_count: int = 0
    size: int = 512
    seed: int = 0


@dataclass
class Recipe:
    path: Path
    model: dict
    train: dict
    sources: list[Source]


@dataclass
class Split:
    """Pairs of (image, labels) with names, per source."""

    train: dict[str, list[tuple[str, np.ndarray, np.ndarray]]]
    val: dict[str, list[tuple[str, np.ndarray, np.ndarray]]]


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe; raise ValueError naming the problem."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the recipe ({exc})") from None
    known = {f.name for f in fields(Source)}
    sources = []
    for i, raw in enumerate(doc.get("source", [])):
        unknown = set(raw) - known
        if unknown or "name" not in raw:
            what = f"unknown keys {sorted(unknown)}" if unknown else "no name"
            raise ValueError(f"{path}: source {i + 1} has {what}")
        src = Source(**raw)
        for attr in ("images", "labels"):
            if getattr(src, attr) is not None:
                setattr(src, attr, (path.parent / getattr(src, attr)).resolve())
        if not src.synthetic and (src.images is None or src.labels is None):
            raise ValueError(f"{path}: source {src.name} needs images and labels folders")
        sources.append(src)
    if not sources:
        raise ValueError(f"{path}: the recipe names no [[source]]")
    return Recipe(path, dict(doc.get("model", {})), dict(doc.get("train", {})), sources)


def unlabelled_pores(image: np.ndarray) -> np.ndarray:
    """Pore-like pixels: much darker than the image's robust median (smoothed, dilated by 1)."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    med = float(np.median(smooth))
    sigma = 1.4826 * float(np.median(np.abs(smooth - med))) or 1.0
    return ndimage.binary_dilation(smooth < med - DARK_MADS * sigma, iterations=1)


def load_split(recipe: Recipe) -> Split:
    """Read every source and split it into training and validation pairs."""
    from ..io.images import read_labels, read_sample

    split = Split({}, {})
    for src in recipe.sources:
        if src.synthetic:
            train, val = _synthetic(src)
        else:
            train, val = [], []
            labels = {p.stem: p for p in sorted(src.labels.iterdir()) if p.is_file()}
            images = sorted(p for p in src.images.iterdir() if p.stem in labels)
            if not images:
                raise ValueError(f"source {src.name}: no image in {src.images} has a label")
            held = set(src.val)
            if src.val_last:
                held |= {p.stem for p in images[-src.val_last :]}
            for p in images:
                img = read_sample(p)
                image = img.pixels if img.pixels.ndim == 2 else img.pixels[..., :3].mean(-1)
                lab = read_labels(labels[p.stem])
                if lab.shape != image.shape[:2]:
                    raise ValueError(
                        f"{labels[p.stem]}: labels {lab.shape} != image {image.shape}"
                    )
                # only the rows above a data bar: its pixels would skew the intensity range
                image, lab = image[: img.data_bar_row], lab[: img.data_bar_row].copy()
                if src.pores_unlabelled and p.stem not in held:
                    lab[unlabelled_pores(image) & (lab != IGNORE)] = IGNORE
                (val if p.stem in held else train).append((p.stem, image, lab))
        split.train[src.name] = train * max(1, src.repeat)
        split.val[src.name] = val
    return split


def _synthetic(src: Source):
    rng = np.random.default_rng(src.seed)

    def one(i: int):
        style = Style(
            matrix=rng.uniform(0.35, 0.6),
            grain=rng.uniform(0.6, 0.85),
            pore=rng.uniform(0.02, 0.25),
            rim=rng.uniform(0.0, 0.15),
            texture=rng.uniform(0.03, 0.1),
            noise=rng.uniform(0.02, 0.1),
            blur=rng.uniform(0.5, 1.5),
            grain_fraction=rng.uniform(0.15, 0.5),
            grain_radius=rng.uniform(12, 50),
            pore_radius=rng.uniform(2, 8),
        )
        image, labels = make_sample((src.size, src.size), seed=src.seed * 1000 + i, style=style)
        return f"{src.name}-{i}", image, labels

    items = [one(i) for i in range(src.count + src.val_count)]
    return items[: src.count], items[src.count :]


def baseline(
    image: np.ndarray, kind: str, labels: np.ndarray | None = None, majority: int = GRAIN
) -> np.ndarray:
    """Simple baselines: ``otsu`` or ``majority`` (every pixel the class ``majority``).

    ``otsu``: pore at or below Otsu's threshold, else matrix; the threshold
    is taken over the labelled pixels of ``labels`` when given (a stronger
    baseline than the whole image, whose threshold falls between phases).
    """
    if kind == "otsu":
        from skimage.filters import threshold_otsu

        values = image if labels is None else image[labels != IGNORE]
        return np.where(image <= threshold_otsu(values), PORE, MATRIX).astype(np.uint8)
    return np.full(image.shape[:2], majority, np.uint8)


def validation_report(split: Split, model, progress=None, **predict_kwargs) -> dict:
    """Per source: the model's and the baselines' metrics on the held-out pairs.

    Baselines: ``otsu`` (pore at or below Otsu's threshold over the labelled
    pixels, else matrix) and
    ``majority`` (every pixel the most frequent labelled class of the source's
    training pairs).
    """
    from ..analysis.metrics import ConfusionMatrix
    from ..inference.predict import predict

    report = {}
    for name, pairs in split.val.items():
        if not pairs:
            continue
        counts = np.zeros(256, np.int64)
        for _, _, lab in split.train.get(name) or pairs:
            counts += np.bincount(lab.ravel(), minlength=256)
        majority = int(np.argmax(counts[:3]))
        cms = {k: ConfusionMatrix() for k in ("model", "otsu", "majority")}
        for stem, image, lab in pairs:
            pred = predict(image, model, **predict_kwargs).labels
            cms["model"].update(lab, pred)
            cms["otsu"].update(lab, baseline(image, "otsu", lab))
            cms["majority"].update(lab, baseline(image, "majority", majority=majority))
            if progress is not None:
                progress(name, stem)
        report[name] = {k: cm.to_dict() for k, cm in cms.items()}
        report[name]["images"] = [stem for stem, _, _ in pairs]
    return report
