"""Training data: Samples checked and turned into normalised regions, and the crop sampler.

Each step draws a batch of random crops whose centres are labelled pixels picked class-balanced
(rare pores are seen as often as the matrix) and augments image and mask together with
torchvision's v2 transforms (mild scale, flips, 90° turns, brightness / contrast / gamma,
Gaussian noise). Images are normalised exactly as ``predict`` does (the model's
``Normalization`` over the whole usable image), so inference agrees with training.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..classes import CLASS_NAMES, IGNORE, N_CLASSES
from ..inference.tiling import padded
from ..preprocess import Normalization, intensity_range, is_rgb, normalize, to_grey
from ..sample import Sample
from .config import TrainConfig
from .focus import Corrections
from .guards import check_labels

_MAX_CENTRES = 250_000  # candidate crop centres kept per class and image
MIN_SIDE = 32
"""Images (or regions) at least this big but smaller than a crop are padded; smaller: refused."""


@dataclass
class Region:
    """A normalised image region ready for cropping: ``u`` in [0, 1], labels 0/1/2/255."""

    u: np.ndarray
    labels: np.ndarray
    name: str
    corrected: np.ndarray | None = None
    """Fine-tuning: True where the labels differ from the starting model's prediction."""


def check_arrays(image, labels, name: str) -> None:
    """Raise ValueError (one sentence) unless ``image`` is 2-D grey/RGB with a 0/1/2/255 map."""
    if not (image.ndim == 2 or is_rgb(image)):
        raise ValueError(f"{name}: expected a 2-D grey or RGB image, got shape {image.shape}")
    if labels is None:
        raise ValueError(f"{name} has no labels")
    labels = np.asarray(labels)
    shape = tuple(image.shape[:2])
    if labels.ndim != 2:
        raise ValueError(f"{name}: the labels must be a 2-D map, got shape {labels.shape}")
    if labels.shape != shape:
        raise ValueError(f"{name}: the labels have shape {labels.shape} but the image {shape}")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"{name}: the labels must be integers, not {labels.dtype}")
    bad = np.setdiff1d(np.unique(labels), [0, 1, 2, IGNORE])
    if bad.size:
        raise ValueError(
            f"{name}: the labels hold values {bad[:5].tolist()}; allowed are 0 matrix, 1 grain, "
            "2 pore and 255 ignore"
        )


def sample_from_pair(image, labels, name: str = "") -> Sample:
    """An (image, labels) pair as a Sample, checked first (messages name ``name``)."""
    image, labels = np.asarray(image), np.asarray(labels)
    check_arrays(image, labels, name or "image")
    return Sample.from_array(image, labels=labels.astype(np.uint8, copy=False), name=name)


def samples_from_pairs(pairs, names=None, default: str = "image") -> list[Sample]:
    """Samples of ``pairs`` named ``names`` (default: ``"{default} 1"``, ...)."""
    names = list(names) if names is not None else [f"{default} {i + 1}" for i in range(len(pairs))]
    return [sample_from_pair(im, lab, n) for (im, lab), n in zip(pairs, names)]


def _usable(sample: Sample, name: str, crop: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The checked pixels and labels above the data bar (outside the region: 255)."""
    labels = None if sample.labels is None else sample.content(sample.labels)
    check_arrays(sample.content(), labels, name)  # only the usable rows matter
    labels = sample.content(sample.masked_labels())
    if crop is not None and min(labels.shape) < min(crop, MIN_SIDE):
        raise ValueError(
            f"{name} is {labels.shape[0]}x{labels.shape[1]} pixels, smaller than the "
            f"{min(crop, MIN_SIDE)}-pixel minimum for training (smaller crops are padded)"
        )
    return np.asarray(sample.content()), labels


def _to_unit(image: np.ndarray, norm: Normalization) -> np.ndarray:
    """The network's normalisation, mapped back to [0, 1] (stretched [-0.5, 1.5])."""
    low, high = intensity_range(image, norm)
    x = normalize(to_grey(image), low, high, norm)
    x *= np.float32(norm.std)
    x += np.float32(norm.mean + 0.5)
    x *= np.float32(0.5)
    return x


def unit_to_input(u: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Inverse of the [0, 1] mapping: the standardised network input."""
    return (u * 2 - 0.5 - norm.mean) / norm.std


def _split_block(labels: np.ndarray, fraction: float) -> tuple[tuple, tuple, int]:
    """Cut along the longer axis so the far block holds ``fraction`` of the labelled pixels."""
    axis = 0 if labels.shape[0] >= labels.shape[1] else 1
    counts = np.count_nonzero(labels != IGNORE, axis=1 - axis)
    cum = np.cumsum(counts)
    cut = int(np.searchsorted(cum, (1 - fraction) * cum[-1], side="left")) + 1
    cut = min(max(cut, 1), labels.shape[axis] - 1)
    train = (slice(None, cut), slice(None)) if axis == 0 else (slice(None), slice(None, cut))
    val = (slice(cut, None), slice(None)) if axis == 0 else (slice(None), slice(cut, None))
    return train, val, axis


def _describe(name: str, labels: np.ndarray) -> dict:
    counts = np.bincount(labels.ravel(), minlength=256)
    return {
        "name": name,
        "shape": list(labels.shape),
        "labelled_pixels": int(counts[:N_CLASSES].sum()),
        "class_pixels": dict(zip(CLASS_NAMES, counts[:N_CLASSES].tolist(), strict=True)),
    }


def _labelled(label_maps) -> bool:
    """True when any of the label maps holds a labelled pixel."""
    return any(np.any(labels != IGNORE) for labels in label_maps)


def _checked(samples: Sequence[Sample], default: str, crop: int | None) -> list:
    """``(pixels, labels, name)`` of each Sample, checked (see :func:`_usable`)."""
    out = []
    for i, sample in enumerate(samples):
        name = sample.name or f"{default} {i + 1}"
        out.append((*_usable(sample, name, crop), name))
    return out


def _whole(checked: list, norm: Normalization) -> list[Region]:
    return [Region(_to_unit(image, norm), labels, name) for image, labels, name in checked]


def _held_out(checked: list, fraction: float, norm: Normalization):
    train: list[Region] = []
    val: list[Region] = []
    for image, labels, name in checked:
        u = _to_unit(image, norm)  # the whole image's intensity range, as at inference
        if np.count_nonzero(labels != IGNORE) < 2:
            train.append(Region(u, labels, name))
            continue
        t, v, axis = _split_block(labels, fraction)
        train.append(Region(u[t], labels[t], name))
        what = "rows" if axis == 0 else "columns"
        val.append(Region(u[v], labels[v], f"{name} (held-out {what})"))
    if not _labelled(r.labels for r in val):
        raise ValueError(
            "too few labelled pixels to hold out a validation block; label more, give "
            "validation images, or set the validation fraction to 0"
        )
    return train, val


def prepare_data(
    samples: Sequence[Sample],
    config: TrainConfig,
    norm: Normalization,
    val_samples: Sequence[Sample] | None = None,
) -> tuple[list[Region], list[Region], dict]:
    """Check labelled Samples and turn them into training and validation regions.

    Only the rows above each data bar are used; labels outside a Sample's region count as
    255. Returns ``(train, val, description)`` (``description``: ``train`` and ``split``
    summaries for the provenance); raises ValueError in one sentence.
    """
    if not samples:
        raise ValueError("no training images were given")
    checked = _checked(samples, "image", config.crop)
    if not _labelled(lab for _, lab, _ in checked):
        raise ValueError(
            "the training labels hold no labelled pixels (everything is 255 or outside the "
            "region); correct some pixels first"
        )
    notes = check_labels([lab for _, lab, _ in checked])
    if val_samples:
        vchecked = _checked(val_samples, "validation image", None)
        if not _labelled(lab for _, lab, _ in vchecked):
            raise ValueError("the validation labels hold no labelled pixels (everything is 255)")
        train, val = _whole(checked, norm), _whole(vchecked, norm)
        how = "explicit validation images"
    elif config.val_fraction > 0:
        train, val = _held_out(checked, config.val_fraction, norm)
        how = f"held-out block of each image ({config.val_fraction:.0%} of its labelled pixels)"
    else:
        train, val, how = _whole(checked, norm), [], "none"
    if not _labelled(r.labels for r in train):
        raise ValueError("no labelled pixels are left for training after the validation split")
    description = {
        "train": [_describe(r.name, r.labels) for r in train],
        "split": {"validation": how, "val": [_describe(r.name, r.labels) for r in val]},
        "notes": notes,
    }
    return train, val, description


class _RandomRot90(v2.Transform):
    """Turn image and mask together by a random multiple of 90 degrees."""

    def make_params(self, flat_inputs):
        return {"k": int(torch.randint(0, 4, ()).item())}

    def transform(self, inpt, params):
        if not params["k"]:
            return inpt
        return tv_tensors.wrap(torch.rot90(inpt, params["k"], dims=(-2, -1)), like=inpt)


class _RandomGamma(v2.Transform):
    """Gamma ``exp(U(-log(1+s), log(1+s)))`` on the image; masks pass unchanged."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.log_range = math.log1p(strength)

    def make_params(self, flat_inputs):
        g = math.exp((torch.rand(()).item() * 2 - 1) * self.log_range)
        return {"gamma": g}

    def transform(self, inpt, params):
        if isinstance(inpt, tv_tensors.Image):
            return TF.adjust_gamma(inpt, params["gamma"])
        return inpt


def build_augmentation(config: TrainConfig) -> v2.Transform:
    """Joint image + mask augmentation; expects a window of side :func:`window_size`."""
    lo, hi = config.scale_range
    if (lo, hi) != (1.0, 1.0):
        # A square of side crop/s (s drawn from the scale range) of the window, resized.
        area = (min(lo, 1.0) / hi) ** 2, (min(lo, 1.0) / lo) ** 2
        geometric: list[v2.Transform] = [
            v2.RandomResizedCrop(config.crop, scale=area, ratio=(1.0, 1.0), antialias=False)
        ]
    else:
        geometric = [v2.CenterCrop(config.crop)]
    if config.flip:
        geometric += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if config.rotate90:
        geometric.append(_RandomRot90())
    photometric: list[v2.Transform] = []
    if config.brightness or config.contrast:
        photometric.append(v2.ColorJitter(brightness=config.brightness, contrast=config.contrast))
    if config.gamma:
        photometric.append(_RandomGamma(config.gamma))
    if config.noise:
        photometric.append(v2.GaussianNoise(sigma=config.noise, clip=True))
    return v2.Compose(geometric + photometric)


def window_size(config: TrainConfig) -> int:
    """Side of the window cut before augmentation (room for zooming out)."""
    lo, hi = config.scale_range
    if lo == hi == 1.0:
        return config.crop
    return int(math.ceil(config.crop / min(lo, 1.0)))


@contextlib.contextmanager
def _one_thread():
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class CropSampler(torch.utils.data.IterableDataset):
    """An endless stream of augmented ``(input (1,C,C) float32, target (C,C) int64)`` crops.

    Crop centres are labelled pixels: the class is drawn with probability
    ``class_balance / K + (1 - class_balance) * frequency``, then an image in
    proportion to its pixels of that class, then one of those pixels.
    """

    def __init__(self, regions: Sequence[Region], config: TrainConfig, norm: Normalization):
        super().__init__()
        self.regions = list(regions)
        self.config = config
        self.norm = norm
        self.window = window_size(config)
        self.transform = build_augmentation(config)
        self.centres: list[list[np.ndarray]] = []  # [class][region] -> flat indices
        counts = np.zeros((N_CLASSES, len(self.regions)), np.int64)
        for c in range(N_CLASSES):
            per_region = []
            for j, r in enumerate(self.regions):
                idx = np.flatnonzero(r.labels == c)
                counts[c, j] = idx.size
                if idx.size > _MAX_CENTRES:
                    idx = idx[:: int(math.ceil(idx.size / _MAX_CENTRES))]
                per_region.append(idx)
            self.centres.append(per_region)
        self.class_counts = counts.sum(1)
        present = self.class_counts > 0
        freq = self.class_counts / self.class_counts.sum()
        p = config.class_balance * present / present.sum() + (1 - config.class_balance) * freq
        self.class_p = p / p.sum()
        self.region_p = [
            (counts[c] / counts[c].sum()) if counts[c].sum() else None for c in range(N_CLASSES)
        ]
        self.focus = Corrections(self.regions)
        self.weighted = config.focus_weight != 1 and self.focus.total > 0
        self.rng: np.random.Generator | None = None  # the stream's, once iterated
        self.resume_rng: dict | None = None  # a saved ``rng`` state to continue from

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        self.rng = rng = np.random.default_rng([self.config.seed, worker])
        if self.resume_rng is not None and info is None:  # a resumed run (training.resume)
            rng.bit_generator.state, self.resume_rng = self.resume_rng, None
        while True:
            yield self.sample(rng)

    def centre(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A crop centre ``(region, row, column)``: corrected (a ``focus`` share) or balanced."""
        if self.focus.total and rng.random() < self.config.focus:
            j, flat = self.focus.pick(rng)
        else:
            c = int(rng.choice(N_CLASSES, p=self.class_p))
            j = int(rng.choice(len(self.regions), p=self.region_p[c]))
            idx = self.centres[c][j]
            flat = idx[rng.integers(idx.size)]
        cy, cx = np.unravel_index(flat, self.regions[j].labels.shape)
        return j, int(cy), int(cx)

    def _window(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        j, cy, cx = self.centre(rng)
        region = self.regions[j]
        w = self.window
        jitter = rng.integers(-(w // 4), w // 4 + 1, size=2)
        h_img, w_img = region.labels.shape
        y0 = int(np.clip(cy + jitter[0] - w // 2, 0, max(h_img - w, 0)))
        x0 = int(np.clip(cx + jitter[1] - w // 2, 0, max(w_img - w, 0)))
        u = region.u[y0 : y0 + w, x0 : x0 + w]
        lab = region.labels[y0 : y0 + w, x0 : x0 + w]
        if self.weighted:  # the corrected flag rides along as 3 + class (255 stays ignored)
            corrected = region.corrected[y0 : y0 + w, x0 : x0 + w]
            lab = np.where(corrected, lab + N_CLASSES, lab).astype(np.uint8)
        if u.shape != (w, w):  # a region smaller than the window: mirror the image, ignore labels
            lab = np.pad(lab, ((0, w - u.shape[0]), (0, w - u.shape[1])), constant_values=IGNORE)
            u = padded(u, w, w)
        return u, lab

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One augmented crop."""
        u, lab = self._window(rng)
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(u))[None])
        mask = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(lab))[None])
        with _one_thread():  # tiny ops: extra threads only add overhead
            image, mask = self.transform(image, mask)
        x = unit_to_input(image.as_subclass(torch.Tensor), self.norm)
        y = mask.as_subclass(torch.Tensor)[0].long()
        if not self.weighted:
            return x.float(), y
        weight = torch.where((y >= N_CLASSES) & (y != IGNORE), self.config.focus_weight, 1.0)
        return x.float(), torch.where(y == IGNORE, y, y % N_CLASSES), weight
