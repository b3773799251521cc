"""Regenerate the README's dock screenshots: napari at 1920x1080 with the synthetic sample and
the plugin's four docks opened from the Plugins path (they share one tabbed panel), one picture
per dock with its tab raised. Run under a display: ``xvfb-run -a -s "-screen 0 1920x1080x24"
python docs/screenshots.py``.
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from napari.qt import get_qapp
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtWidgets import QDockWidget

from napari_poregrain._widgets._layers import class_colours
from napari_poregrain.classes import GRAIN, PORE

HERE = Path(__file__).resolve().parent
DOCKS = {
    "segment": "Segment pores and grains",
    "finetune": "Fine-tune on corrections",
    "iou_report": "IoU report",
    "measure": "Measure",
}


def frame_of(widget) -> QDockWidget:
    parent = widget.parent()
    while not isinstance(parent, QDockWidget):
        parent = parent.parent()
    return parent


def settle(app, n: int = 20) -> None:
    for _ in range(n):
        app.processEvents()


def main() -> None:
    viewer = napari.Viewer(title="napari-poregrain")
    app = get_qapp()
    viewer.window._qt_window.resize(1920, 1080)  # the docks at 1080p (napari has no public size)
    viewer.open_sample("napari-poregrain", "shale_truth")
    for cls, name in ((GRAIN, "grains"), (PORE, "pores")):  # the pair a Segment run leaves
        truth = viewer.layers[f"{name} truth"]
        truth.visible = False
        colours = DirectLabelColormap(color_dict=class_colours(cls))
        viewer.add_labels(
            np.asarray(truth.data).copy(), name=name, scale=truth.scale, units=truth.units,
            colormap=colours, opacity=0.5,
        )  # fmt: skip
    docks = {}
    for key, name in DOCKS.items():
        _, docks[key] = viewer.window.add_plugin_dock_widget("napari-poregrain", name)
        settle(app)
    for key, widget in docks.items():
        frame_of(widget).raise_()
        settle(app, 40)
        path = HERE / f"dock_{key}_1080p.png"
        viewer.screenshot(str(path), canvas_only=False)
        print(f"wrote {path}")
    viewer.close()


if __name__ == "__main__":
    main()
