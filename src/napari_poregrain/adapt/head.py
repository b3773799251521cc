"""The pixel head: a small MLP over the feature stack that corrects the network's prediction.

Its logits are added to the network's log-probabilities (a residual, zero before fitting), so
with little evidence it keeps what the network knew; a class absent from the correction keeps
the network's own score. Chosen over random forests, HistGradientBoosting and LightGBM on the
protocol in ``benchmarks/finetune.py`` (as accurate or better, fastest to fit and to predict,
and stored as plain tensors). Without the network in the feature set it is a plain MLP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..classes import CLASS_NAMES, IGNORE
from .features import FeatureSet, ImageFeatures, Window

N_CLASSES = len(CLASS_NAMES)
HIDDEN = 64
MIN_PIXELS = 32
CHUNK = 1 << 18
_EPS = 1e-4


class HeadNet(nn.Module):
    """Standardise, two hidden layers, residual logits (last layer zero at initialisation)."""

    def __init__(self, n_in: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        self.register_buffer("present", torch.ones(N_CLASSES))
        self.mlp = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, N_CLASSES),
        )  # fmt: skip
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """(N, C) features (and (N, 3) network log-probabilities or None) -> (N, 3) logits."""
        logits = self.mlp((x - self.mean) / self.std) * self.present
        return logits if prior is None else logits + prior

    def channels_first(self, x: torch.Tensor, prior: bool) -> torch.Tensor:
        """(C, N) features -> (3, N) logits, the standardisation folded into the first layer
        (no transposed copy of the features: about twice as fast as :meth:`forward`)."""
        first, second, last = self.mlp[0], self.mlp[2], self.mlp[4]
        w = first.weight / self.std
        h = torch.relu(torch.addmm((first.bias - w @ self.mean)[:, None], w, x))
        h = torch.relu(torch.addmm(second.bias[:, None], second.weight, h))
        logits = torch.addmm(last.bias[:, None], last.weight, h) * self.present[:, None]
        return logits + torch.log(x[-N_CLASSES:].clamp(_EPS, 1)) if prior else logits


class PixelHead:
    """A fitted head with the feature set and the network it belongs to."""

    def __init__(self, net: HeadNet, features: FeatureSet, network: str | None) -> None:
        self.net, self.features, self.network = net.eval(), features, network

    @torch.inference_mode()
    def predict_proba(self, features: ImageFeatures, window: Window | None = None) -> np.ndarray:
        """(3, h, w) float32 class probabilities over ``window`` (None: the whole image)."""
        self.check(features)
        stack = features.window(window)
        c, h, w = stack.shape
        flat = stack.reshape(c, h * w)
        out = np.empty((N_CLASSES, h * w), np.float32)
        for i in range(0, h * w, CHUNK):
            x = torch.from_numpy(flat[:, i : i + CHUNK]).float()
            logits = self.net.channels_first(x, self.features.network)
            out[:, i : i + CHUNK] = torch.softmax(logits, 0).numpy()
        return out.reshape(N_CLASSES, h, w)

    def predict(self, features: ImageFeatures, window: Window | None = None) -> np.ndarray:
        """(h, w) uint8 classes over ``window``."""
        return self.predict_proba(features, window).argmax(0).astype(np.uint8)

    def check(self, features: ImageFeatures) -> None:
        """ValueError unless ``features`` was computed with this head's feature set."""
        if features.features.signature != self.features.signature:
            raise ValueError(
                "these features were computed with another feature set than the head's"
            )
        if self.network and getattr(features, "network", None) not in (None, self.network):
            raise ValueError("these features come from another network than the head's")


def _prior(x: torch.Tensor) -> torch.Tensor:
    """The network's log-probabilities: the last three feature channels."""
    return torch.log(x[:, -N_CLASSES:].clamp(_EPS, 1))


def fit_head(
    features: ImageFeatures | Sequence[ImageFeatures],
    labels: np.ndarray | Sequence[np.ndarray],
    *,
    max_pixels: int = 200_000,
    seed: int = 0,
    steps: int = 300,
) -> PixelHead:
    """Fit a head on the labelled pixels (0/1/2; 255 unlabelled) of one or more images.

    At most ``max_pixels`` pixels, balanced across the classes present, train ``steps``
    mini-batches of AdamW on one CPU thread (a tiny network: more threads only wait on each
    other, and many times over on a busy machine). ValueError (one sentence) for no labelled
    pixel, a single class, or fewer than :data:`MIN_PIXELS` labelled pixels. ``labels`` may
    also cover the whole image (data-bar rows included).
    """
    stacks = [features] if isinstance(features, ImageFeatures) else list(features)
    maps = [labels] if isinstance(labels, np.ndarray) else list(labels)
    if len(stacks) != len(maps) or not stacks:
        raise ValueError("give one label map for every feature stack")
    x, y = _balanced(stacks, maps, max_pixels, np.random.default_rng(seed))
    fs = stacks[0].features
    net = HeadNet(x.shape[1])
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y.astype(np.int64))
    net.mean.copy_(xt.mean(0))
    net.std.copy_(xt.std(0).clamp_min(1e-3))
    net.present.copy_(torch.from_numpy(np.isin(np.arange(N_CLASSES), y).astype(np.float32)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(net, xt, yt, fs.network, steps, seed)
    finally:
        torch.set_num_threads(threads)
    return PixelHead(net, fs, getattr(stacks[0], "network", None))


def _balanced(stacks, maps, max_pixels: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_pixels`` labelled (features, class) rows, an equal share per class."""
    found: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, (f, lab) in enumerate(zip(stacks, maps, strict=True)):
        lab = np.asarray(lab)
        if lab.shape == (f.height, f.shape[1]):  # the whole image: cut the data-bar rows
            lab = lab[: f.shape[0]]
        if lab.shape != f.shape:
            raise ValueError(f"labels of shape {lab.shape} do not match the image's {f.shape}")
        if f.features.signature != stacks[0].features.signature:
            raise ValueError("the feature stacks were computed with different feature sets")
        for c in range(N_CLASSES):
            idx = np.flatnonzero(lab.ravel() == c)
            if idx.size:
                found.setdefault(c, []).append((i, idx))
    total = sum(idx.size for parts in found.values() for _, idx in parts)
    _check_counts(total, found)
    share = max_pixels // len(found)
    xs, ys = [], []
    for c, parts in found.items():
        n = sum(idx.size for _, idx in parts)
        frac = min(1.0, share / n)
        for i, idx in parts:
            pick = idx if frac >= 1 else rng.choice(idx, max(1, round(idx.size * frac)), False)
            flat = stacks[i].array.reshape(stacks[i].array.shape[0], -1)
            xs.append(flat[:, np.sort(pick)].T)
            ys.append(np.full(pick.size, c, np.uint8))
    return np.concatenate(xs), np.concatenate(ys)


def _check_counts(total: int, found: dict) -> None:
    if total == 0:
        raise ValueError("the correction has no labelled pixel: paint some matrix, grain or pore")
    if total < MIN_PIXELS:
        raise ValueError(
            f"the correction has only {total} labelled pixels; paint at least {MIN_PIXELS}"
        )
    if len(found) < 2:
        name = CLASS_NAMES[next(iter(found))]
        raise ValueError(f"the correction holds only {name} pixels: paint a second class too")


def _train(net: HeadNet, x, y, network: bool, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(net.mlp.parameters(), 3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=steps)
    prior = _prior(x) if network else None
    batch = min(2048, x.shape[0])
    net.train()
    for _ in range(steps):
        j = torch.randint(0, x.shape[0], (batch,), generator=gen)
        logits = net(x[j], None if prior is None else prior[j])
        loss = nn.functional.cross_entropy(logits, y[j], ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
