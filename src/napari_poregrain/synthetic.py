"""Deterministic SEM-like shale images with exact labels.

Used as sample data, in tests and in benchmarks: a textured clay matrix,
brighter irregular silt grains, dark pores with the bright rims secondary
electrons give them, optional organic matter (darker-than-matrix lenses labelled matrix, with
their own small pores: the organic-matter-versus-pore distinction), a gentle illumination
gradient, blur and detector noise. The same ``seed`` and style always give the same image and
labels; a style without organic matter draws exactly the random numbers it always did.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from skimage.draw import polygon

from .classes import GRAIN, PORE

SAMPLE_PIXEL_SIZE_NM = 10.0


@dataclass(frozen=True)
class Style:
    """Appearance of a synthetic image; change it to mimic another detector or sample."""

    matrix: float = 0.45
    grain: float = 0.70
    pore: float = 0.10
    rim: float = 0.12
    texture: float = 0.06
    noise: float = 0.05
    blur: float = 0.8
    gradient: float = 0.05
    grain_fraction: float = 0.30
    grain_radius: float = 28.0
    pore_density: float = 6e-4
    pore_radius: float = 4.0
    organic_fraction: float = 0.0
    """Area share of organic matter (labelled matrix, class 0); 0: none."""
    organic: float = 0.25
    """Grey level of organic matter (between pores and matrix in SEM images)."""
    organic_radius: float = 40.0
    organic_pore_density: float = 4e-3
    """Pores per organic-matter pixel (organic pores: small, dark, no bright rim)."""


SHIFTED = Style(matrix=0.55, grain=0.68, pore=0.22, rim=0.05, noise=0.09, blur=1.3, texture=0.09)
"""A darker-contrast, noisier style: a stand-in for another microscope or detector."""


def make_sample(
    shape: tuple[int, int] = (1024, 1024), seed: int = 0, style: Style | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image, labels)``: a uint8 SEM-like image and its exact uint8 class map."""
    style = style or Style()
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, np.uint8)
    image = np.zeros(shape, np.float32)

    # Silt grains: irregular blobs until the target area fraction is reached.
    grain_shift = np.zeros(shape, np.float32)
    for _ in range(10000):
        if (labels == GRAIN).mean() >= style.grain_fraction:
            break
        r = style.grain_radius * rng.lognormal(0, 0.35)
        rr, cc = _blob(rng, rng.uniform(0, h), rng.uniform(0, w), r, rng.uniform(0.5, 1.0), shape)
        labels[rr, cc] = GRAIN
        grain_shift[rr, cc] = rng.normal(0, 0.04)

    # Pores: small dark blobs, mostly in the matrix, some along grain edges.
    n_pores = rng.poisson(style.pore_density * h * w)
    edge = ndimage.binary_dilation(labels == GRAIN, iterations=3) & (labels != GRAIN)
    edge_points = np.argwhere(edge)
    for i in range(n_pores):
        if i % 4 == 0 and len(edge_points):
            y, x = edge_points[rng.integers(len(edge_points))]
        else:
            y, x = rng.uniform(0, h), rng.uniform(0, w)
        r = max(1.2, style.pore_radius * rng.lognormal(0, 0.5))
        rr, cc = _blob(rng, y, x, r, rng.uniform(0.3, 1.0), shape)
        keep = labels[rr, cc] != GRAIN
        labels[rr[keep], cc[keep]] = PORE

    organic = _organic_matter(rng, labels, style) if style.organic_fraction > 0 else None

    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 2.5)
    texture *= style.texture / (texture.std() + 1e-6)
    image[:] = style.matrix + texture
    grains = labels == GRAIN
    image[grains] = style.grain + grain_shift[grains] + 0.4 * texture[grains]
    pores = labels == PORE
    rimmed = pores if organic is None else pores & ~organic
    rim = ndimage.binary_dilation(rimmed, iterations=2) & ~pores
    if organic is not None:
        image[organic] = style.organic + 0.5 * texture[organic]
        rim &= ~organic
    image[rim] += style.rim
    image[pores] = style.pore + 0.3 * texture[pores]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image += style.gradient * ((xx / max(w, 1)) - 0.5 + 0.5 * (yy / max(h, 1)))
    image = ndimage.gaussian_filter(image, style.blur)
    image += rng.normal(0, style.noise, shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels


def restyle(style: Style, **changes) -> Style:
    """A copy of ``style`` with some fields changed."""
    return replace(style, **changes)


def _organic_matter(rng, labels: np.ndarray, style: Style) -> np.ndarray:
    """Draw organic-matter lenses outside grains (labels stay matrix) and pores inside them.

    Returns the organic-matter mask (pores in it included); ``labels`` gets the organic pores.
    """
    shape = labels.shape
    organic = np.zeros(shape, bool)
    free = labels != GRAIN
    target = style.organic_fraction * free.mean()
    for _ in range(10000):
        if organic.mean() >= target:
            break
        r = style.organic_radius * rng.lognormal(0, 0.4)
        y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        rr, cc = _blob(rng, y, x, r, rng.uniform(0.25, 0.8), shape)
        keep = free[rr, cc]
        organic[rr[keep], cc[keep]] = True
    points = np.argwhere(organic)
    n_pores = rng.poisson(style.organic_pore_density * len(points)) if len(points) else 0
    for _ in range(n_pores):
        y, x = points[rng.integers(len(points))]
        r = max(1.5, 0.6 * style.pore_radius * rng.lognormal(0, 0.5))
        rr, cc = _blob(rng, y, x, r, rng.uniform(0.4, 1.0), shape)
        keep = organic[rr, cc]
        labels[rr[keep], cc[keep]] = PORE
    return organic


def _blob(rng, cy, cx, radius, aspect, shape):
    """Pixel coordinates of an irregular, rotated ellipse-like polygon."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1 + sum(
        rng.normal(0, 0.08 / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    angle = rng.uniform(0, np.pi)
    ry, rx = radius * aspect * wobble, radius * wobble
    y = cy + ry * np.sin(t) * np.cos(angle) + rx * np.cos(t) * np.sin(angle)
    x = cx - ry * np.sin(t) * np.sin(angle) + rx * np.cos(t) * np.cos(angle)
    return polygon(y, x, shape)
