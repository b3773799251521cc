"""Dock widget "Measure": `grains` / `pores` layers -> porosity, size distributions, exports.

The pair follows the newest `grains`/`pores` layers (:mod:`._pairs`); lengths are in the layers'
units (no units: px); a stack is measured per slice and in total.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, LineEdit, SpinBox
from napari.layers import Image, Labels, Shapes
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QHeaderView, QPushButton

from ..analysis.measure import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    DEFAULT_MIN_SIZE,
    Measurement,
    column_name,
    export_measurement,
    free_base,
    size_colours,
    summary_rows,
)
from ._base import TaskDock
from ._brush import OverlapFix
from ._layers import LayerChoices, spatial_shape
from ._measure_job import MeasureJob
from ._pairs import LayerFollower, PairPicker
from ._plots import SizeLegend, canvas, draw_size_histograms
from ._tables import fill, readonly_table


class MeasureWidget(TaskDock):
    """Pick `grains`/`pores` layers (+ region, confidence); Compute fills table and histograms."""

    title = "Measure"
    failed = "Measuring failed"

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, "Compute")
        self._compute = self._run
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
        self._fix = OverlapFix(self._viewer, self.say)
        self._form = Container(
            widgets=[
                self._grains, self._pores, self._image, self._region, self._confidence,
                self._threshold, self._pixel, self._min_size, *self.task_controls(),
                self._fix.button,
            ]
        )  # fmt: skip
        self._pairing = PairPicker(self._grains, self._pores, self._image)
        self._image.changed.connect(self.image_changed)
        self.table = readonly_table(["quantity", "value"], [])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(200)
        self.figure, self.canvas = canvas((4, 4.5), 280, layout="constrained")
        self._export = QPushButton("Export CSV + summary…")
        self._colour = QPushButton("Colour by size")
        buttons = QHBoxLayout()
        buttons.addWidget(self._export)
        buttons.addWidget(self._colour)
        self._layout.addWidget(self._form.native)
        self._layout.addWidget(self.table)
        self._layout.addWidget(self.canvas)
        self.canvas.setVisible(False)  # no empty figure before the first result
        self.legend = SizeLegend()  # colour bars of the "by size" layers, shown once drawn
        self._layout.addWidget(self.legend.canvas)
        self._layout.addLayout(buttons)
        self._export.clicked.connect(self._export_dialog)
        self._colour.clicked.connect(self.colour_by_size)
        self._follower = LayerFollower(self._viewer, self.reset_choices)
        self.reset_choices()
        self.update_state()

    # -- layer choices ----------------------------------------------------------------
    def _layer_combo(self, label: str, kind: type) -> ComboBox:
        choices = LayerChoices(self._viewer, kind)
        return ComboBox(label=label, choices=choices, nullable=True, value=None)

    def reset_choices(self, *_) -> None:
        """Refresh the layer lists; the newest grains/pores pair, then an image of its shape."""
        self._form.reset_choices()
        layers = self._viewer.layers
        self._pairing.refresh(layers)
        if self._confidence.value is None and "confidence" in layers:
            if isinstance(layers["confidence"], Image):
                self._confidence.value = layers["confidence"]
        ref = self._pores.value or self._grains.value
        if self._image.value is None and ref is not None:
            shape = spatial_shape(ref)
            images = [
                ly
                for ly in layers
                if isinstance(ly, Image) and ly.name != "confidence" and spatial_shape(ly) == shape
            ]
            if images:
                self._image.value = images[0]

    def update_state(self, *_) -> None:
        super().update_state()
        done = self.measurement is not None and not self.busy
        self._export.setEnabled(done)
        self._colour.setEnabled(done)

    # -- running ----------------------------------------------------------------------
    def compute(self) -> None:
        """Measure the chosen layers in a background thread."""
        self.run()

    def make_job(self) -> MeasureJob:
        self._fix.check(self._grains.value, self._pores.value)
        return MeasureJob.from_layers(
            self._grains.value,
            self._pores.value,
            image=self._image.value,
            region=self._region.value,
            confidence=self._confidence.value,
            pixel_text=self._pixel.value,
            min_size=int(self._min_size.value),
            confidence_threshold=float(self._threshold.value),
        )

    def starting(self, job: MeasureJob) -> str:
        self._pending_geometry = job.geometry
        return "Measuring…"

    def fail(self, msg: str) -> None:
        """Bad input: the sentence, and no table or figure left from an earlier Compute."""
        self.clear_results()
        super().fail(msg)

    def on_error(self, exc: Exception) -> None:
        self.clear_results()
        super().on_error(exc)

    def clear_results(self) -> None:
        """Forget the last measurement: empty table, figure hidden, export disabled."""
        self.measurement = None
        self.table.setRowCount(0)
        self.canvas.setVisible(False)
        self.update_state()

    def on_done(self, m: Measurement) -> None:
        self.measurement = m
        self.canvas.setVisible(True)
        self._geometry = self._pending_geometry
        rows = summary_rows(m) + slice_rows(m.summary.get("slices", []))
        self.table.setRowCount(len(rows))
        fill(self.table, [list(r) for r in rows])
        draw_size_histograms(self.figure, m)
        self.canvas.draw_idle()
        counts = ", ".join(f"{len(t['label'])} {n}" for n, t in m.objects.items())
        slices = len(m.summary.get("slices", []))
        where = f" in {slices} slices" if slices else ""
        self._status.value = f"Measured {counts}{where}." + (
            " No pixel size known: values are in pixels." if m.unit == "px" else ""
        )

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
            self.fail(f"export failed: {exc}")

    def colour_by_size(self) -> list[Labels]:
        """Add one Labels layer per class, objects coloured by equivalent diameter (log scale).

        Hovering an object shows its label, diameter and area (the layer's features).
        """
        m = self.measurement
        if m is None or m.object_labels is None:
            self.fail("nothing measured yet: press Compute first")
            return []
        added = [
            self._size_layer(m, name, table)
            for name, table in m.objects.items()
            if len(table["label"]) and name in m.object_labels
        ]
        if added:
            self.legend.draw(m)
            self._status.value = (
                f"Added {', '.join(ly.name for ly in added)}: dark = small, yellow = large."
            )
        elif any(len(t["label"]) for t in m.objects.values()):  # measured block-wise
            self._status.value = "Objects of an image this large cannot be coloured by size."
        else:
            self._status.value = "No objects to colour."
        return added

    def _size_layer(self, m: Measurement, name: str, table: dict) -> Labels:
        from napari.utils.colormaps import DirectLabelColormap

        colours = size_colours(table["equivalent_diameter"])
        cmap = {None: "transparent", 0: "transparent"}
        cmap.update({int(i): c for i, c in zip(table["label"], colours, strict=True)})
        features = {
            "index": table["label"],
            column_name("equivalent_diameter", m.unit): table["equivalent_diameter"],
            column_name("area", m.unit): table["area"],
        }
        return self._viewer.add_labels(
            m.object_labels[name],
            name=f"{name} by size ({m.unit})",
            colormap=DirectLabelColormap(color_dict=cmap),
            features=features,
            opacity=0.8,
            **self._geometry,
        )


def slice_rows(slices: list[dict]) -> list[tuple[str, str]]:
    """Table rows of a stack's slices: pore and grain fractions and object counts."""
    rows = []
    for row in slices:
        z = row["slice"]
        for key in ("pore_fraction", "grain_fraction"):
            value = row[key]
            text = "-" if value is None else f"{100 * value:.3g} %"
            rows.append((f"slice {z}: {key.replace('_', ' ')}", text))
        counts = ", ".join(f"{row[k]} {k[:-6]}" for k in row if k.endswith("_count"))
        rows.append((f"slice {z}: objects", counts))
    return rows
