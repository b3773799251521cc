"""Live mode of the Fine-tune dock: the adaptation head refits while the user paints.

:class:`LiveMode` computes the image's feature stack once (filters + the starting network's
probabilities, :class:`..adapt.features.ImageFeatures`, cached per image and model), follows
the pair's paint events, and after a short pause refits the head in a background task on the
pixels painted so far (:meth:`OneBrush.painted_mask`); the head's classes for the region in view
(at most :data:`VIEW` pixels a side) appear in a ``live preview [image]`` layer. *Accept* writes
the preview into the pair without changing a painted pixel (one undo step per layer); *Where to
correct next* adds a Shapes layer of the head's most uncertain boxes and jumps to the first.
The heavy work lives in :mod:`._live_jobs`.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, PushButton
from napari.layers import Labels
from qtpy.QtCore import QTimer

from ..classes import GRAIN, PORE
from ._base import wrap_text
from ._brush import OneBrush
from ._layers import class_colours, geometry, sample_from_layers, spatial_shape
from ._live_jobs import FeaturesJob, RefitJob, RegionsJob, accepted_pixels, painted_labels
from ._worker import BackgroundTask

DEBOUNCE_MS = 350
VIEW = 1024
"""The preview covers at most this many pixels a side around the view's centre."""


class LiveMode:
    """The Live controls of a Fine-tune dock (``dock``: its image/pair combos and model)."""

    def __init__(self, dock) -> None:
        self.dock, self.viewer = dock, dock._viewer
        self.brush = OneBrush.attach(self.viewer)
        self.toggle = CheckBox(text="Live: refit while painting", value=False)
        self.accept_button = PushButton(text="Accept preview", enabled=False)
        self.next_button = PushButton(text="Where to correct next", enabled=False)
        self.status = Label(value="")
        wrap_text(self.status.native)
        buttons = [self.accept_button, self.next_button]
        row = Container(widgets=buttons, layout="horizontal", labels=False)
        self.container = Container(widgets=[self.toggle, row, self.status], labels=False)
        self.features: dict[tuple, object] = {}  # (image id, model path) -> ImageFeatures
        self.task: BackgroundTask | None = None
        self.dirty = False  # strokes arrived while a refit ran
        self.preview: dict | None = None  # window, labels, head of the last refit
        self.refitting = None  # the image layer of the running refit
        self.watched: list = []
        self.timer = QTimer(dock)  # dies with the dock: no refit after it closes
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.refit)
        self.toggle.changed.connect(self.toggled)
        self.accept_button.clicked.connect(self.accept)
        self.next_button.clicked.connect(self.where_next)

    # -- state ------------------------------------------------------------------------
    def pair(self):
        """(image, grains, pores) the dock has chosen; ValueError when one is missing."""
        image, grains, pores = (
            c.value for c in (self.dock._image, self.dock._grains, self.dock._pores)
        )
        if image is None or grains is None or pores is None:
            raise ValueError("choose the image and its grains and pores layers first")
        if len(spatial_shape(image)) != 2:
            raise ValueError("live mode works on a 2-D image (a stack: one slice at a time)")
        return image, grains, pores

    def key(self, image) -> tuple:
        path = self.dock._picker.path() if self.dock._picker.ready else None
        return id(image), str(path)

    def say(self, text: str) -> None:
        self.status.value = text

    def toggled(self, on: bool) -> None:
        """Start: compute the features (once per image and model) and follow the pair."""
        self.unwatch()
        if not on:
            self.stop()
            self.say("")
            return
        try:
            image, grains, pores = self.pair()
            model_path = self.dock._picker.path()
        except ValueError as exc:
            self.toggle.value = False  # switches off (and clears the line) first
            self.say(f"Live: {exc}.")
            return
        for layer in (grains, pores):
            layer.events.paint.connect(self.painted)
            self.watched.append(layer)
        if self.key(image) in self.features:
            self.say("Live: paint a few strokes of each class; the preview follows.")
            self.timer.start()
            return
        job = FeaturesJob(sample_from_layers(image), model_path, self.key(image))
        self.start(job, self.features_done, "Live: computing the image's features…")

    def unwatch(self) -> None:
        for layer in self.watched:
            layer.events.paint.disconnect(self.painted)
        self.watched = []

    def stop(self) -> None:
        """Cancel a running job (the dock closed or Live was switched off)."""
        self.timer.stop()
        if self.task is not None:
            self.task.cancel()

    def start(self, job, on_returned, text: str) -> None:
        self.task = BackgroundTask(
            job,
            on_returned=on_returned,
            on_errored=self.errored,
            on_cancelled=self.cancelled,
            on_finished=self.finished,
        )
        self.say(text)
        self.task.start()

    def finished(self) -> None:
        self.task = None
        if self.dirty and self.toggle.value:
            self.dirty = False
            self.timer.start()

    def cancelled(self) -> None:
        self.say("Live: stopped.")

    def errored(self, exc: Exception) -> None:
        self.say(f"Live: {exc}" if isinstance(exc, ValueError) else f"Live failed: {exc!r}")

    # -- refits -----------------------------------------------------------------------
    def features_done(self, result) -> None:
        key, features = result
        self.features[key] = features
        self.say("Live: features ready; paint a few strokes of each class.")
        self.timer.start()

    def painted(self, *_) -> None:
        """A stroke ended: refit after a short pause (strokes during a refit: once more after)."""
        if self.task is not None:
            self.dirty = True
        else:
            self.timer.start()

    def refit(self) -> None:
        if not self.toggle.value:
            return
        if self.task is not None:
            self.dirty = True
            return
        try:
            image, grains, pores = self.pair()
        except ValueError as exc:
            self.say(f"Live: {exc}.")
            return
        features = self.features.get(self.key(image))
        if features is None:
            return
        labels = painted_labels(grains, pores, self.brush.painted_mask(grains))
        if labels is None:
            self.say("Live: paint a few strokes of each class; the preview follows.")
            return
        window = self.view_window(image, features.shape)
        self.refitting = image  # the preview belongs to it, whatever the combos say by then
        self.start(RefitJob(features, labels, window), self.show, "Live: refitting…")

    def view_window(self, image, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """The (y0, x0, y1, x1) of at most VIEW² pixels around the view's centre."""
        centre = image.world_to_data(self.viewer.camera.center[-image.ndim :])[-2:]
        out = []
        for c, n in zip(centre, shape, strict=True):
            size = min(VIEW, n)
            lo = int(np.clip(round(float(c)) - size // 2, 0, n - size))
            out.append((lo, lo + size))
        return out[0][0], out[1][0], out[0][1], out[1][1]

    def show(self, result) -> None:
        """The refit's preview into the ``live preview [image]`` layer (made on first use)."""
        image = self.refitting
        self.preview = dict(result, image=image)
        y0, x0, _, _ = result["window"]
        name = f"live preview [{image.name}]"
        geo = geometry(image, 2)
        geo["translate"] = tuple(
            t + o * s for t, o, s in zip(geo["translate"], (y0, x0), geo["scale"], strict=True)
        )
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            layer = self.viewer.layers[name]
            layer.data, layer.translate = result["labels"], geo["translate"]
        else:
            colours = {None: "transparent", 0: "transparent"}
            colours.update({GRAIN: class_colours(GRAIN)[1], PORE: class_colours(PORE)[1]})
            self.viewer.add_labels(
                result["labels"], name=name, opacity=0.35, colormap=colours_map(colours),
                metadata={"image": image.name, "live_preview": True}, **geo,
            )  # fmt: skip
        self.accept_button.enabled = self.next_button.enabled = True
        self.say(
            f"Live: preview from {result['pixels']:,} painted pixels in {result['seconds']:.1f} s."
        )

    # -- accept and where next ------------------------------------------------------------
    def accept(self) -> str | None:
        """Write the preview into the pair, never over a painted pixel; one undo step each."""
        if self.preview is None:
            return None
        _, grains, pores = self.pair()
        painted = self.brush.painted_mask(grains)
        changes = accepted_pixels(self.preview, grains, pores, painted)
        with self.brush.quiet():  # accepted pixels are not strokes of the user
            for layer, (indices, values) in zip((grains, pores), changes, strict=True):
                if len(indices[0]):
                    layer.data_setitem(indices, values)
        n = int(sum(len(i[0]) for i, _ in changes))
        self.say(f"Live: accepted the preview ({n:,} layer pixels changed; painted ones kept).")
        return self.status.value

    def where_next(self) -> None:
        """Boxes of the head's most uncertain regions as a Shapes layer; jump to the first."""
        if self.preview is None:
            return
        image = self.preview["image"]
        features = self.features.get(self.key(image))
        if features is not None:
            job = RegionsJob(features, self.preview["head"])
            self.start(job, self.show_regions, "Live: ranking where to correct next…")

    def show_regions(self, boxes: list) -> None:
        image = self.preview["image"]
        rects = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]) for y0, x0, y1, x1 in boxes]
        name = f"correct next [{image.name}]"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_shapes(
            rects, shape_type="rectangle", name=name, edge_color="yellow",
            face_color="transparent", edge_width=max(2, spatial_shape(image)[-1] // 300),
            **geometry(image, 2),
        )  # fmt: skip
        if boxes:
            y0, x0, y1, x1 = boxes[0]
            self.viewer.camera.center = image.data_to_world(((y0 + y1) / 2, (x0 + x1) / 2))
        self.say(f"Live: {len(boxes)} regions to correct next, most informative first.")


def colours_map(colours: dict):
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=colours)
