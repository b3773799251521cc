"""ilastik's default filter bank as torch convolutions (separable Gaussian derivatives).

For each sigma: Gaussian smoothing, Laplacian of Gaussian, gradient magnitude, difference of
Gaussians (sigma and 0.66 sigma), the two structure-tensor eigenvalues (inner scale sigma / 2)
and the two Hessian eigenvalues. Derivatives are scale-normalised (times sigma per order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention

FILTERS = ("gauss", "log", "gradmag", "dog", "st1", "st2", "hess1", "hess2")
SIGMAS = (0.7, 1.6, 3.5, 5.0, 10.0)
DOG_RATIO = 0.66
INNER_RATIO = 0.5


@dataclass(frozen=True)
class FilterBank:
    """Which sigmas and filters (names from :data:`FILTERS`); ``raw`` adds the input itself."""

    sigmas: tuple[float, ...] = SIGMAS
    filters: tuple[str, ...] = FILTERS
    raw: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.filters) - set(FILTERS))
        if unknown:
            raise ValueError(f"unknown filter {unknown[0]!r}; choose from {', '.join(FILTERS)}")
        if not self.sigmas or min(self.sigmas) <= 0:
            raise ValueError("the filter sigmas must be positive numbers")

    @property
    def names(self) -> list[str]:
        own = [f"{f}@{s:g}" for s in self.sigmas for f in self.filters]
        return (["raw"] if self.raw else []) + own

    @property
    def halo(self) -> int:
        """Pixels of context each side that make a tile's filters exact."""
        return _radius(max(self.sigmas)) + _radius(max(self.sigmas) * INNER_RATIO)

    @torch.inference_mode()
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(H, W) float image -> (C, H, W) float32 responses (zero padding: crop a halo)."""
        img = x.float()[None, None]
        out = [img[0]] if self.raw else []
        for s in self.sigmas:
            out.extend(self._one_sigma(img, s))
        return torch.cat(out, 0)

    def _one_sigma(self, img: torch.Tensor, s: float) -> list[torch.Tensor]:
        g, gx, gy, gxx, gyy, gxy = _jet(img, s)
        want, res = set(self.filters), {}
        res["gauss"] = g
        res["log"] = gxx + gyy
        res["gradmag"] = torch.sqrt(gx * gx + gy * gy)
        if "dog" in want:
            res["dog"] = g - _jet(img, s * DOG_RATIO, order=0)[0]
        if "hess1" in want or "hess2" in want:
            res["hess1"], res["hess2"] = _eig2(gxx, gxy, gyy)
        if "st1" in want or "st2" in want:
            _, ix, iy, *_ = _jet(img, s * INNER_RATIO, order=1)
            t = _smooth(torch.cat([ix * ix, ix * iy, iy * iy], 1), s)
            res["st1"], res["st2"] = _eig2(t[:, 0:1], t[:, 1:2], t[:, 2:3])
        return [res[f][0] for f in self.filters]


def _radius(sigma: float) -> int:
    return max(1, math.ceil(4 * sigma))


def _kernels(sigma: float) -> torch.Tensor:
    """(3, k) Gaussian, first and second derivative taps, scale-normalised."""
    r = _radius(sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    g1 = -t / sigma * g  # sigma * d/dx
    g2 = (t * t / sigma**2 - 1) * g  # sigma^2 * d2/dx2
    g2 -= g2.mean()
    return torch.stack([g, g1, g2])


def _jet(img: torch.Tensor, sigma: float, order: int = 2) -> list[torch.Tensor]:
    """G, Gx, Gy, Gxx, Gyy, Gxy of a (1, 1, H, W) image (up to ``order``), each (1, 1, H, W)."""
    k = _kernels(sigma)
    r = k.shape[1] // 2
    n_row = order + 1
    rows = F.conv2d(img, k[:n_row, None, None, :], padding=(0, r))  # (1, n_row, H, W)
    # columns: G, Gy, Gyy from the smoothed rows; Gx, Gxy from d/dx rows; Gxx from d2/dx2 rows
    pairs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]
    pairs = [(a, b) for a, b in pairs if a + b <= order]
    inp = rows[:, [a for a, _ in pairs]]
    w = k[[b for _, b in pairs], None, :, None]
    cols = F.conv2d(inp, w, padding=(r, 0), groups=len(pairs))
    got = {p: cols[:, i : i + 1] for i, p in enumerate(pairs)}
    names = [(0, 0), (1, 0), (0, 1), (2, 0), (0, 2), (1, 1)]  # G, Gx, Gy, Gxx, Gyy, Gxy
    return [got.get(p) for p in names]


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of every channel of a (1, C, H, W) tensor."""
    k = _kernels(sigma)[0]
    r, c = k.shape[0] // 2, x.shape[1]
    x = F.conv2d(x, k.expand(c, 1, 1, -1).contiguous(), padding=(0, r), groups=c)
    return F.conv2d(x, k.expand(c, 1, -1).unsqueeze(-1).contiguous(), padding=(r, 0), groups=c)


def _eig2(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 fields [[a, b], [b, c]]."""
    mid = (a + c) / 2
    rad = torch.sqrt(((a - c) / 2) ** 2 + b * b)
    return mid + rad, mid - rad
