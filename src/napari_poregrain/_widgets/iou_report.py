"""Dock widget "IoU report": prediction vs reference layers -> IoU table, history and plot.

Thin face over :mod:`napari_poregrain.analysis.metrics`: layers are turned into label maps, the
confusion matrix (and, with a model, the prediction) is computed in a background task, and the
results are shown; the numbers themselves come from the engine.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..analysis.metrics import (
    DISAGREEMENT_COLOURS,
    DISAGREEMENT_NAMES,
    ConfusionMatrix,
    disagreement_map,
)
from ..callbacks import Cancelled, check_stop
from ..classes import CLASS_NAMES
from ..io.atomic import atomic_write_bytes
from ..model import CheckpointError, available_models
from ._events import events
from ._layers import geometry, labels_from_layers
from ._worker import BackgroundTask

PRED_LAYERS = "grains + pores layers"
PRED_MODEL = "model on image"
REF_LAYERS = "grains + pores layers"
REF_MAP = "one label map (0/1/2/255)"
FILE_CHOICE = "checkpoint file…"
DISAGREEMENT_LAYER = "disagreement"
_DIS_KEY = "poregrain_disagreement"

HISTORY_COLUMNS = (
    ["round", "time", "model", "image", "reference", "region"]
    + [f"iou_{c}" for c in CLASS_NAMES]
    + ["mean_iou", "pixel_accuracy"]
    + [f"precision_{c}" for c in CLASS_NAMES]
    + [f"recall_{c}" for c in CLASS_NAMES]
    + ["labelled_pixels"]
)
_SHOWN_HISTORY = ["round", "time", "model", "image"] + [f"iou_{c}" for c in CLASS_NAMES]
_SHOWN_HISTORY += ["mean_iou", "pixel_accuracy"]


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _checksum(data: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(data).data, digest_size=16).hexdigest()


def region_mask(shapes: Shapes, target, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask, in ``target`` layer's pixel grid, of the pixels inside any shape.

    Shape vertices are taken through the shapes layer's and the target's scale/translate, so a
    region drawn over a scaled image selects the right pixels.
    """
    if len(shapes.data) == 0:
        raise ValueError(f"the region layer {shapes.name!r} holds no shapes")
    nd = len(shape)
    s_scale, s_trans = np.asarray(shapes.scale), np.asarray(shapes.translate)
    t_scale, t_trans = np.asarray(target.scale)[-nd:], np.asarray(target.translate)[-nd:]
    data = []
    for verts in shapes.data:
        world = np.asarray(verts, float) * s_scale + s_trans
        world = world[:, -nd:]
        data.append((world - t_trans) / t_scale)
    tmp = Shapes(data, shape_type=list(shapes.shape_type), ndim=nd)
    masks = tmp.to_masks(mask_shape=shape)
    return np.asarray(masks, bool).any(axis=0)


def _fit_height(table: QTableWidget) -> None:
    """Make a small fixed table exactly as tall as its rows (no scroll bar)."""
    table.resizeRowsToContents()
    height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
    height += sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setFixedHeight(height + 8)  # slack for napari's stylesheet padding
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)


@dataclass
class _Result:
    cm: ConfusionMatrix
    disagreement: np.ndarray
    row: dict[str, Any]
    geometry: dict[str, tuple]


class IoUReportWidget(QWidget):
    """Compare a prediction with reference layers: IoU table, confusion matrix, history, plot."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self._viewer = napari_viewer
        self._task: BackgroundTask | None = None
        self._last: _Result | None = None
        self.history: list[dict[str, Any]] = []

        def layers_of(kind):
            return lambda _w=None: [(lyr.name, lyr) for lyr in napari_viewer.layers
                                    if isinstance(lyr, kind)]  # fmt: skip

        self._pred_mode = ComboBox(label="prediction", choices=[PRED_LAYERS, PRED_MODEL])
        self._pred_grains = ComboBox(label="predicted grains", choices=layers_of(Labels))
        self._pred_pores = ComboBox(label="predicted pores", choices=layers_of(Labels))
        self._image = ComboBox(label="image", choices=layers_of(Image), nullable=True)
        self._model = ComboBox(label="model", choices=self._model_choices)
        self._file = FileEdit(label="file", mode="r", filter="*.safetensors")
        self._ref_mode = ComboBox(label="reference", choices=[REF_LAYERS, REF_MAP])
        self._ref_grains = ComboBox(label="reference grains", choices=layers_of(Labels))
        self._ref_pores = ComboBox(label="reference pores", choices=layers_of(Labels))
        self._ref_map = ComboBox(label="reference map", choices=layers_of(Labels))
        self._region = ComboBox(label="region", choices=layers_of(Shapes), nullable=True)
        self._compute = PushButton(text="Compute")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="progress", value=0, max=1)
        self._status = Label(value="")
        self._form = Container(
            widgets=[
                self._pred_mode, self._pred_grains, self._pred_pores, self._image, self._model,
                self._file, self._ref_mode, self._ref_grains, self._ref_pores, self._ref_map,
                self._region, self._compute, self._cancel, self._progress, self._status,
            ]
        )  # fmt: skip

        self.table = QTableWidget(len(CLASS_NAMES) + 2, 3)
        self.table.setHorizontalHeaderLabels(["IoU", "precision", "recall"])
        self.table.setVerticalHeaderLabels([*CLASS_NAMES, "mean IoU", "pixel accuracy"])
        self.confusion = QTableWidget(len(CLASS_NAMES), len(CLASS_NAMES))
        self.confusion.setHorizontalHeaderLabels([f"pred {c}" for c in CLASS_NAMES])
        self.confusion.setVerticalHeaderLabels([f"ref {c}" for c in CLASS_NAMES])
        self.history_table = QTableWidget(0, len(_SHOWN_HISTORY))
        self.history_table.setHorizontalHeaderLabels(_SHOWN_HISTORY)
        for t in (self.table, self.confusion, self.history_table):
            t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for t in (self.table, self.confusion):
            _fit_height(t)
        self.history_table.setMinimumHeight(120)
        self.disagree_button = QPushButton("Show disagreement")
        self.disagree_button.setEnabled(False)
        self.export_button = QPushButton("Export CSV…")
        self.clear_button = QPushButton("Clear history")

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3, 1.8), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(150)

        layout = QVBoxLayout(self)
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

        self._pred_mode.changed.connect(self._update_state)
        self._ref_mode.changed.connect(self._update_state)
        self._model.changed.connect(self._update_state)
        self._compute.clicked.connect(self.compute)
        self._cancel.clicked.connect(self.cancel)
        self.disagree_button.clicked.connect(self.show_disagreement)
        self.export_button.clicked.connect(self._export_dialog)
        self.clear_button.clicked.connect(self.clear_history)
        events.model_added.connect(self._on_model_added)
        self._resetting = False
        self._picked: set[int] = set()
        for combo in (self._pred_grains, self._pred_pores, self._ref_grains, self._ref_pores,
                      self._ref_map, self._image):  # fmt: skip
            self._mark_picked(combo)
        self.reset_choices()
        self._draw_plot()

    # -- choices ----------------------------------------------------------------------
    def _model_choices(self, _widget=None) -> list[str]:
        return [*available_models(), FILE_CHOICE]

    def _on_model_added(self, path) -> None:
        try:
            self._model.reset_choices()
        except RuntimeError:  # widget already deleted
            return
        names = {p.resolve(): n for n, p in available_models().items()}
        name = names.get(Path(path).resolve())
        if name is None:
            self._model.value = FILE_CHOICE
            self._file.value = Path(path)
        else:
            self._model.value = name

    def reset_choices(self, *_) -> None:
        """Refresh the layer lists (napari calls this when layers change)."""
        combos = {
            self._pred_grains: lambda n: n == "grains",
            self._pred_pores: lambda n: n == "pores",
            self._ref_grains: lambda n: "grain" in n.lower() and n != "grains",
            self._ref_pores: lambda n: "pore" in n.lower() and n != "pores",
            self._ref_map: lambda n: any(w in n.lower() for w in ("truth", "reference", "label")),
            self._image: lambda n: True,
            self._region: None,
            self._model: None,
        }
        layers = list(self._viewer.layers)
        self._resetting = True
        try:
            for combo, prefer in combos.items():
                old = combo.value
                combo.reset_choices()
                picked = id(combo) in self._picked and (
                    old is None or any(old is lyr for lyr in layers)
                )
                if prefer is None or picked:
                    continue
                for value in combo.choices:
                    if value is not None and prefer(value.name):
                        combo.value = value
                        break
        finally:
            self._resetting = False
        self._update_state()

    def _mark_picked(self, combo: ComboBox) -> None:
        """Remember a layer choice made by the user (not by the name preferences)."""

        def picked(*_):
            if not self._resetting:
                self._picked.add(id(combo))

        combo.changed.connect(picked)

    def _update_state(self, *_) -> None:
        model_mode = self._pred_mode.value == PRED_MODEL
        self._pred_grains.visible = self._pred_pores.visible = not model_mode
        self._model.visible = model_mode
        self._file.visible = model_mode and self._model.value == FILE_CHOICE
        self._image.label = "image" if model_mode else "image (optional)"
        map_mode = self._ref_mode.value == REF_MAP
        self._ref_grains.visible = self._ref_pores.visible = not map_mode
        self._ref_map.visible = map_mode
        self._compute.enabled = self._task is None

    def _model_path(self) -> Path | None:
        if self._model.value == FILE_CHOICE:
            path = Path(self._file.value)
            return path if path.is_file() else None
        return available_models().get(self._model.value)

    # -- computing --------------------------------------------------------------------
    def compute(self) -> None:
        """Compute the report for the chosen layers in a background task."""
        if self._task is not None:
            return
        try:
            work, row, geo = self._prepare()
        except ValueError as exc:
            self._fail(str(exc))
            return

        def on_returned(res):
            cm, dis = res
            self._on_done(_Result(cm, dis, row, geo))

        self._task = BackgroundTask(
            work,
            on_progress=self._on_progress,
            on_returned=on_returned,
            on_errored=self._on_error,
            on_finished=self._on_finished,
        )
        self._progress.max = 0  # busy until the model reports tiles
        self._status.value = "Computing…"
        self._cancel.enabled = True
        self._update_state()
        self._task.start()

    def _prepare(self):
        """Read the choices on the GUI thread; return (work, history row, layer geometry)."""
        image: Image | None = self._image.value
        if self._ref_mode.value == REF_MAP:
            ref_layer = self._ref_map.value
            if ref_layer is None:
                raise ValueError("Choose the reference label-map layer.")
            ref_arrays = (np.asarray(ref_layer.data),)
            ref_name = ref_layer.name
            ref_pair = None
        else:
            rg, rp = self._ref_grains.value, self._ref_pores.value
            if rg is None or rp is None:
                raise ValueError("Choose the reference grains and pores layers.")
            if rg is rp:
                raise ValueError("The reference grains and pores layers must differ.")
            ref_layer = rg
            ref_arrays = (np.asarray(rg.data), np.asarray(rp.data))
            ref_name = f"{rg.name} + {rp.name}"
            ref_pair = (rg, rp)
        ref_shape = ref_arrays[0].shape

        region = None
        region_layer: Shapes | None = self._region.value
        if region_layer is not None:
            region = region_mask(region_layer, ref_layer, ref_shape)

        if self._pred_mode.value == PRED_MODEL:
            path = self._model_path()
            if image is None or path is None:
                raise ValueError("Choose an image layer and a model (or checkpoint file).")
            img = np.asarray(image.data[0] if image.multiscale else image.data)
            rows = image.metadata.get("data_bar_row")
            model_name, image_name = path.stem, image.name
            pred_arrays = None
        else:
            pg, pp = self._pred_grains.value, self._pred_pores.value
            if pg is None or pp is None:
                raise ValueError("Choose the predicted grains and pores layers.")
            if ref_pair is not None and pg is ref_pair[0] and pp is ref_pair[1]:
                raise ValueError("The prediction and the reference are the same layers.")
            pred_arrays = (np.asarray(pg.data), np.asarray(pp.data))
            model_name = str(pg.metadata.get("model") or pg.name)
            image_name = image.name if image is not None else pg.name
            path = img = rows = None

        geo_layer = image if image is not None else ref_layer
        ndim = len(ref_shape)
        geo = geometry(geo_layer, ndim)
        row = {
            "time": _dt.datetime.now().isoformat(sep=" ", timespec="seconds"),
            "model": model_name,
            "image": image_name,
            "reference": ref_name,
            "region": region_layer.name if region_layer is not None else "",
        }

        def work(emit, should_stop):
            from ..inference.predict import predict

            if len(ref_arrays) == 2:
                ref = labels_from_layers(*ref_arrays)
            else:
                ref = ref_arrays[0]
            if pred_arrays is not None:
                pred = labels_from_layers(*pred_arrays)
            else:
                from ..model import load_checkpoint

                model = load_checkpoint(path)
                pred = predict(
                    img, model, content_rows=rows, progress=lambda d, t: emit((d, t)),
                    should_stop=should_stop,
                ).labels  # fmt: skip
            check_stop(should_stop)
            cm = ConfusionMatrix().update(ref, pred, region)
            return cm, disagreement_map(ref, pred, region)

        return work, row, geo

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._status.value = "Cancelling…"

    def _on_progress(self, payload) -> None:
        done, total = payload
        self._progress.max = total
        self._progress.value = done

    def _fail(self, msg: str) -> None:
        self._status.value = msg
        show_error(f"IoU report: {msg}")

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, Cancelled):
            self._status.value = "Cancelled: nothing was added."
            return
        known = isinstance(exc, CheckpointError | ValueError | TypeError)
        self._fail(str(exc) if known else repr(exc))

    def _on_finished(self) -> None:
        self._task = None
        self._cancel.enabled = False
        self._progress.max = 1
        self._update_state()

    def _on_done(self, result: _Result) -> None:
        self._last = result
        cm = result.cm
        row = {"round": len(self.history) + 1, **result.row}
        summary = cm.summary()
        for name in CLASS_NAMES:
            row[f"iou_{name}"] = summary["per_class_iou"][name]
        row["mean_iou"] = summary["mean_iou"]
        row["pixel_accuracy"] = summary["pixel_accuracy"]
        for name in CLASS_NAMES:
            row[f"precision_{name}"] = summary["precision"][name]
            row[f"recall_{name}"] = summary["recall"][name]
        row["labelled_pixels"] = cm.total
        self.history.append(row)
        self._fill_tables(cm)
        self._add_history_row(row)
        self._draw_plot()
        self.disagree_button.setEnabled(True)
        mean = _fmt(summary["mean_iou"])
        self._status.value = f"Round {row['round']}: mean IoU {mean} over {cm.total} pixels."

    # -- display ----------------------------------------------------------------------
    def _fill_tables(self, cm: ConfusionMatrix) -> None:
        iou, prec, rec = cm.per_class_iou(), cm.precision(), cm.recall()
        self.table.clearContents()
        for r in range(len(CLASS_NAMES)):
            for c, v in enumerate((iou[r], prec[r], rec[r])):
                self.table.setItem(r, c, QTableWidgetItem(_fmt(v)))
        self.table.setItem(len(CLASS_NAMES), 0, QTableWidgetItem(_fmt(cm.mean_iou())))
        self.table.setItem(len(CLASS_NAMES) + 1, 0, QTableWidgetItem(_fmt(cm.pixel_accuracy())))
        for r in range(len(CLASS_NAMES)):
            for c in range(len(CLASS_NAMES)):
                self.confusion.setItem(r, c, QTableWidgetItem(str(int(cm.matrix[r, c]))))

    def _add_history_row(self, row: dict[str, Any]) -> None:
        r = self.history_table.rowCount()
        self.history_table.insertRow(r)
        for c, key in enumerate(_SHOWN_HISTORY):
            v = row[key]
            if key.startswith(("iou_", "mean", "pixel")):
                text = _fmt(v)
            elif key == "time":
                text = str(v).split(" ")[-1]  # the full date and time go to the CSV
            else:
                text = str(v)
            self.history_table.setItem(r, c, QTableWidgetItem(text))
        self.history_table.scrollToBottom()

    def _draw_plot(self) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        rounds = [row["round"] for row in self.history]

        def series(key):
            return [np.nan if row[key] is None else row[key] for row in self.history]

        for name, colour in zip(CLASS_NAMES, ("grey", "red", "green"), strict=True):
            ax.plot(rounds, series(f"iou_{name}"), "o-", color=colour, label=name, ms=3)
        ax.plot(rounds, series("mean_iou"), "s--", color="black", label="mean", ms=3)
        ax.set_ylim(0, 1)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylabel("IoU", fontsize=8)
        ax.tick_params(labelsize=7)
        if rounds:
            ax.set_xticks(rounds)
            ax.legend(fontsize=6, loc="lower right")
        self.canvas.draw_idle()

    def show_disagreement(self) -> Labels | None:
        """Add (or refresh) the layer of disagreement codes from the last computation."""
        if self._last is None:
            self._fail("Compute a report first.")
            return None
        from napari.utils.colormaps import DirectLabelColormap

        data = self._last.disagreement
        colours = {None: "transparent", 0: "transparent", **DISAGREEMENT_COLOURS}
        meta = {_DIS_KEY: _checksum(data), "codes": dict(DISAGREEMENT_NAMES)}
        if DISAGREEMENT_LAYER in self._viewer.layers:
            old = self._viewer.layers[DISAGREEMENT_LAYER]
            ours = (
                isinstance(old, Labels)
                and old.data.shape == data.shape
                and old.metadata.get(_DIS_KEY) == _checksum(np.asarray(old.data))
            )
            if ours:  # untouched layer made here: refresh it in place
                old.data = data
                old.metadata.update(meta)
                for key, value in self._last.geometry.items():
                    setattr(old, key, value)
                return old
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
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in HISTORY_COLUMNS})
        return buf.getvalue()

    def export_csv(self, path: str | Path) -> Path:
        """Write the history as CSV (atomically) and return the path."""
        out = atomic_write_bytes(path, self.history_csv().encode("utf-8"))
        self._status.value = f"History written to {out}."
        return out

    def _export_dialog(self) -> None:
        if not self.history:
            self._fail("The history is empty: compute a report first.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export IoU history", "iou_history.csv", "CSV files (*.csv)"
        )
        if path:
            try:
                self.export_csv(path)
            except OSError as exc:
                self._fail(f"Cannot write {path}: {exc}")

    def clear_history(self) -> None:
        self.history.clear()
        self.history_table.setRowCount(0)
        self._draw_plot()
