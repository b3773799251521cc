"""Dock widget "IoU report": prediction vs reference layers -> IoU table, history and plot.

Thin face over :mod:`napari_poregrain.analysis.metrics`: layers are turned into Samples, the
confusion matrix (and, with a model, the prediction) is computed in a background task
(:class:`._iou_history.ReportJob`), and the results are shown; the numbers come from the engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton

from ..analysis.blockwise import PairClassMap
from ..analysis.metrics import DISAGREEMENT_COLOURS, DISAGREEMENT_NAMES, ConfusionMatrix
from ..classes import CLASS_NAMES
from ._base import TaskDock
from ._brush import OverlapFix
from ._iou_history import SHOWN_HISTORY, IoUHistory, Report, ReportJob, fmt, now, shown_cells
from ._layers import (
    LayerChoices,
    NamePreferences,
    check_aligned,
    checksum,
    geometry,
    layer_pixels,
    sample_from_layers,
    spatial_shape,
    untouched,
)
from ._lazy import is_lazy, lazy_pair, lazy_pair_sample
from ._models import FILE_CHOICE, ModelPicker
from ._pairs import LayerFollower, PairPicker
from ._plots import canvas, draw_iou_history
from ._tables import fill, readonly_table

__all__ = ["FILE_CHOICE", "PRED_LAYERS", "PRED_MODEL", "REF_LAYERS", "REF_MAP", "IoUReportWidget"]

PRED_LAYERS = "grains + pores layers"
PRED_MODEL = "model on image"
REF_LAYERS = "grains + pores layers"
REF_MAP = "one label map (0/1/2/255)"
DISAGREEMENT_LAYER = "disagreement"
_DIS_KEY = "poregrain_disagreement"


def _looks_like_reference(name: str) -> bool:
    return any(w in name.lower() for w in ("truth", "reference", "label"))


class IoUReportWidget(TaskDock):
    """Compare a prediction with reference layers: IoU table, confusion matrix, history, plot."""

    title = "IoU report"
    failed = "IoU report failed"
    cancelled_text = "Cancelled: nothing was added."
    known_errors = (ValueError, TypeError)

    def __init__(self, napari_viewer) -> None:
        super().__init__(napari_viewer, "Compute")
        self._compute = self._run
        self._last: Report | None = None
        self.history = IoUHistory()
        self._fix = OverlapFix(self._viewer, self.say)
        self._build_form(self._viewer)
        self._build_results()
        self._pairing = PairPicker(self._pred_grains, self._pred_pores, self._image)
        self._preferences = NamePreferences(
            {
                self._ref_grains: lambda n: "grain" in n.lower() and n != "grains",
                self._ref_pores: lambda n: "pore" in n.lower() and n != "pores",
                self._ref_map: _looks_like_reference,
                self._image: lambda n: True,
            }
        )  # fmt: skip
        self._image.changed.connect(self.image_changed)
        self._follower = LayerFollower(self._viewer, self.reset_choices)
        self.reset_choices()
        draw_iou_history(self.figure, self.history)

    def _build_form(self, viewer) -> None:
        labels = LayerChoices(viewer, Labels)
        self._pred_mode = ComboBox(label="prediction", choices=[PRED_LAYERS, PRED_MODEL])
        self._pred_grains = ComboBox(label="predicted grains", choices=labels, nullable=True)
        self._pred_pores = ComboBox(label="predicted pores", choices=labels, nullable=True)
        self._image = ComboBox(label="image", choices=LayerChoices(viewer, Image), nullable=True)
        self._picker = ModelPicker(on_change=self.update_state)
        self._model, self._file = self._picker.combo, self._picker.file
        self._ref_mode = ComboBox(label="reference", choices=[REF_LAYERS, REF_MAP])
        self._ref_grains = ComboBox(label="reference grains", choices=labels)
        self._ref_pores = ComboBox(label="reference pores", choices=labels)
        self._ref_map = ComboBox(label="reference map", choices=labels)
        self._region = ComboBox(
            label="region", choices=LayerChoices(viewer, Shapes), nullable=True
        )
        self._form = Container(
            widgets=[
                self._pred_mode, self._pred_grains, self._pred_pores, self._image,
                *self._picker.widgets, self._ref_mode, self._ref_grains, self._ref_pores,
                self._ref_map, self._region, *self.task_controls(), self._fix.button,
            ]
        )  # fmt: skip
        self._pred_mode.changed.connect(self.update_state)
        self._ref_mode.changed.connect(self.update_state)

    def _build_results(self) -> None:
        self.table = readonly_table(
            ["IoU", "precision", "recall"], [*CLASS_NAMES, "mean IoU", "pixel accuracy"], fit=True
        )
        self.confusion = readonly_table(
            [f"pred {c}" for c in CLASS_NAMES], [f"ref {c}" for c in CLASS_NAMES], fit=True
        )
        self.history_table = readonly_table(SHOWN_HISTORY, [])
        self.history_table.setMinimumHeight(120)
        self.disagree_button = QPushButton("Show disagreement")
        self.disagree_button.setEnabled(False)
        self.export_button = QPushButton("Export CSV…")
        self.clear_button = QPushButton("Clear history")
        self.figure, self.canvas = canvas((3, 1.8), 150, tight_layout=True)
        layout = self._layout
        layout.addWidget(self._form.native)
        layout.addWidget(QLabel("Scores"))
        layout.addWidget(self.table)
        layout.addWidget(QLabel("Confusion matrix (pixels; rows reference, columns prediction)"))
        layout.addWidget(self.confusion)
        layout.addWidget(self.disagree_button)
        layout.addWidget(QLabel("History"))
        layout.addWidget(self.history_table)
        layout.addWidget(self.canvas)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.clear_button)
        layout.addLayout(buttons)
        self.disagree_button.clicked.connect(self.show_disagreement)
        self.export_button.clicked.connect(self._export_dialog)
        self.clear_button.clicked.connect(self.clear_history)  # fmt: skip

    # -- choices ----------------------------------------------------------------------
    def reset_choices(self, *_) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        self._preferences.refresh(list(self._viewer.layers))
        self._pred_grains.reset_choices()
        self._pred_pores.reset_choices()
        self._pairing.refresh(self._viewer.layers)
        self._region.reset_choices()
        self._model.reset_choices()
        self.update_state()

    def update_state(self, *_) -> None:
        super().update_state()
        model_mode = self._pred_mode.value == PRED_MODEL
        self._pred_grains.visible = self._pred_pores.visible = not model_mode
        self._picker.set_visible(model_mode)
        self._image.label = "image" if model_mode else "image (optional)"
        map_mode = self._ref_mode.value == REF_MAP
        self._ref_grains.visible = self._ref_pores.visible = not map_mode
        self._ref_map.visible = map_mode

    # -- computing --------------------------------------------------------------------
    def compute(self) -> None:
        """Compute the report for the chosen layers in a background task."""
        self.run()

    def starting(self, job: ReportJob) -> str:
        self._progress.max = 0  # busy until the model reports tiles
        return "Computing…"

    def _reference(self, region):
        """(reference Sample, its layer, its name, the reference grains/pores pair or None)."""
        if self._ref_mode.value == REF_MAP:
            layer = self._ref_map.value
            if layer is None:
                raise ValueError("Choose the reference label-map layer.")
            sample, data = sample_from_layers(layer, region=region), layer_pixels(layer)
            labels = data if is_lazy(data) else np.asarray(data)  # lazy: scored block-wise
            return sample.with_labels(labels), layer, layer.name, None
        rg, rp = self._ref_grains.value, self._ref_pores.value
        if rg is None or rp is None:
            raise ValueError("Choose the reference grains and pores layers.")
        if rg is rp:
            raise ValueError("The reference grains and pores layers must differ.")
        name = f"{rg.name} + {rp.name}"
        if lazy_pair(rg, rp):  # overlaps are refused band by band in the worker
            return lazy_pair_sample(rg, rg, rp, region, rg.name), rg, name, (rg, rp)
        self._fix.check(rg, rp)
        return sample_from_layers(rg, rg, rp, region), rg, name, (rg, rp)

    def _prediction(self, image, ref_pair) -> tuple[dict, str, str]:
        """(ReportJob arguments for the prediction, model name, image name)."""
        if self._pred_mode.value == PRED_MODEL:
            if image is None or not self._picker.ready:
                raise ValueError("Choose an image layer and a model (or checkpoint file).")
            path = self._picker.path()
            return {"image": sample_from_layers(image), "model_path": path}, path.stem, image.name
        pg, pp = self._pred_grains.value, self._pred_pores.value
        if pg is None or pp is None:
            raise ValueError("Choose the predicted grains and pores layers.")
        if pg is pp:
            raise ValueError("The predicted grains and pores layers must differ.")
        if ref_pair is not None and pg is ref_pair[0] and pp is ref_pair[1]:
            raise ValueError("The prediction and the reference are the same layers.")
        if image is not None:
            check_aligned(pg, image)
            check_aligned(pp, image)
        if lazy_pair(pg, pp):
            pred = PairClassMap(layer_pixels(pg), layer_pixels(pp))
        else:
            self._fix.check(pg, pp)
            pred = sample_from_layers(pg, pg, pp).labels
        model_name = str(pg.metadata.get("model") or pg.name)
        return {"prediction": pred}, model_name, image.name if image is not None else pg.name

    def make_job(self) -> ReportJob:
        """Read the choices on the GUI thread into a :class:`ReportJob`."""
        image: Image | None = self._image.value
        region_layer: Shapes | None = self._region.value
        ref, ref_layer, ref_name, ref_pair = self._reference(region_layer)
        if image is not None:
            check_aligned(ref_layer, image)  # a map at another scale is not scored misplaced
        pred, model_name, image_name = self._prediction(image, ref_pair)
        geo_layer = image if image is not None else ref_layer
        row = {
            "time": now(),
            "model": model_name,
            "image": image_name,
            "reference": ref_name,
            "region": region_layer.name if region_layer is not None else "",
        }
        geo = geometry(geo_layer, len(spatial_shape(ref_layer)))
        return ReportJob(ref, row=row, geometry=geo, **pred)

    def on_done(self, report: Report) -> None:
        self._last = report
        row = self.history.add(report)
        self._fill_tables(report.cm)
        r = self.history_table.rowCount()
        self.history_table.insertRow(r)
        fill(self.history_table, [shown_cells(row)], first_row=r)
        self.history_table.scrollToBottom()
        self._draw_plot()
        self.disagree_button.setEnabled(True)
        mean = fmt(row["mean_iou"])
        self._status.value = (
            f"Round {row['round']}: mean IoU {mean} over {report.cm.total} pixels."
        )

    # -- display ----------------------------------------------------------------------
    def _fill_tables(self, cm: ConfusionMatrix) -> None:
        iou, prec, rec = cm.per_class_iou(), cm.precision(), cm.recall()
        self.table.clearContents()
        scores = [[fmt(v) for v in (iou[r], prec[r], rec[r])] for r in range(len(CLASS_NAMES))]
        fill(self.table, [*scores, [fmt(cm.mean_iou())], [fmt(cm.pixel_accuracy())]])
        fill(self.confusion, [[str(int(v)) for v in row] for row in cm.matrix])

    def _draw_plot(self) -> None:
        draw_iou_history(self.figure, self.history)
        self.canvas.draw_idle()

    def show_disagreement(self) -> Labels | None:
        """Add (or refresh) the layer of disagreement codes from the last computation."""
        if self._last is None:
            self.fail("Compute a report first.")
            return None
        data = self._last.disagreement
        meta = {_DIS_KEY: checksum(data), "codes": dict(DISAGREEMENT_NAMES)}
        if DISAGREEMENT_LAYER in self._viewer.layers:
            old = self._viewer.layers[DISAGREEMENT_LAYER]
            if untouched(old, _DIS_KEY, data.shape):  # made here, not edited: refresh it
                old.data = data
                old.metadata.update(meta)
                for key, value in self._last.geometry.items():
                    setattr(old, key, value)
                return old
        return self._add_disagreement(data, meta)

    def _add_disagreement(self, data: np.ndarray, meta: dict) -> Labels:
        from napari.utils.colormaps import DirectLabelColormap

        colours = {None: "transparent", 0: "transparent", **DISAGREEMENT_COLOURS}
        layer = self._viewer.add_labels(
            data,
            name=DISAGREEMENT_LAYER,
            colormap=DirectLabelColormap(color_dict=colours),
            opacity=0.7,
            metadata=meta,
            features={
                "index": list(DISAGREEMENT_NAMES),
                "disagreement": list(DISAGREEMENT_NAMES.values()),
            },
            **self._last.geometry,
        )
        legend = ", ".join(f"{DISAGREEMENT_NAMES[k]} {v}" for k, v in DISAGREEMENT_COLOURS.items())
        self._status.value = f"Disagreement: {legend}."
        show_info(f"Disagreement layer: {legend}.")
        return layer

    # -- history ----------------------------------------------------------------------
    def history_csv(self) -> str:
        """The history as CSV text (one row per computation, empty cells for undefined)."""
        return self.history.csv()

    def export_csv(self, path: str | Path) -> Path:
        """Write the history as CSV (atomically) and return the path."""
        out = self.history.export(path)
        self._status.value = f"History written to {out}."
        return out

    def _export_dialog(self) -> None:
        if not len(self.history):
            self.fail("The history is empty: compute a report first.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export IoU history", "iou_history.csv", "CSV files (*.csv)"
        )
        if path:
            try:
                self.export_csv(path)
            except OSError as exc:
                self.fail(f"Cannot write {path}: {exc}")

    def clear_history(self) -> None:
        self.history.clear()
        self.history_table.setRowCount(0)
        self._draw_plot()
