"""One brush: painting a class clears that pixel in the other class's layer.

:class:`OneBrush` (one per viewer, :meth:`OneBrush.attach`) listens to every Labels layer's
``paint`` event; a grain stroke clears the same pixels of the partner pores layer (and the other
way round) through the partner's edit history, so Undo works on both. Layers that already
overlap (loaded from files) are reported by :class:`OverlapFix` with the pixel count and
bounding box; its one button resolves it: the layer painted last keeps the pixels.
"""

from __future__ import annotations

import contextlib
import weakref

import numpy as np
from magicgui.widgets import PushButton
from napari.layers import Labels

from ..analysis.blockwise import is_lazy
from ..classes import GRAIN, IGNORE, LAYER_NAMES, PORE
from ._layers import class_pixels, layer_pixels, overlap_text, real_viewer, spatial_shape
from ._pairs import IMAGE_KEY, class_rank, newest_pair
from ._strokes import StrokeTracker

_BRUSHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_class(layer) -> int | None:
    """GRAIN or PORE for a layer named as one of the pair (see :func:`_pairs.class_rank`)."""
    for cls in (GRAIN, PORE):
        if class_rank(layer.name, cls) is not None:
            return cls
    return None


def partner(layer, layers) -> Labels | None:
    """The other class's layer laid over ``layer``: same name suffix first, else the newest."""
    cls = layer_class(layer)
    if cls is None:
        return None
    other = PORE if cls == GRAIN else GRAIN
    shape = spatial_shape(layer)
    suffix = layer.name[len(LAYER_NAMES[cls]) :]
    fits = [
        ly
        for ly in layers
        if isinstance(ly, Labels) and ly is not layer and spatial_shape(ly) == shape
    ]
    same = [ly for ly in fits if ly.name == LAYER_NAMES[other] + suffix]
    return same[-1] if same else newest_pair(fits, image=layer.metadata.get(IMAGE_KEY)).get(other)


class OneBrush:
    """Keeps the grains/pores layers of one viewer disjoint as the user paints."""

    def __init__(self, layers) -> None:
        self._layers = weakref.ref(layers)
        self.order: dict[int, int] = {}  # id(layer) -> when it was last painted with a class
        self.painted_masks: dict[str, np.ndarray] = {}  # pair_key -> pixels the user painted
        self.tracker = StrokeTracker(self.record)
        self._strokes = 0
        self._clearing = False
        layers.events.inserted.connect(self._watch)
        self._watch()

    @classmethod
    def attach(cls, viewer) -> OneBrush:
        """The viewer's brush (made on first use; a dock's viewer proxy is seen through)."""
        viewer = real_viewer(viewer)
        brush = _BRUSHES.get(viewer.layers)
        if brush is None:
            brush = _BRUSHES[viewer.layers] = cls(viewer.layers)
        return brush

    def _watch(self, *_) -> None:
        for layer in self._layers() or ():
            if isinstance(layer, Labels):
                layer.events.paint.connect(self.painted)  # napari connects a callback once
                if layer_class(layer) is not None:
                    self.tracker.attach(layer)  # strokes that change nothing count too

    def painted(self, event) -> None:
        """A stroke ended on ``event.source``: clear its class pixels in the partner layer (an
        erased pixel becomes matrix there too: an unlabelled 255 is cleared) and record them."""
        layer, layers = event.source, self._layers()
        atoms = [a for a in map(painted_pixels, event.value) if a is not None]
        if not atoms or layers is None or self._clearing:
            return  # napari emits before it writes: the brush's own clearing is not a stroke
        self._strokes += 1
        self.order[id(layer)] = self._strokes
        other = partner(layer, layers)
        for indices, new in atoms:
            self.record(layer, indices)
            if other is None:
                continue
            new = np.broadcast_to(np.asarray(new), indices[0].shape)
            theirs = values_at(layer_pixels(other), indices)
            clear = (new != 0) & (theirs != 0) | (new == 0) & (theirs == IGNORE)
            if clear.any():
                with self.quiet():
                    other.data_setitem(tuple(i[clear] for i in indices), 0)

    @contextlib.contextmanager
    def quiet(self):
        """Edits made inside are not strokes: not recorded, nothing cleared in the partner."""
        before, self._clearing = self._clearing, True
        try:
            yield
        finally:
            self._clearing = before

    def record(self, layer, indices) -> None:
        """Mark ``indices`` as painted by the user in ``layer``'s pair."""
        if self._clearing or is_lazy(layer_pixels(layer)):
            return  # a zarr/dask layer: no full-size mask (Live mode needs an in-memory image)
        key = pair_key(layer)
        shape = spatial_shape(layer)
        mask = self.painted_masks.get(key)
        if mask is None or mask.shape != shape:
            mask = self.painted_masks[key] = np.zeros(shape, bool)
        mask[indices] = True

    def painted_mask(self, layer) -> np.ndarray | None:
        """Pixels the user painted (any class, erasing included) in ``layer``'s pair; None when
        nothing was painted (or the pair changed shape)."""
        mask = self.painted_masks.get(pair_key(layer))
        return mask if mask is not None and mask.shape == spatial_shape(layer) else None

    def last_painted(self, a, b):
        """Of two layers, the one painted last (neither: the one higher in the layer list)."""
        ta, tb = self.order.get(id(a), 0), self.order.get(id(b), 0)
        if ta != tb:
            return a if ta > tb else b
        layers = list(self._layers() or ())
        index = {id(ly): i for i, ly in enumerate(layers)}
        return a if index.get(id(a), -1) > index.get(id(b), -1) else b


class OverlapFix:
    """A "Resolve overlap" button, shown while a checked grains/pores pair overlaps."""

    def __init__(self, viewer, report) -> None:
        self.brush = OneBrush.attach(viewer)
        self.report = report  # called with one sentence after resolving
        self.pending: tuple | None = None
        self.button = PushButton(text="Resolve overlap (layer painted last wins)", visible=False)
        self.button.clicked.connect(self.resolve)

    def check(self, grains, pores) -> None:
        """ValueError with the count and bounding box when both layers mark a pixel."""
        self.pending = None
        self.button.visible = False
        if grains is None or pores is None or grains is pores:
            return
        g, p = (np.asarray(layer_pixels(ly)) for ly in (grains, pores))
        if g.shape != p.shape:
            return  # the Sample refuses it with its own sentence
        both = class_pixels(g) & class_pixels(p)  # 255 (unlabelled) in both is no overlap
        if both.any():
            self.pending = (grains, pores)
            self.button.visible = True
            where = overlap_text(both)
            raise ValueError(
                f"{where} in {grains.name!r} and {pores.name!r}; press Resolve overlap "
                "(the layer painted last keeps them) or erase them from one layer"
            )

    def resolve(self, *_) -> str | None:
        """Clear the overlapping pixels from the layer not painted last; the sentence said."""
        if self.pending is None:
            return None
        grains, pores = self.pending
        winner = self.brush.last_painted(grains, pores)
        loser = pores if winner is grains else grains
        both = class_pixels(np.asarray(layer_pixels(grains))) & class_pixels(
            np.asarray(layer_pixels(pores))
        )
        loser.data_setitem(np.nonzero(both), 0)
        self.pending = None
        self.button.visible = False
        n = int(both.sum())
        text = f"Resolved: {n} pixels kept in {winner.name}, cleared in {loser.name}."
        self.report(text)
        return text


def values_at(data, indices: tuple[np.ndarray, ...]) -> np.ndarray:
    """``data[indices]`` reading only the indices' bounding box (a zarr or dask layer is not
    read whole for one stroke)."""
    lo = [int(i.min()) for i in indices]
    box = np.asarray(data[tuple(slice(a, int(i.max()) + 1) for a, i in zip(lo, indices))])
    return box[tuple(i - a for i, a in zip(indices, lo, strict=True))]


def pair_key(layer) -> str:
    """The key of the grains/pores pair ``layer`` belongs to: its image, else its name suffix."""
    owner = layer.metadata.get(IMAGE_KEY)
    if owner is not None:
        return f"image:{owner}"
    cls = layer_class(layer)
    return "name:" + (layer.name if cls is None else layer.name[len(LAYER_NAMES[cls]) :])


def painted_pixels(atom) -> tuple[tuple[np.ndarray, ...], np.ndarray] | None:
    """``(indices, new values)`` of one undo atom of a stroke (erasing included), or None.

    napari records the brush, fill and polygon as masked atoms (``slice_key``, ``mask``,
    ``new_value``: a bounding box and the changed pixels in it) and ``data_setitem`` as
    ``(indices, old, new)`` triples; both are read here.
    """
    if hasattr(atom, "slice_key"):
        box = tuple(s.stop - (s.start or 0) for s in atom.slice_key)
        mask = np.ones(box, bool) if atom.mask is None else np.asarray(atom.mask, bool)
        starts = [s.start or 0 for s in atom.slice_key]
        indices = tuple(i + start for i, start in zip(np.nonzero(mask), starts, strict=True))
        return indices, np.full(indices[0].shape, atom.new_value)
    indices, _old, new = atom
    if len(indices) == 0 or np.size(indices[0]) == 0:
        return None
    return tuple(np.asarray(i) for i in indices), new
