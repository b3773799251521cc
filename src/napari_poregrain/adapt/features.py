"""Per-image feature stack: the filter bank (:mod:`.filters`) plus the network's probabilities.

Computed tile by tile from a 2-D :class:`~napari_poregrain.sample.Sample` (NumPy or lazy), on the
CPU or a GPU, with a halo wide enough for the largest sigma; held as float16 ``(C, rows, width)``
over the usable rows (above the data bar). A window is a view, so a live preview is cheap.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from ..callbacks import ProgressFn, StopFn, check_stop
from ..classes import CLASS_NAMES
from ..model import LoadedModel
from ..preprocess import intensity_range, normalize, to_grey
from ..sample import Sample
from .filters import FilterBank
from .proba import network_proba

FEATURE_TILE = 1024
Window = tuple[int, int, int, int]
"""``(y0, x0, y1, x1)`` over the usable rows."""


@dataclass(frozen=True)
class FeatureSet:
    """What a stack holds: a filter bank and whether the network's probabilities join it."""

    bank: FilterBank = field(default_factory=FilterBank)
    network: bool = True

    @property
    def names(self) -> list[str]:
        probs = [f"p_{c}" for c in CLASS_NAMES] if self.network else []
        return self.bank.names + probs

    def to_dict(self) -> dict:
        bank = self.bank
        return {"sigmas": list(bank.sigmas), "filters": list(bank.filters), "raw": bank.raw,
                "network": self.network}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSet:
        bank = FilterBank(tuple(float(s) for s in d["sigmas"]), tuple(d["filters"]), d["raw"])
        return cls(bank, bool(d["network"]))

    @property
    def signature(self) -> str:
        """A short hash of the feature set (a head fitted on another set is refused)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class ImageFeatures:
    """The (C, rows, width) float16 feature stack of one 2-D image."""

    def __init__(
        self, array: np.ndarray, features: FeatureSet, name: str = "", network: str | None = None
    ) -> None:
        if array.ndim != 3 or array.shape[0] != len(features.names):
            raise ValueError(
                f"a feature stack of shape {array.shape} does not hold the "
                f"{len(features.names)} channels of its feature set"
            )
        self.array, self.features, self.name = array, features, name
        self.network = network
        self.height = self.shape[0]
        """The image's full height (label maps of that height are cut to the usable rows)."""
        """The identity (:func:`.store.network_hash`) of the network behind the probabilities."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape[1], self.array.shape[2]

    def window(self, window: Window | None = None) -> np.ndarray:
        """The stack over ``window`` (a view; the whole image when None)."""
        if window is None:
            return self.array
        y0, x0, y1, x1 = window
        h, w = self.shape
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(f"window {tuple(window)} lies outside the {h}x{w} image")
        return self.array[:, y0:y1, x0:x1]

    @classmethod
    def compute(
        cls,
        sample: Sample,
        model: LoadedModel | None,
        *,
        features: FeatureSet | None = None,
        device: str | torch.device = "auto",
        progress: ProgressFn | None = None,
        cancel: StopFn | None = None,
        rows: tuple[int, int] | None = None,
    ) -> ImageFeatures:
        """The stack of a 2-D Sample's usable rows (``rows=(y0, y1)``: only that band of them).

        ``model`` gives the normalisation and, when the feature set wants them, the class
        probabilities (tiled inference); None is allowed for a filters-only set.
        """
        fs = features or FeatureSet(network=model is not None)
        if sample.is_stack:
            raise ValueError("a feature stack is computed for a 2-D image: pass its slices")
        if fs.network and model is None:
            raise ValueError("this feature set holds the network's probabilities: give a model")
        from ..inference.device import resolve_device

        dev = resolve_device(device)
        y0, y1 = rows if rows is not None else (0, sample.rows)
        out = np.empty((len(fs.names), y1 - y0, sample.width), np.float16)
        norm = model.meta.normalization if model is not None else None
        job = _FilterJob(sample, fs.bank, norm, dev)
        job.run(out[: len(fs.bank.names)], y0, y1, progress, cancel)
        if fs.network:
            out[len(fs.bank.names) :] = network_proba(
                sample, model, (y0, y1), job.intensity, dev, cancel
            )
        from .store import network_hash

        made = cls(out, fs, sample.name, network_hash(model.net) if fs.network else None)
        made.height = sample.height if rows is None else made.height
        return made


class _FilterJob:
    """Filter responses of a Sample's usable rows, tile by tile with a halo."""

    def __init__(self, sample: Sample, bank: FilterBank, norm, device: torch.device) -> None:
        from ..preprocess import Normalization

        self.pixels, self.rgb = sample.content(), sample.rgb
        self.rows, self.width = sample.rows, sample.width
        self.bank, self.device = bank, device
        self.norm = norm or Normalization()
        self.intensity = intensity_range(self.pixels, self.norm, sample.rgb)

    def run(self, out, y0: int, y1: int, progress, cancel) -> None:
        t, halo = FEATURE_TILE, self.bank.halo
        tiles = [(ty, tx) for ty in range(y0, y1, t) for tx in range(0, self.width, t)]
        for i, (ty, tx) in enumerate(tiles):
            check_stop(cancel)
            th, tw = min(t, y1 - ty), min(t, self.width - tx)
            a, b = max(ty - halo, 0), min(ty + th + halo, self.rows)
            c, d = max(tx - halo, 0), min(tx + tw + halo, self.width)
            grey = to_grey(self.pixels[a:b, c:d], self.rgb)
            x = normalize(grey, *self.intensity, self.norm)
            ctx = (tx - c, d - tx - tw, ty - a, b - ty - th)
            x = _padded(torch.from_numpy(x), [halo - v for v in ctx])
            resp = self.bank.apply(x.to(self.device))
            resp = resp[:, halo : halo + th, halo : halo + tw]
            out[:, ty - y0 : ty - y0 + th, tx : tx + tw] = resp.cpu().numpy()
            if progress is not None:
                progress(i + 1, len(tiles))


def _padded(x: torch.Tensor, pads: list[int]) -> torch.Tensor:
    """Reflect-pad a tile (left, right, top, bottom) where the image gave less context."""
    if not any(pads):
        return x
    h, w = x.shape
    small = max(pads[:2]) >= w or max(pads[2:]) >= h
    return torch.nn.functional.pad(x[None, None], pads, mode="replicate" if small else "reflect")[
        0, 0
    ]
