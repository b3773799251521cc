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
is not taught that pores are matrix or grain). Tiles named ``<group>_...`` (the
Nankai set) are split by sample group, the stem's first ``_`` field:
``val_groups`` are held out, ``skip_groups`` are neither trained nor validated on
(kept for a report no choice has seen).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..classes import GRAIN, IGNORE, MATRIX, PORE
from ..preprocess import to_grey
from ..sample import Sample
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
    organic: bool = False
    """Synthetic: organic matter (with its own pores) in about half the images."""
    wide: bool = False
    """Synthetic: styles also drawn across magnifications (sizes and blur 0.6-2.5x) and
    detectors (phase contrast 0.5-1.2x, noise up to 0.15)."""
    val_groups: list[str] = field(default_factory=list)
    """Sample groups (a stem's first ``_`` field) held out for validation."""
    skip_groups: list[str] = field(default_factory=list)
    """Sample groups left out of training and validation (a report's held-out groups)."""


@dataclass
class Recipe:
    path: Path
    model: dict
    train: dict
    sources: list[Source]


@dataclass
class Split:
    """Labelled Samples (named by file stem), per source: grey, with their data bar row."""

    train: dict[str, list[Sample]]
    val: dict[str, list[Sample]]

    def samples(self, part: str) -> list[Sample]:
        """Every Sample of ``part`` (``"train"`` or ``"val"``), named ``source/stem``."""
        by_source = self.train if part == "train" else self.val
        return [
            replace(s, name=f"{src}/{s.name}") for src, items in by_source.items() for s in items
        ]


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe against :data:`.recipe_schema.SCHEMA` (before anything it names
    is read); raise ValueError naming the problem."""
    from ..io.files import not_regular
    from .recipe_schema import check_recipe

    path = Path(path)
    kind = not_regular(path)
    if kind:  # a named pipe would block the read
        raise ValueError(f"{path}: cannot read the recipe (it is {kind}, not a file)")
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the recipe ({exc})") from None
    check_recipe(doc, path)
    sources = []
    for raw in doc.get("source", []):
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
    """Read every source and split it into training and validation Samples."""
    split = Split({}, {})
    for src in recipe.sources:
        train, val = _synthetic(src) if src.synthetic else _folder(src)
        split.train[src.name] = train * max(1, src.repeat)
        split.val[src.name] = val
    return split


def _folder(src: Source) -> tuple[list[Sample], list[Sample]]:
    """The source's image/label pairs as grey Samples, split by stem."""
    from ..io.images import read_sample

    labels = {p.stem: p for p in sorted(src.labels.iterdir()) if p.is_file()}
    skip = set(src.skip_groups)
    images = sorted(
        p for p in src.images.iterdir() if p.stem in labels and group(p.stem) not in skip
    )
    if not images:
        raise ValueError(f"source {src.name}: no image in {src.images} has a label")
    held = set(src.val) | {p.stem for p in images if group(p.stem) in src.val_groups}
    if src.val_last:
        held |= {p.stem for p in images[-src.val_last :]}
    train: list[Sample] = []
    val: list[Sample] = []
    for p in images:
        sample = read_sample(p, labels=labels[p.stem])
        if sample.rgb:
            sample = replace(sample, pixels=to_grey(sample.pixels), rgb=False)
        sample = replace(sample, name=p.stem)
        if p.stem in held:
            val.append(sample)
            continue
        if src.pores_unlabelled:
            sample = _without_pores(sample)
        train.append(sample)
    return train, val


def group(stem: str) -> str:
    """A tile's sample group: the first ``_``-separated field of its name."""
    return stem.split("_", 1)[0]


def _without_pores(sample: Sample) -> Sample:
    """Pore-like dark pixels above the data bar become 255 (only those rows: the bar's pixels
    would skew the intensity statistics)."""
    labels = np.array(sample.labels, np.uint8)
    rows = labels[: sample.rows]
    rows[unlabelled_pores(sample.content()) & (rows != IGNORE)] = IGNORE
    return sample.with_labels(labels)


def _synthetic(src: Source) -> tuple[list[Sample], list[Sample]]:
    rng = np.random.default_rng(src.seed)
    items = [_synthetic_sample(src, rng, i) for i in range(src.count + src.val_count)]
    return items[: src.count], items[src.count :]


def _synthetic_sample(src: Source, rng: np.random.Generator, i: int) -> Sample:
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
    if src.organic:  # organic matter in half the images, its grey between pore and matrix
        share = rng.uniform(0.1, 0.35) if rng.random() < 0.5 else 0.0
        grey = rng.uniform(style.pore + 0.08, max(style.pore + 0.1, style.matrix - 0.1))
        style = replace(style, organic_fraction=share, organic=grey)
    if src.wide:
        style = _widened(style, rng)
    image, labels = make_sample((src.size, src.size), seed=src.seed * 1000 + i, style=style)
    return Sample(image, labels=labels, name=f"{src.name}-{i}", metadata={"style": style})


def _widened(style: Style, rng: np.random.Generator) -> Style:
    """``style`` at another magnification ``m`` (sizes and blur) and detector contrast ``c``."""
    m = float(np.exp(rng.uniform(np.log(0.6), np.log(2.5))))
    c, mid = rng.uniform(0.5, 1.2), style.matrix
    return replace(
        style, grain_radius=style.grain_radius * m, pore_radius=style.pore_radius * m,
        organic_radius=style.organic_radius * m, blur=style.blur * max(1.0, m**0.5),
        grain=mid + c * (style.grain - mid), pore=mid + c * (style.pore - mid),
        organic=mid + c * (style.organic - mid), noise=rng.uniform(0.02, 0.15),
    )  # fmt: skip


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


def _usable(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The pixels and labels above the data bar (labels outside the region: 255)."""
    return np.asarray(sample.content()), sample.content(sample.masked_labels())


def _majority(samples: list[Sample]) -> int:
    counts = np.zeros(256, np.int64)
    for sample in samples:
        counts += np.bincount(_usable(sample)[1].ravel(), minlength=256)
    return int(np.argmax(counts[:3]))


def validation_report(split: Split, model, progress=None, **predict_kwargs) -> dict:
    """Per source: the model's and the baselines' metrics on the held-out Samples.

    Baselines: ``otsu`` (pore at or below Otsu's threshold over the labelled
    pixels, else matrix) and
    ``majority`` (every pixel the most frequent labelled class of the source's
    training Samples).
    """
    from ..analysis.metrics import ConfusionMatrix
    from ..inference.predict import predict

    report = {}
    for name, samples in split.val.items():
        if not samples:
            continue
        majority = _majority(split.train.get(name) or samples)
        cms = {k: ConfusionMatrix() for k in ("model", "otsu", "majority")}
        for sample in samples:
            image, lab = _usable(sample)
            cms["model"].update(lab, predict(image, model, **predict_kwargs).labels)
            cms["otsu"].update(lab, baseline(image, "otsu", lab))
            cms["majority"].update(lab, baseline(image, "majority", majority=majority))
            if progress is not None:
                progress(name, sample.name)
        report[name] = {k: cm.to_dict() for k, cm in cms.items()}
        report[name]["images"] = [sample.name for sample in samples]
    return report


def add_source_report(path: str | Path, recipe: Recipe, half: bool = False) -> dict:
    """Store a checkpoint's validation report per source (with baselines) in its metadata."""
    from ..model import load_checkpoint, save_checkpoint

    model = load_checkpoint(path)
    report = validation_report(load_split(recipe), model)
    model.meta.provenance["validation_by_source"] = report
    save_checkpoint(model, path, half=half, overwrite=True)
    return report
