"""The grains/pores pair laid over an image: the newest pair, never one layer for both classes.

:func:`newest_pair` ranks Labels layers of the image's shape by name (``grains`` exactly, then
names starting so, then copies Segment kept as ``grains (kept …)``), newest first.
:class:`PairPicker` keeps two ComboBoxes on that pair until the user picks one by hand, and
:class:`LayerFollower` calls back when layers are added, removed, moved or renamed.
"""

from __future__ import annotations

import functools
from typing import Any

from napari.layers import Labels

from ..classes import GRAIN, LAYER_NAMES, PORE
from ._layers import spatial_shape

KEPT = "(kept"
DERIVED = ("by size", "truth", "reference")
"""Words in the names of Labels layers that are not the working grains/pores pair."""


def class_rank(name: str, cls: int) -> int | None:
    """0: named exactly ``grains``/``pores``; 1: named starting so; 2: a kept copy; None: other."""
    base = LAYER_NAMES[cls]
    low = name.lower()
    if name == base:
        return 0
    if not low.startswith(base) or any(word in low for word in DERIVED):
        return None
    return 2 if KEPT in low else 1


IMAGE_KEY = "image"
"""``layer.metadata`` key naming the image layer a grains/pores layer belongs to."""


def owner_rank(layer, image: str | None) -> int | None:
    """0: tied to ``image``; 1: tied to no image (made by hand); None: another image's layer."""
    owner = layer.metadata.get(IMAGE_KEY)
    if owner is None:
        return 1
    return 0 if image is None or owner == image else None


def newest_pair(
    layers, shape: tuple[int, ...] | None = None, image: str | None = None
) -> dict[int, Any]:
    """``{GRAIN: layer, PORE: layer}`` (either may be missing) among ``layers`` of ``shape``.

    Layers tied to the image named ``image`` first, then untied ones, never another image's
    (``metadata["image"]``); then the best name rank, the newest (highest in the layer list)
    among equals; the two are always different layers.
    """
    labels = [
        (i, ly, owner)
        for i, ly in enumerate(layers)
        if isinstance(ly, Labels)
        and (shape is None or spatial_shape(ly) == tuple(shape))
        and (owner := owner_rank(ly, image)) is not None
    ]
    picked: dict[int, Any] = {}
    for cls in (GRAIN, PORE):
        ranked = sorted(
            ((owner, rank, -i), ly)
            for i, ly, owner in labels
            if (rank := class_rank(ly.name, cls)) is not None
            and all(ly is not other for other in picked.values())
        )
        if ranked:
            picked[cls] = ranked[0][1]
    return picked


class PairPicker:
    """Keeps a grains and a pores ComboBox (nullable) on the newest pair over ``image``.

    ``image``: a ComboBox of Image layers, or None (any shape). A combo the user set by hand
    keeps its layer while that layer exists; choosing another image re-picks both.
    """

    def __init__(self, grains, pores, image=None) -> None:
        self.combos = {GRAIN: grains, PORE: pores}
        self.image = image
        self.by_hand: set[int] = set()
        self._setting = False
        for cls, combo in self.combos.items():
            combo.changed.connect(functools.partial(self._picked_by_hand, cls))

    def _picked_by_hand(self, cls: int, *_) -> None:
        if not self._setting:
            self.by_hand.add(cls)

    def image_changed(self, layers) -> None:
        """Another image was chosen: pick its pair afresh."""
        self.by_hand.clear()
        self.refresh(layers)

    def shape(self) -> tuple[int, ...] | None:
        image = None if self.image is None else self.image.value
        return None if image is None else spatial_shape(image)

    def image_name(self) -> str | None:
        image = None if self.image is None else self.image.value
        return None if image is None else image.name

    def refresh(self, layers) -> None:
        """Re-pick the combos not set by hand (their choices must be current)."""
        layers = list(layers)
        pair = newest_pair(layers, self.shape(), self.image_name())
        self._setting = True
        try:
            for cls, combo in self.combos.items():
                value = combo.value
                alive = value is not None and any(value is ly for ly in layers)
                if cls in self.by_hand and alive:
                    continue
                self.by_hand.discard(cls)
                combo.value = pair.get(cls)
        finally:
            self._setting = False


class LayerFollower:
    """Calls ``callback()`` when a layer is added, removed, moved or renamed in ``viewer``."""

    def __init__(self, viewer, callback) -> None:
        self.layers, self.callback = viewer.layers, callback
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.reordered):
            emitter.connect(self._changed)
        self._watch()

    def _watch(self) -> None:
        for layer in self.layers:
            layer.events.name.connect(self._changed)  # napari connects a callback once

    def _changed(self, *_) -> None:
        self._watch()
        try:
            self.callback()
        except RuntimeError:  # the dock was deleted while the viewer lives on
            self.disconnect()

    def disconnect(self) -> None:
        events = self.layers.events
        for emitter in (events.inserted, events.removed, events.reordered):
            emitter.disconnect(self._changed)
        for layer in self.layers:
            layer.events.name.disconnect(self._changed)
