"""Per-object tables of a class map too large to hold, from horizontal bands.

Engine module: no Qt, no napari. :class:`BandObjects` takes one band at a time (its rows plus
one row of context above and below) and keeps, for each 8-connected object of a class in the
analysed region, mergeable statistics: pixel count, bounding box, first and second moments
(relative to the band object's bounding-box corner, so no precision is lost far from the
origin), the Crofton perimeter of the 2×2 windows it owns, and whether it touches the edge of
the region or (pores) a grain. Objects cut by a seam are joined by a union-find over the
8-connected pairs of same-class pixels across it; :meth:`BandObjects.tables` then gives the
same columns, labels and units as :func:`.measure.measure` on the whole map.

Perimeter: scikit-image's ``perimeter_crofton`` (4 directions) is a sum over every 2×2 window
of a look-up value of the window's configuration, so it is additive: each window is counted
once, by the band that holds its top row when that row has a pixel of the object, else by the
band below. Moments give regionprops' inertia tensor, axes (``4 * sqrt(eigenvalue)``) and
orientation exactly (to rounding). Memory: one band and a few band-sized work arrays, plus
one row of statistics per band object.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import label as label_components

from ..classes import GRAIN, PORE
from .summary import COLUMNS, OBJECT_CLASSES
from .units import scale_factor

_R2 = np.sqrt(2.0)
_CROFTON = np.array(
    [
        0,
        np.pi / 4 * (1 + 1 / _R2),
        np.pi / (4 * _R2),
        np.pi / (2 * _R2),
        0,
        np.pi / 4 * (1 + 1 / _R2),
        0,
        np.pi / (4 * _R2),
        np.pi / 4,
        np.pi / 2,
        np.pi / (4 * _R2),
        np.pi / (4 * _R2),
        np.pi / 4,
        np.pi / 2,
        0,
        0,
    ]
)
"""scikit-image's ``perimeter_crofton(directions=4)`` values of a 2×2 window's configuration,
indexed by ``8*top_left + 2*top_right + 4*bottom_left + bottom_right``."""
_STRUCT = np.ones((3, 3), bool)
PART_PIXELS = 2**22
"""Pixels labelled at a time (work arrays take about 40 bytes a pixel: ~170 MB)."""
_SUMS = ("n", "sy", "sx", "syy", "sxx", "sxy", "perimeter")
_FIELDS = ("cls", "ymin", "xmin", "ymax", "xmax", "edge", "grain", *_SUMS)
# column -> regionprops_table name (the in-memory path's property names)
PROPS = {
    "area": "area",
    "equivalent_diameter": "equivalent_diameter_area",
    "perimeter": "perimeter_crofton",
    "major_axis": "axis_major_length",
    "minor_axis": "axis_minor_length",
}


def object_table(
    props: dict[str, np.ndarray],
    keep: np.ndarray,
    scale: float,
    touches_edge: np.ndarray,
    touches_grain: np.ndarray,
) -> dict[str, np.ndarray]:
    """The per-object columns (:data:`.summary.COLUMNS`) of ``regionprops_table``-named values.

    ``keep``: objects at least ``min_size`` large; lengths scaled by ``scale`` (one pixel's
    length in the output unit); flags per object (kept ones only).
    """
    table: dict[str, np.ndarray] = {
        "label": props["label"][keep].astype(np.int32),
        "centroid_row_px": props["centroid-0"][keep],
        "centroid_col_px": props["centroid-1"][keep],
    }
    for column, prop in PROPS.items():
        table[column] = props[prop][keep].astype(float) * scale_factor(column, scale)
    major, minor = table["major_axis"], table["minor_axis"]
    table["aspect_ratio"] = np.divide(minor, major, out=np.ones_like(major), where=major > 0)
    angle = np.degrees(props["orientation"][keep]) + 90.0  # skimage: from the row axis
    table["orientation_deg"] = np.where(angle > 90.0, angle - 180.0, angle)
    table["touches_edge"] = np.asarray(touches_edge, bool)
    table["touches_grain"] = np.asarray(touches_grain, bool)
    return {c: table[c] for c in COLUMNS}


class BandObjects:
    """Mergeable statistics of the objects of successive bands, and the pairs across seams."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {f: [] for f in _FIELDS}
        self.pairs: list[np.ndarray] = []
        self.count = 0
        self.seam: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, classes: np.ndarray, keep: np.ndarray, y0: int) -> None:
        """One band starting at image row ``y0``: ``classes`` (class map) and ``keep`` (analysed
        pixels) hold its rows plus one row of context above and one below (unusable outside the
        image); bands come top to bottom. Labelled :data:`PART_PIXELS` pixels at a time."""
        step = max(16, PART_PIXELS // max(classes.shape[1], 1))
        rows = classes.shape[0] - 2
        for s0 in range(0, rows, step):
            s1 = min(s0 + step, rows) + 2
            self._add_part(classes[s0:s1], keep[s0:s1], y0 + s0)

    def _add_part(self, classes: np.ndarray, keep: np.ndarray, y0: int) -> None:
        cls = np.where(keep & ((classes == GRAIN) | (classes == PORE)), classes, 0)
        cls = cls.astype(np.uint8)
        band = cls[1:-1]
        local = label_components(band, background=0, connectivity=2).astype(np.int32)
        nb = int(local.max(initial=0))
        stats = _moments(local, nb)
        stats["ymin"] += y0
        stats["ymax"] += y0
        stats["perimeter"] = _crofton(cls, local, nb)
        stats["cls"] = np.zeros(nb + 1, np.uint8)
        stats["cls"][local.ravel()] = band.ravel()
        stats["cls"] = stats["cls"][1:]
        edge = ndimage.binary_dilation(~keep, _STRUCT, border_value=1)[1:-1]
        stats["edge"] = np.bincount(local[edge], minlength=nb + 1)[1:] > 0
        near = ndimage.binary_dilation(cls == GRAIN, _STRUCT)[1:-1] & (band == PORE)
        stats["grain"] = np.bincount(local[near], minlength=nb + 1)[1:] > 0
        for f in _FIELDS:
            self.parts[f].append(stats[f])
        ids = np.where(local > 0, local + self.count, 0)
        if self.seam is not None:
            self.pairs.append(_seam_pairs(*self.seam, ids[0], band[0]))
        self.seam = (ids[-1], band[-1])
        self.count += nb

    def merged(self) -> dict[str, np.ndarray]:
        """Per object (ordered by first pixel in raster order): class, count, bbox, central
        moments (``mu_rr``, ``mu_cc``, ``mu_rc``), centroid, perimeter and flags."""
        s = {f: np.concatenate(v) if v else np.zeros(0) for f, v in self.parts.items()}
        pairs = np.concatenate(self.pairs, axis=1) if self.pairs else np.zeros((2, 0), int)
        n = self.count
        graph = coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(n, n))
        k, comp = connected_components(graph, directed=False)
        first = np.full(k, n, np.int64)
        np.minimum.at(first, comp, np.arange(n))
        rank = np.empty(k, np.int64)
        rank[np.argsort(first)] = np.arange(k)  # order by first pixel, like skimage's labels
        return _combine(s, rank[comp], k)

    def tables(self, min_size: int, scale: float) -> dict[str, dict[str, np.ndarray]]:
        """The per-object table of each class (``min_size`` after merging; see module doc)."""
        m = self.merged()
        props = _regionprops(m)
        out = {}
        for name, c in OBJECT_CLASSES.items():
            of = m["cls"] == c
            cls_props = {key: v[of] for key, v in props.items()}
            cls_props["label"] = np.arange(1, int(of.sum()) + 1)
            keep = m["n"][of] >= min_size
            grain = m["grain"][of][keep] if name == "pores" else np.zeros(int(keep.sum()), bool)
            out[name] = object_table(cls_props, keep, scale, m["edge"][of][keep], grain)
        return out


def _regionprops(m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """regionprops' values (same names and formulas) of merged statistics ``m``."""
    n = m["n"]
    a, b, c = m["mu_cc"] / n, -m["mu_rc"] / n, m["mu_rr"] / n  # inertia tensor [[a, b], [b, c]]
    half, mean = np.hypot((a - c) / 2, b), (a + c) / 2
    tie = np.where(b < 0, np.pi / 4, -np.pi / 4)  # skimage's orientation when a == c
    return {
        "centroid-0": m["cy"],
        "centroid-1": m["cx"],
        "area": n,
        "equivalent_diameter_area": (4 * n / np.pi) ** 0.5,
        "perimeter_crofton": m["perimeter"],
        "axis_major_length": 4 * np.sqrt(np.clip(mean + half, 0, None)),
        "axis_minor_length": 4 * np.sqrt(np.clip(mean - half, 0, None)),
        "orientation": np.where(
            m["mu_cc"] - m["mu_rr"] == 0, tie, 0.5 * np.arctan2(-2 * b, c - a)
        ),
    }


def _moments(local: np.ndarray, nb: int) -> dict[str, np.ndarray]:
    """Count, bbox and moments (about each object's bbox corner) of a band's objects."""
    boxes = ndimage.find_objects(local, max_label=nb)
    out = {
        key: np.array([getattr(b[axis], end) for b in boxes], np.int64).reshape(-1) + add
        for key, axis, end, add in (
            ("ymin", 0, "start", 0),
            ("xmin", 1, "start", 0),
            ("ymax", 0, "stop", -1),
            ("xmax", 1, "stop", -1),
        )
    }
    r, c = np.nonzero(local)
    lab = local[r, c]
    dy = (r - out["ymin"][lab - 1]).astype(float)
    dx = (c - out["xmin"][lab - 1]).astype(float)
    for key, w in (
        ("n", None),
        ("sy", dy),
        ("sx", dx),
        ("syy", dy * dy),
        ("sxx", dx * dx),
        ("sxy", dy * dx),
    ):
        out[key] = np.bincount(lab, w, minlength=nb + 1)[1:].astype(float)
    return out


def _crofton(cls: np.ndarray, local: np.ndarray, nb: int) -> np.ndarray:
    """Crofton perimeter of each band object over the 2×2 windows it owns (see module doc)."""
    ids = np.pad(local, 1)
    total = np.zeros(nb + 1)
    for c in (GRAIN, PORE):
        m = np.pad(cls == c, ((0, 0), (1, 1)))
        tl, tr, bl, br = m[:-1, :-1], m[:-1, 1:], m[1:, :-1], m[1:, 1:]
        own = np.where(m, ids, 0)
        owner = np.maximum(
            np.maximum(own[:-1, :-1], own[:-1, 1:]), np.maximum(own[1:, :-1], own[1:, 1:])
        )
        del own
        owner[0][tl[0] | tr[0]] = 0  # its top row is the band above's: counted there
        at = np.nonzero(owner)
        code = 8 * tl[at] + 2 * tr[at] + 4 * bl[at] + br[at].astype(np.uint8)
        total += np.bincount(owner[at], _CROFTON[code], minlength=nb + 1)
    return total[1:]


def _seam_pairs(
    above: np.ndarray, above_cls: np.ndarray, below: np.ndarray, below_cls: np.ndarray
) -> np.ndarray:
    """(2, K) ids of 8-adjacent same-class objects across a seam (last row, next first row)."""
    found = []
    width = len(above)
    for s in (-1, 0, 1):
        a = slice(max(0, -s), width - max(0, s))
        b = slice(max(0, s), width - max(0, -s))
        hit = (above[a] > 0) & (below[b] > 0) & (above_cls[a] == below_cls[b])
        found.append(np.stack([above[a][hit], below[b][hit]]) - 1)
    return np.unique(np.concatenate(found, axis=1), axis=1).astype(np.int64)


def _combine(s: dict[str, np.ndarray], comp: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Band objects' statistics summed per merged object ``comp`` (0..k-1)."""
    m: dict[str, np.ndarray] = {}
    for key, ufunc, init in (
        ("ymin", np.minimum, np.iinfo(np.int64).max),
        ("xmin", np.minimum, np.iinfo(np.int64).max),
        ("ymax", np.maximum, -1),
        ("xmax", np.maximum, -1),
    ):
        m[key] = np.full(k, init, np.int64)
        ufunc.at(m[key], comp, s[key].astype(np.int64))
    for key in ("edge", "grain"):
        m[key] = np.bincount(comp, s[key].astype(float), minlength=k) > 0
    m["cls"] = np.zeros(k, np.uint8)
    m["cls"][comp] = s["cls"]
    n = s["n"]
    dy = (s["ymin"] - m["ymin"][comp]).astype(float)
    dx = (s["xmin"] - m["xmin"][comp]).astype(float)
    shifted = {
        "n": n,
        "perimeter": s["perimeter"],
        "sy": s["sy"] + n * dy,
        "sx": s["sx"] + n * dx,
        "syy": s["syy"] + 2 * dy * s["sy"] + n * dy * dy,
        "sxx": s["sxx"] + 2 * dx * s["sx"] + n * dx * dx,
        "sxy": s["sxy"] + dy * s["sx"] + dx * s["sy"] + n * dy * dx,
    }
    t = {key: np.bincount(comp, v, minlength=k) for key, v in shifted.items()}
    m["n"], m["perimeter"] = t["n"], t["perimeter"]
    m["cy"] = m["ymin"] + t["sy"] / t["n"]
    m["cx"] = m["xmin"] + t["sx"] / t["n"]
    m["mu_rr"] = t["syy"] - t["sy"] ** 2 / t["n"]
    m["mu_cc"] = t["sxx"] - t["sx"] ** 2 / t["n"]
    m["mu_rc"] = t["sxy"] - t["sy"] * t["sx"] / t["n"]
    return m
