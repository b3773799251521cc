"""Training and fine-tuning from (image, label map) pairs.

Labels use the package encoding 0 matrix / 1 grain / 2 pore / 255 ignore; ignored
pixels count in neither the loss nor the metrics, so partly labelled images work.

Each step draws a batch of random crops whose centres are labelled pixels picked
class-balanced (rare pores are seen as often as the matrix), augments image and
mask together with torchvision's v2 transforms (mild scale, flips, 90° turns,
brightness / contrast / gamma, Gaussian noise) and minimises cross-entropy + Dice
(smp) with AdamW under a linear warm-up and a cosine decay. Images are normalised
exactly as :func:`~napari_poregrain.predict.predict` does (the model's
``Normalization`` over the whole image), so inference agrees with training.

Every "epoch" (a fixed number of steps) the model is evaluated on validation
data — explicit pairs, or a contiguous held-out block of every image that is
never trained on — with per-class IoU; the best model is written atomically to
``out_path`` (only that file, which this run creates, is ever replaced), a CSV log
beside it, and training stops early after ``patience`` epochs without a gain.
``should_stop()`` is checked before every step: a cancelled run returns with the
last best checkpoint intact, and the starting model (file and object) is never
modified.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..analysis.metrics import ConfusionMatrix
from ..callbacks import Cancelled, StopFn, check_stop
from ..classes import CLASS_NAMES, IGNORE, N_CLASSES
from ..inference.predict import (
    blend_tiles,
    default_batch,
    make_plan,
    padded,
    resolve_device,
    resolve_precision,
)
from ..inference.tiling import MULTIPLE
from ..io.atomic import atomic_write_bytes
from ..model import LoadedModel, ModelMeta, build_model, save_checkpoint
from ..preprocess import Normalization, intensity_range, is_rgb, normalize, to_grey

DEFAULT_STEPS = 300
"""Optimisation steps when a config gives neither ``steps`` nor ``epochs``."""
MIN_STEPS_PER_EPOCH = 10
MAX_BAD_STEPS = 20
"""Training stops with an error after this many steps in a row with a non-finite loss."""
_MAX_CENTRES = 250_000  # candidate crop centres kept per class and image


@dataclass
class TrainConfig:
    """The training recipe (stored in the checkpoint's provenance)."""

    crop: int = 256
    """Side of the square training crops (a multiple of 16)."""
    batch: int = 4
    steps: int | None = None
    """Total optimisation steps; give this or ``epochs`` (neither: ``DEFAULT_STEPS``)."""
    epochs: int | None = None
    steps_per_epoch: int | None = None
    """Steps between validations; None: enough crops to cover the labelled area once (>= 10)."""
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int | None = None
    """Linear warm-up steps; None: a tenth of the run, at most 200."""
    min_lr_ratio: float = 0.01
    """The cosine decay ends at ``lr * min_lr_ratio``."""
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    """Mixed precision on CUDA (bf16, or fp16 with loss scaling); the CPU always runs fp32."""
    val_fraction: float = 0.2
    """Without explicit validation pairs: the share of each image's labelled pixels held out."""
    patience: int | None = 10
    """Stop after this many epochs without a better validation score (None: never)."""
    encoder: str = "resnet18"
    """Encoder of a model trained from scratch (ignored when fine-tuning)."""
    refine: bool = True
    """From scratch: add the full-resolution refinement head (ignored when fine-tuning)."""
    class_balance: float = 0.75
    """Probability that a crop centre's class is drawn uniformly rather than by frequency."""
    flip: bool = True
    rotate90: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.15
    contrast: float = 0.2
    gamma: float = 0.2
    noise: float = 0.03
    """Standard deviation of the added Gaussian noise (stretched intensities span 0..1)."""
    freeze_bn: bool = False
    """Keep BatchNorm statistics fixed (useful when fine-tuning with tiny batches)."""
    num_workers: int = 0
    eval_tile: int = 512
    ema: float = 0.0
    """Decay of an exponential moving average of the weights, which is validated and saved
    instead of the raw weights (0: off). Steadies long runs; e.g. 0.995 for 2,000+ steps."""

    def validate(self) -> None:
        """Raise ValueError naming the first unusable setting."""
        if self.crop < 2 * MULTIPLE or self.crop % MULTIPLE:
            raise ValueError(
                f"the crop size must be a multiple of 16 and at least 32, not {self.crop}"
            )
        if self.batch < 1:
            raise ValueError(f"the batch size must be at least 1, not {self.batch}")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give the number of steps or of epochs, not both")
        for name in ("steps", "epochs", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError("the learning rate must be positive and the weight decay >= 0")
        if not 0 <= self.val_fraction <= 0.9:
            raise ValueError(
                f"the validation fraction must be in [0, 0.9], not {self.val_fraction}"
            )
        if not 0 <= self.class_balance <= 1:
            raise ValueError(f"class_balance must be in [0, 1], not {self.class_balance}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi <= 4:
            raise ValueError(f"the scale range must satisfy 0 < low <= high <= 4, not {lo}..{hi}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 epoch, not {self.patience}")
        if min(self.brightness, self.contrast, self.gamma, self.noise) < 0:
            raise ValueError("augmentation strengths must be >= 0")
        if self.num_workers < 0:
            raise ValueError("num_workers must be >= 0")
        if not 0 <= self.ema < 1:
            raise ValueError(f"the EMA decay must be in [0, 1), not {self.ema}")


@dataclass
class TrainEvent:
    """What a running training reports through its ``progress`` callback.

    ``kind`` is ``"step"`` after every optimisation step (``loss`` of that step) or
    ``"epoch"`` after each validation (``train_loss`` = mean of the epoch, ``val_iou``
    per class with None for an undefined class, ``best`` when the model was saved).
    Epoch 0 is the starting model's validation (fine-tuning only).
    """

    kind: str
    step: int
    total_steps: int
    epoch: int
    lr: float = 0.0
    loss: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    val_iou: list[float | None] | None = None
    val_miou: float | None = None
    best: bool = False


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    ``path`` is the best checkpoint (None when a cancelled run saved none yet);
    ``history`` holds one dict per epoch (the CSV rows).
    """

    path: Path | None
    log_path: Path
    best_epoch: int | None
    best_metrics: dict | None
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    stopped_early: bool = False


ProgressCallback = Callable[[TrainEvent], None]


def log_path_for(out_path: str | Path) -> Path:
    """The per-epoch CSV log written beside a model: ``NAME.csv``."""
    return Path(out_path).with_suffix(".csv")


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class _Region:
    """A normalised image region ready for cropping: ``u`` in [0, 1], labels 0/1/2/255."""

    u: np.ndarray
    labels: np.ndarray
    name: str


def _check_pair(image, labels, name: str, crop: int | None) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    labels = np.asarray(labels)
    if not (image.ndim == 2 or is_rgb(image)):
        raise ValueError(f"{name}: expected a 2-D grey or RGB image, got shape {image.shape}")
    shape = image.shape[:2]
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
    if crop is not None and min(shape) < crop:
        raise ValueError(
            f"{name} is {shape[0]}x{shape[1]} pixels, smaller than the {crop}-pixel training "
            "crop; choose a smaller crop"
        )
    return image, labels.astype(np.uint8, copy=False)


def _to_unit(image: np.ndarray, norm: Normalization) -> np.ndarray:
    """The network's normalisation, mapped back to [0, 1] (stretched [-0.5, 1.5])."""
    low, high = intensity_range(image, norm)
    x = normalize(to_grey(image), low, high, norm)
    x *= np.float32(norm.std)
    x += np.float32(norm.mean + 0.5)
    x *= np.float32(0.5)
    return x


def _unit_to_input(u: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Inverse of the [0, 1] mapping: the standardised network input."""
    return (u * 2 - 0.5 - norm.mean) / norm.std


def _split_block(labels: np.ndarray, fraction: float) -> tuple[slice, slice, int]:
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


def prepare_data(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    norm: Normalization,
    val_pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    names: Sequence[str] | None = None,
    val_names: Sequence[str] | None = None,
) -> tuple[list[_Region], list[_Region], dict]:
    """Check the pairs and turn them into training and validation regions.

    Returns ``(train, val, description)`` (``description``: ``train`` and ``split``
    summaries for the provenance); raises ValueError in one sentence.
    """
    if not pairs:
        raise ValueError("no training images were given")
    names = list(names) if names is not None else [f"image {i + 1}" for i in range(len(pairs))]
    checked = [_check_pair(im, lab, n, config.crop) for (im, lab), n in zip(pairs, names)]
    if not any(np.any(lab != IGNORE) for _, lab in checked):
        raise ValueError("the training labels hold no labelled pixels (everything is 255)")
    train: list[_Region] = []
    val: list[_Region] = []
    if val_pairs:
        val_names = (
            list(val_names)
            if val_names is not None
            else [f"validation image {i + 1}" for i in range(len(val_pairs))]
        )
        vchecked = [_check_pair(im, lab, n, None) for (im, lab), n in zip(val_pairs, val_names)]
        if not any(np.any(lab != IGNORE) for _, lab in vchecked):
            raise ValueError("the validation labels hold no labelled pixels (everything is 255)")
        for (image, labels), name in zip(checked, names):
            train.append(_Region(_to_unit(image, norm), labels, name))
        for (image, labels), name in zip(vchecked, val_names):
            val.append(_Region(_to_unit(image, norm), labels, name))
        how = "explicit validation images"
    elif config.val_fraction > 0:
        for (image, labels), name in zip(checked, names):
            u = _to_unit(image, norm)  # the whole image's intensity range, as at inference
            if np.count_nonzero(labels != IGNORE) < 2:
                train.append(_Region(u, labels, name))
                continue
            t, v, axis = _split_block(labels, config.val_fraction)
            train.append(_Region(u[t], labels[t], name))
            val.append(
                _Region(u[v], labels[v], f"{name} (held-out {'rows' if axis == 0 else 'columns'})")
            )
        if not any(np.any(r.labels != IGNORE) for r in val):
            raise ValueError(
                "too few labelled pixels to hold out a validation block; label more, give "
                "validation images, or set the validation fraction to 0"
            )
        how = f"held-out block of each image ({config.val_fraction:.0%} of its labelled pixels)"
    else:
        for (image, labels), name in zip(checked, names):
            train.append(_Region(_to_unit(image, norm), labels, name))
        how = "none"
    if not any(np.any(r.labels != IGNORE) for r in train):
        raise ValueError("no labelled pixels are left for training after the validation split")
    description = {
        "train": [_describe(r.name, r.labels) for r in train],
        "split": {"validation": how, "val": [_describe(r.name, r.labels) for r in val]},
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

    def __init__(self, regions: Sequence[_Region], config: TrainConfig, norm: Normalization):
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

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([self.config.seed, worker])
        while True:
            yield self.sample(rng)

    def _window(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        c = int(rng.choice(N_CLASSES, p=self.class_p))
        j = int(rng.choice(len(self.regions), p=self.region_p[c]))
        region = self.regions[j]
        idx = self.centres[c][j]
        cy, cx = np.unravel_index(idx[rng.integers(idx.size)], region.labels.shape)
        w = self.window
        jitter = rng.integers(-(w // 4), w // 4 + 1, size=2)
        h_img, w_img = region.labels.shape
        y0 = int(np.clip(cy + jitter[0] - w // 2, 0, max(h_img - w, 0)))
        x0 = int(np.clip(cx + jitter[1] - w // 2, 0, max(w_img - w, 0)))
        u = region.u[y0 : y0 + w, x0 : x0 + w]
        lab = region.labels[y0 : y0 + w, x0 : x0 + w]
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
        x = _unit_to_input(image.as_subclass(torch.Tensor), self.norm)
        return x.float(), mask.as_subclass(torch.Tensor)[0].long()


# ---------------------------------------------------------------------------------------------
# Loss, schedule, evaluation


class SegmentationLoss(nn.Module):
    """Cross-entropy + multiclass Dice (smp), both ignoring label 255."""

    def __init__(self) -> None:
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss

        self.dice = DiceLoss(mode="multiclass", ignore_index=IGNORE)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        n = (target != IGNORE).sum().clamp_min(1)
        ce = nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum") / n
        return ce + self.dice(logits, target)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): warm-up, then cosine."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def evaluate_regions(
    net: nn.Module,
    regions: Sequence[_Region],
    norm: Normalization,
    device: torch.device,
    *,
    amp: bool = True,
    tile: int = 512,
    should_stop: StopFn | None = None,
) -> tuple[ConfusionMatrix, float]:
    """Confusion matrix and mean cross-entropy of ``net`` over labelled validation pixels.

    Regions are tiled and blended exactly as :func:`~napari_poregrain.predict.predict`
    does; autocast only on CUDA with ``amp`` (the CPU validates in fp32).
    """
    dtype = resolve_precision("auto", device) if amp and device.type == "cuda" else torch.float32
    batch = default_batch(device)
    modes = [(m, m.training) for m in net.modules()]  # e.g. frozen BatchNorm stays frozen
    net.eval()
    cm = ConfusionMatrix()
    nll, count = 0.0, 0
    try:
        for r in regions:
            keep = r.labels != IGNORE
            if not keep.any():
                continue
            x = _unit_to_input(torch.from_numpy(r.u), norm).numpy()
            plan = make_plan(net, device, dtype, *x.shape, tile=tile, batch_size=batch)

            def tile_input(y0, x0, x=x, plan=plan):
                part = x[y0 : y0 + plan.tile_h, x0 : x0 + plan.tile_w]
                return padded(part, plan.tile_h, plan.tile_w)

            def score(y0, x0, sums, weights, labels=r.labels):
                nonlocal nll, count
                h, w = weights.shape
                probs = sums / weights
                truth = labels[y0 : y0 + h, x0 : x0 + w]
                cm.update(truth, probs.argmax(0).numpy().astype(np.uint8))
                k = torch.from_numpy(truth != IGNORE)
                target = torch.from_numpy(truth.astype(np.int64))
                p_true = probs.gather(0, torch.where(k, target, 0)[None])[0][k]
                nll += float(-torch.log(p_true.clamp_min(1e-7)).sum())
                count += int(k.sum())

            blend_tiles(tile_input, x.shape, plan, score, should_stop=should_stop)
    finally:
        for m, mode in modes:
            m.training = mode
    return cm, nll / max(count, 1)


# ---------------------------------------------------------------------------------------------
# The loop


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _adamw(net: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, with the fused kernel where torch has one for the device (2x faster on CPU)."""
    params = [p for p in net.parameters() if p.requires_grad]
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, TypeError):  # pragma: no cover - older torch
            pass
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _freeze_bn(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@contextlib.contextmanager
def _deterministic(device: torch.device, seed: int):
    """Seed torch (restoring the caller's RNG afterwards); deterministic kernels on the CPU."""
    devices = [device.index or 0] if device.type == "cuda" else []
    was = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was, warn_only=warn)


def _write_log(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def _round(v: float | None, digits: int = 5) -> float | None:
    return None if v is None else round(float(v), digits)


def train(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig | None = None,
    init: LoadedModel | None = None,
    out_path: str | Path = "model.safetensors",
    *,
    val_pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    names: Sequence[str] | None = None,
    val_names: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopFn | None = None,
    name: str | None = None,
    half: bool = False,
    provenance: dict | None = None,
) -> TrainResult:
    """Train (``init=None``: from scratch) or fine-tune ``init`` and save the best model.

    ``pairs``: (image, labels) with labels 0/1/2/255. The model is written to
    ``out_path`` (refused if it or its CSV log exists) whenever validation
    improves; without validation data, after every epoch. Bad input raises
    ValueError (FileExistsError for an existing output) in one sentence before
    anything is written. A cancelled run returns with ``cancelled=True``.
    ``name`` is the model's name (default: the file's stem), ``half`` stores fp16
    weights, ``provenance`` adds entries to the checkpoint's provenance.
    """
    cfg = copy.deepcopy(config) if config is not None else TrainConfig()
    cfg.validate()
    out_path = Path(out_path)
    log_path = log_path_for(out_path)
    if out_path.suffix != ".safetensors":
        raise ValueError(f"{out_path}: a model file must end in .safetensors")
    if (
        init is not None
        and init.path is not None
        and out_path.resolve() == Path(init.path).resolve()
    ):
        raise ValueError(f"{out_path} is the starting model; choose another output name")
    for p in (out_path, log_path):
        if p.exists():
            raise FileExistsError(f"{p} already exists; choose another name")
    norm = init.meta.normalization if init is not None else Normalization()
    train_regions, val_regions, data_desc = prepare_data(
        pairs, cfg, norm, val_pairs, names, val_names
    )
    device = resolve_device(cfg.device)
    sampler = CropSampler(train_regions, cfg, norm)

    labelled = sum(int(np.count_nonzero(r.labels != IGNORE)) for r in train_regions)
    spe = cfg.steps_per_epoch or max(
        MIN_STEPS_PER_EPOCH, math.ceil(labelled / (cfg.crop**2 * cfg.batch))
    )
    if cfg.epochs is not None:
        total = cfg.epochs * spe
    else:
        total = cfg.steps or DEFAULT_STEPS
    spe = min(spe, total)
    warmup = cfg.warmup if cfg.warmup is not None else min(200, total // 10)

    if init is not None:
        meta = replace(init.meta, name=name or out_path.stem, provenance={})
        parent = {"name": init.meta.name, "encoder": init.meta.encoder}
        if init.path is not None and Path(init.path).is_file():
            parent.update(file=Path(init.path).name, sha256=_sha256(Path(init.path)))
    else:
        meta = ModelMeta(encoder=cfg.encoder, refine=cfg.refine, name=name or out_path.stem)
        parent = None
    recipe = asdict(cfg)
    recipe.update(
        total_steps=total,
        steps_per_epoch=spe,
        warmup=warmup,
        device=str(device),
        loss="cross-entropy + Dice (ignore 255)",
        optimizer="AdamW",
        schedule="warm-up + cosine",
    )
    history: list[dict] = []
    result = TrainResult(None, log_path, None, None, history, 0, total)
    start = time.perf_counter()
    amp = cfg.amp and device.type == "cuda"

    with _deterministic(device, cfg.seed):
        net = copy.deepcopy(init.net) if init is not None else build_model(cfg.encoder, cfg.refine)
        net = net.to(device).train()
        if cfg.freeze_bn:
            _freeze_bn(net)
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        opt = _adamw(net, cfg, device)
        ema = (
            AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
            if cfg.ema
            else None
        )
        kept = net if ema is None else ema.module  # the weights validated and saved
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, total, warmup, cfg.min_lr_ratio)
        )
        use_scaler = amp and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        loss_fn = SegmentationLoss()
        loader = torch.utils.data.DataLoader(
            sampler,
            batch_size=cfg.batch,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=False,
        )
        best_score = -math.inf
        since_best = 0
        saved = False

        def save(epoch: int, metrics: dict | None) -> None:
            nonlocal saved
            meta.provenance = {
                "kind": "fine-tune" if init is not None else "scratch",
                "parent": parent,
                "data": data_desc["train"],
                "split": data_desc["split"],
                "recipe": recipe,
                "validation": metrics,
                "epoch": epoch,
                "step": result.steps,
                **(provenance or {}),
            }
            # save_checkpoint copies the tensors to the CPU; the file is this run's own
            save_checkpoint(LoadedModel(kept, meta), out_path, half=half, overwrite=saved)
            saved = True
            result.path = out_path

        def validate(epoch: int, train_loss: float | None) -> None:
            nonlocal best_score, since_best
            row = {
                "epoch": epoch,
                "step": result.steps,
                "seconds": round(time.perf_counter() - start, 2),
                "lr": _round(opt.param_groups[0]["lr"], 8),
                "train_loss": _round(train_loss),
            }
            best = False
            iou: list[float | None] | None = None
            miou = val_loss = None
            metrics = None
            if val_regions:
                cm, val_loss = evaluate_regions(
                    kept, val_regions, norm, device, amp=amp, tile=cfg.eval_tile,
                    should_stop=should_stop,
                )  # fmt: skip
                iou, miou = cm.per_class_iou(), cm.mean_iou()
                metrics = {
                    "epoch": epoch,
                    "per_class_iou": dict(zip(CLASS_NAMES, map(_round, iou), strict=True)),
                    "mean_iou": _round(miou),
                    "loss": _round(val_loss),
                    "pixels": cm.total,
                }
                score = -math.inf if miou is None else miou
                if score > best_score:
                    best_score, since_best, best = score, 0, True
                elif epoch > 0:
                    since_best += 1
            elif epoch > 0:
                best = True  # no validation data: keep the latest model
            row.update(val_loss=_round(val_loss))
            for name, v in zip(CLASS_NAMES, iou or [None] * N_CLASSES, strict=True):
                row[f"val_iou_{name}"] = _round(v)
            row.update(val_miou=_round(miou), best=int(best))
            history.append(row)
            if best:
                save(epoch, metrics)
                result.best_epoch, result.best_metrics = epoch, metrics
            _write_log(log_path, history)
            if progress is not None:
                progress(
                    TrainEvent(
                        "epoch",
                        result.steps,
                        total,
                        epoch,
                        lr=row["lr"],
                        train_loss=train_loss,
                        val_loss=val_loss,
                        val_iou=iou,
                        val_miou=miou,
                        best=best,
                    )  # fmt: skip
                )

        try:
            if init is not None and val_regions:
                validate(0, None)  # the starting model is the first candidate
            batches = iter(loader)
            epoch, losses, bad_steps = 1, [], 0
            while result.steps < total:
                check_stop(should_stop)
                x, y = next(batches)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(device, amp):
                    logits = net(x)
                loss = loss_fn(logits, y)
                if not torch.isfinite(loss):
                    bad_steps += 1
                    if bad_steps > MAX_BAD_STEPS:
                        raise FloatingPointError(
                            f"the loss was not finite in {bad_steps} steps in a row; lower "
                            "the learning rate"
                        )
                    continue  # skip this batch, keep the weights
                bad_steps = 0
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(net)
                lr = opt.param_groups[0]["lr"]
                sched.step()
                result.steps += 1
                value = float(loss.detach())
                losses.append(value)
                if progress is not None:
                    progress(TrainEvent("step", result.steps, total, epoch, lr, value))
                if result.steps % spe == 0 or result.steps == total:
                    validate(epoch, float(np.mean(losses)))
                    epoch, losses = epoch + 1, []
                    if cfg.patience is not None and since_best >= cfg.patience:
                        result.stopped_early = True
                        break
        except Cancelled:
            result.cancelled = True
    result.seconds = time.perf_counter() - start
    return result


def load_training_log(path: str | Path) -> list[dict]:
    """Read a CSV log written by :func:`train` (numbers as floats, blanks as None)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]
