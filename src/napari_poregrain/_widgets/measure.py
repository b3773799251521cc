"""Dock widget "Measure": `grains` / `pores` layers -> porosity, size distributions, exports."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..analysis.measure import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_MIN_SIZE,
    OBJECT_CLASSES,
    Measurement,
    column_name,
    export_measurement,
    free_base,
    measure,
    parse_pixel_size,
    size_colours,
    size_histogram,
    summary_rows,
)
from ..callbacks import Cancelled
from ._layers import geometry, labels_from_layers
from ._worker import BackgroundTask

_PIXELS = ("px", "pixel", "pixels")


class MeasureWidget(QWidget):
    """Pick `grains`/`pores` layers (+ region, confidence); Compute fills table and histograms."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._task: BackgroundTask | None = None
        self.measurement: Measurement | None = None
        self._geometry: dict[str, Any] = {}
        self._pending_geometry: dict[str, Any] = {}
        self._grains = self._layer_combo("grains", Labels)
        self._pores = self._layer_combo("pores", Labels)
        self._image = self._layer_combo("image (data bar)", Image)
        self._region = self._layer_combo("region", Shapes)
        self._confidence = self._layer_combo("confidence", Image)
        self._threshold = FloatSpinBox(
            label="low if below", min=0.0, max=1.0, step=0.05, value=DEFAULT_CONFIDENCE_THRESHOLD
        )
        self._pixel = LineEdit(label="pixel size", value="")
        self._pixel.native.setPlaceholderText("from layer scale, e.g. 13.96nm or px")
        self._min_size = SpinBox(label="min size (px)", min=1, max=10**7, value=DEFAULT_MIN_SIZE)
        self._compute = PushButton(text="Compute")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._status = Label(value="")
        self._form = Container(
            widgets=[
                self._grains,
                self._pores,
                self._image,
                self._region,
                self._confidence,
                self._threshold,
                self._pixel,
                self._min_size,
                self._compute,
                self._cancel,
            ]
        )
        self._progress = QProgressBar()
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["quantity", "value"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(200)
        self.figure = Figure(figsize=(4, 4.5), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(280)
        self._export = QPushButton("Export CSV + summary…")
        self._colour = QPushButton("Colour by size")
        buttons = QHBoxLayout()
        buttons.addWidget(self._export)
        buttons.addWidget(self._colour)
        layout = QVBoxLayout(self)
        layout.addWidget(self._form.native)
        layout.addWidget(self._progress)
        layout.addWidget(self._status.native)
        layout.addWidget(self.table)
        layout.addWidget(self.canvas)
        layout.addLayout(buttons)
        self._compute.clicked.connect(self.compute)
        self._cancel.clicked.connect(self.cancel)
        self._export.clicked.connect(self._export_dialog)
        self._colour.clicked.connect(self.colour_by_size)
        self._status.native.setWordWrap(True)
        self.reset_choices()
        self._update_state()

    # -- layer choices ----------------------------------------------------------------
    def _layer_combo(self, label: str, kind: type) -> ComboBox:
        def choices(_widget=None):
            return [
                (layer.name, layer) for layer in self._viewer.layers if isinstance(layer, kind)
            ]

        return ComboBox(label=label, choices=choices, nullable=True, value=None)

    def reset_choices(self, *_) -> None:
        """Refresh the layer lists; empty choices default to layers named by convention."""
        self._form.reset_choices()
        layers = self._viewer.layers
        for combo, name, kind in (
            (self._grains, "grains", Labels),
            (self._pores, "pores", Labels),
            (self._confidence, "confidence", Image),
        ):
            if combo.value is None and name in layers and isinstance(layers[name], kind):
                combo.value = layers[name]
        ref = self._pores.value or self._grains.value
        if self._image.value is None and ref is not None:
            shape = np.shape(ref.data)[-2:]
            images = [
                ly
                for ly in layers
                if isinstance(ly, Image)
                and ly.name != "confidence"
                and (ly.data.shape[:2] if ly.rgb else ly.data.shape[-2:]) == shape
            ]
            if images:
                self._image.value = images[0]

    def _update_state(self) -> None:
        busy = self._task is not None
        self._compute.enabled = not busy
        self._cancel.enabled = busy
        self._export.setEnabled(self.measurement is not None and not busy)
        self._colour.setEnabled(self.measurement is not None and not busy)

    # -- inputs -----------------------------------------------------------------------
    def _pixel_size_nm(self, layer: Labels) -> float | None:
        """Typed pixel size, else the layer's scale (µm per pixel); scale 1 means pixels."""
        text = self._pixel.value.strip()
        if text:
            return None if text.lower() in _PIXELS else parse_pixel_size(text)
        sy, sx = (float(s) for s in layer.scale[-2:])
        if math.isclose(sy, 1.0) and math.isclose(sx, 1.0):
            return None
        if not math.isclose(sy, sx, rel_tol=1e-6):
            raise ValueError(
                f"layer {layer.name!r} has different pixel sizes in y and x ({sy}, {sx} µm)"
            )
        return sy * 1000.0

    def _inputs(self) -> dict[str, Any]:
        """Arrays and options for :func:`measure` from the chosen layers (GUI thread)."""
        grains, pores = self._grains.value, self._pores.value
        if grains is None and pores is None:
            raise ValueError("choose a grains or a pores Labels layer (or both)")
        ref = pores if pores is not None else grains
        arrays = [None if ly is None else np.asarray(ly.data) for ly in (grains, pores)]
        for ly, a in zip((grains, pores), arrays, strict=True):
            if a is not None and a.ndim != 2:
                raise ValueError(f"layer {ly.name!r} is not 2-D (shape {a.shape})")
        shape = next(a.shape for a in arrays if a is not None)
        g, p = (np.zeros(shape, np.uint8) if a is None else a for a in arrays)
        class_map = labels_from_layers(g, p)
        pixel_nm = self._pixel_size_nm(ref)
        if grains is not None and pores is not None and not self._pixel.value.strip():
            other = self._pixel_size_nm(grains)
            if (other is None) != (pixel_nm is None) or (
                other is not None and not math.isclose(other, pixel_nm, rel_tol=1e-6)
            ):
                raise ValueError("the grains and pores layers have different scales")
        bar = None
        image = self._image.value
        if image is not None:
            ishape = image.data.shape[:2] if image.rgb else image.data.shape[-2:]
            if tuple(ishape) != shape:
                raise ValueError(
                    f"image {image.name!r} has shape {tuple(ishape)} but the labels {shape}"
                )
            bar = image.metadata.get("data_bar_row")
        if bar is None:
            bar = ref.metadata.get("data_bar_row")
        conf, conf_scale = None, None
        if self._confidence.value is not None:
            layer = self._confidence.value
            conf = np.asarray(layer.data)
            if conf.shape != shape:
                raise ValueError(f"confidence {layer.name!r} has shape {conf.shape}, not {shape}")
            conf_scale = layer.metadata.get("confidence_scale")
        region = None
        if self._region.value is not None:
            region = self._region_mask(self._region.value, ref, shape)
        names = [f"{k}={ly.name}" for k, ly in (("grains", grains), ("pores", pores)) if ly]
        self._pending_geometry = geometry(ref, 2)
        return dict(
            class_map=class_map,
            pixel_size_nm=pixel_nm,
            valid=region,
            data_bar_row=bar,
            min_size=int(self._min_size.value),
            confidence=conf,
            confidence_scale=conf_scale,
            confidence_threshold=float(self._threshold.value),
            source="layers " + ", ".join(names),
        )

    @staticmethod
    def _region_mask(shapes: Shapes, ref: Labels, shape: tuple[int, int]) -> np.ndarray:
        """Pixels of ``ref``'s grid inside the shapes (vertices mapped through world space)."""
        if len(shapes.data) == 0:
            raise ValueError(f"the region layer {shapes.name!r} holds no shapes")
        s_sc, s_tr = np.asarray(shapes.scale[-2:]), np.asarray(shapes.translate[-2:])
        r_sc, r_tr = np.asarray(ref.scale[-2:]), np.asarray(ref.translate[-2:])
        data = [(np.asarray(v)[:, -2:] * s_sc + s_tr - r_tr) / r_sc for v in shapes.data]
        mapped = Shapes(data, shape_type=list(shapes.shape_type))
        mask = mapped.to_labels(labels_shape=shape) > 0
        if not mask.any():
            raise ValueError(f"the shapes of {shapes.name!r} do not cover the labels")
        return mask

    # -- running ----------------------------------------------------------------------
    def compute(self) -> None:
        """Measure the chosen layers in a background thread."""
        if self._task is not None:
            return
        try:
            inputs = self._inputs()
        except ValueError as exc:
            self._fail(str(exc))
            return

        def work(emit, should_stop):
            return measure(
                **inputs,
                keep_labels=True,
                progress=lambda d, t: emit((d, t)),
                should_stop=should_stop,
            )

        self._task = BackgroundTask(
            work,
            on_progress=self._on_progress,
            on_returned=self._on_done,
            on_errored=self._on_error,
            on_finished=self._on_finished,
        )
        self._progress.setValue(0)
        self._status.value = "Measuring…"
        self._update_state()
        self._task.start()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._status.value = "Cancelling…"

    def _on_progress(self, payload) -> None:
        done, total = payload
        self._progress.setMaximum(total)
        self._progress.setValue(done)

    def _fail(self, msg: str) -> None:
        self._status.value = msg
        show_error(f"Measure: {msg}")

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, Cancelled):
            self._status.value = "Cancelled."
            return
        self._fail(str(exc) if isinstance(exc, ValueError) else repr(exc))

    def _on_finished(self) -> None:
        self._task = None
        self._update_state()

    def _on_done(self, m: Measurement) -> None:
        self.measurement = m
        self._geometry = self._pending_geometry
        rows = summary_rows(m)
        self.table.setRowCount(len(rows))
        for i, (name, value) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(name))
            self.table.setItem(i, 1, QTableWidgetItem(value))
        self._plot(m)
        counts = ", ".join(f"{len(t['label'])} {n}" for n, t in m.objects.items())
        self._status.value = f"Measured {counts}." + (
            " No pixel size known: values are in pixels." if m.unit == "px" else ""
        )

    def _plot(self, m: Measurement) -> None:
        self.figure.clear()
        axes = self.figure.subplots(len(OBJECT_CLASSES), 1)
        for ax, name in zip(axes, OBJECT_CLASSES, strict=True):
            table = m.objects[name]
            d, a = table["equivalent_diameter"], table["area"]
            title = f"{name[:-1]}-size distribution (n = {len(d)})"
            ax.set_title(title, fontsize=9)
            if len(d) == 0:
                ax.text(0.5, 0.5, f"no {name}", transform=ax.transAxes, ha="center")
                ax.set_axis_off()
                continue
            edges, counts, area = size_histogram(d, a, bins=max(5, min(25, len(d) // 3)))
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", alpha=0.7)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"equivalent diameter ({m.unit})", fontsize=8)
            ax.set_ylabel("count", fontsize=8)
            twin = ax.twinx()
            twin.stairs(100 * area, edges, color="C3")
            twin.set_ylabel("% of area", fontsize=8, color="C3")
            ax.tick_params(labelsize=7)
            twin.tick_params(labelsize=7)
        self.canvas.draw_idle()

    # -- outputs ----------------------------------------------------------------------
    def export(self, base: str | Path) -> list[Path]:
        """Write ``<base>_objects.csv`` and ``<base>_summary.json``; never replaces a file.

        When either exists, ``<base>-2``, ``<base>-3``... is used instead.
        """
        if self.measurement is None:
            raise ValueError("nothing measured yet: press Compute first")
        paths = export_measurement(self.measurement, free_base(base))
        self._status.value = "Exported " + " and ".join(str(p) for p in paths)
        return paths

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export measurements",
            "measurements_objects.csv",
            "CSV (*.csv)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if not path:
            return
        try:
            self.export(path)
        except (OSError, ValueError) as exc:
            self._fail(f"export failed: {exc}")

    def colour_by_size(self) -> list[Labels]:
        """Add one Labels layer per class, objects coloured by equivalent diameter (log scale).

        Hovering an object shows its label, diameter and area (the layer's features).
        """
        from napari.utils.colormaps import DirectLabelColormap

        m = self.measurement
        if m is None or m.object_labels is None:
            self._fail("nothing measured yet: press Compute first")
            return []
        added = []
        for name, table in m.objects.items():
            if len(table["label"]) == 0:
                continue
            colours = size_colours(table["equivalent_diameter"])
            cmap = {None: "transparent", 0: "transparent"}
            cmap.update({int(i): c for i, c in zip(table["label"], colours, strict=True)})
            features = {
                "index": table["label"],
                column_name("equivalent_diameter", m.unit): table["equivalent_diameter"],
                column_name("area", m.unit): table["area"],
            }
            layer = self._viewer.add_labels(
                m.object_labels[name],
                name=f"{name} by size ({m.unit})",
                colormap=DirectLabelColormap(color_dict=cmap),
                features=features,
                opacity=0.8,
                **self._geometry,
            )
            added.append(layer)
        self._status.value = (
            f"Added {', '.join(ly.name for ly in added)}: dark = small, yellow = large."
            if added
            else "No objects to colour."
        )
        return added
