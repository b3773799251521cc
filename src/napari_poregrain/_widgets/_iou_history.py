"""What the IoU report dock computes and keeps, without Qt: the job, the history and its CSV.

Lazy (dask/zarr) references or predictions are scored block-wise (:mod:`..analysis.blockwise`);
their disagreement map is a lazy dask array.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.blockwise import (
    PairClassMap,
    confusion_blockwise,
    is_lazy,
    lazy_disagreement,
)
from ..analysis.metrics import ConfusionMatrix, disagreement_map
from ..callbacks import check_stop
from ..classes import CLASS_NAMES, GRAIN, PORE
from ..io.atomic import atomic_write_bytes
from ..sample import Sample
from ._progress import StepProgress

HISTORY_COLUMNS = (
    ["round", "time", "model", "image", "reference", "region"]
    + [f"iou_{c}" for c in CLASS_NAMES]
    + ["mean_iou", "pixel_accuracy"]
    + [f"precision_{c}" for c in CLASS_NAMES]
    + [f"recall_{c}" for c in CLASS_NAMES]
    + ["labelled_pixels"]
)
SHOWN_HISTORY = ["round", "time", "model", "image"] + [f"iou_{c}" for c in CLASS_NAMES]
SHOWN_HISTORY += ["mean_iou", "pixel_accuracy"]


def fmt(v: float | None) -> str:
    """A score with four decimals; "—" when undefined."""
    return "—" if v is None else f"{v:.4f}"


def now() -> str:
    return _dt.datetime.now().isoformat(sep=" ", timespec="seconds")


@dataclass
class Report:
    """One computation: the confusion matrix, the disagreement map, what was compared."""

    cm: ConfusionMatrix
    disagreement: Any  # NumPy, or a dask array for lazy layers
    row: dict[str, Any]
    geometry: dict[str, tuple]


class ReportJob:
    """Score a prediction (a class map, or a model run on an image Sample) against a reference.

    ``reference``: a Sample whose labels are the reference and whose usable mask (region, data
    bar, 255) says which pixels count. Runs in the worker thread; returns a :class:`Report`.
    """

    def __init__(
        self,
        reference: Sample,
        *,
        prediction: np.ndarray | None = None,
        image: Sample | None = None,
        model_path: Path | None = None,
        row: dict[str, Any] | None = None,
        geometry: dict[str, tuple] | None = None,
    ) -> None:
        if prediction is None and (image is None or model_path is None):
            raise ValueError("Choose an image layer and a model (or checkpoint file).")
        self.reference, self.prediction = reference, prediction
        self.image, self.model_path = image, model_path
        self.row, self.geometry = row or {}, geometry or {}

    def predicted(self, emit, should_stop) -> Any:
        """The prediction's class map (the model runs here when there is no map; a lazy image
        streams its classes into a zarr pair in the temporary folder)."""
        if self.prediction is not None:
            return self.prediction
        from ..inference.predict import predict
        from ..model import load_checkpoint

        model = load_checkpoint(self.model_path)
        progress = StepProgress(emit)
        store = None
        if is_lazy(self.image.pixels) and not self.image.is_stack:
            from ._lazy import ZarrLabelPair, default_store

            where = default_store(_Named(self.image.name))
            store = ZarrLabelPair(where, (self.image.height, self.image.width))
        out = predict(self.image, model, progress=progress, should_stop=should_stop, out=store)
        return out.labels if store is None else PairClassMap(store[GRAIN], store[PORE])

    def __call__(self, emit, should_stop) -> Report:
        pred = self.predicted(emit, should_stop)
        check_stop(should_stop)
        if is_lazy(self.reference.labels) or is_lazy(pred):
            cm = confusion_blockwise(self.reference, pred, should_stop)
            return Report(cm, lazy_disagreement(self.reference, pred), self.row, self.geometry)
        ref, usable = self.reference.labels, self.reference.usable_mask()
        cm = ConfusionMatrix().update(ref, pred, usable)
        return Report(cm, disagreement_map(ref, pred, usable), self.row, self.geometry)


class _Named:
    """What :func:`._lazy.default_store` reads of a layer: a name and no source file."""

    def __init__(self, name: str) -> None:
        self.name, self.metadata = name, {}


class IoUHistory:
    """The rounds computed so far, one row each, with their CSV."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]

    def add(self, report: Report) -> dict[str, Any]:
        """Append the row of ``report`` (round number, scores, labelled pixels) and return it."""
        cm = report.cm
        row = {"round": len(self.rows) + 1, **report.row}
        summary = cm.summary()
        for name in CLASS_NAMES:
            row[f"iou_{name}"] = summary["per_class_iou"][name]
        row["mean_iou"] = summary["mean_iou"]
        row["pixel_accuracy"] = summary["pixel_accuracy"]
        for name in CLASS_NAMES:
            row[f"precision_{name}"] = summary["precision"][name]
            row[f"recall_{name}"] = summary["recall"][name]
        row["labelled_pixels"] = cm.total
        self.rows.append(row)
        return row

    def clear(self) -> None:
        self.rows.clear()

    def series(self, key: str) -> list[float]:
        """One column over the rounds, NaN where undefined (for plotting)."""
        return [np.nan if row[key] is None else row[key] for row in self.rows]

    def csv(self) -> str:
        """The history as CSV text (one row per computation, empty cells for undefined)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in HISTORY_COLUMNS})
        return buf.getvalue()

    def export(self, path: str | Path) -> Path:
        """Write the CSV atomically and return the path."""
        return atomic_write_bytes(path, self.csv().encode("utf-8"))


def shown_cells(row: dict[str, Any]) -> list[str]:
    """The texts of a row in the dock's history table (scores formatted, time without date)."""
    cells = []
    for key in SHOWN_HISTORY:
        v = row[key]
        if key.startswith(("iou_", "mean", "pixel")):
            cells.append(fmt(v))
        elif key == "time":
            cells.append(str(v).split(" ")[-1])  # the full date and time go to the CSV
        else:
            cells.append(str(v))
    return cells
