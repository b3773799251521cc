"""Live mode in the viewer: seconds from a stroke to the updated preview (Fine-tune dock).

Opens a real napari viewer (needs a display: ``xvfb-run -a python benchmarks/live.py``) with a
real Zeiss image, opens the Fine-tune dock through the Plugins path, switches Live on, then
paints strokes of the image's own labels with napari's brush and times, per round, the wait from
the last stroke to the preview layer's update (debounce + refit + prediction of the view, at most
1024² pixels). Also the engine's refit alone (:class:`RefitJob`) at about 200k labelled pixels.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import apply_threads, describe_machine, machine_info, save_results, script_parser

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "zeiss-shale-pores"


def paint_round(layers, truth: np.ndarray, rng, strokes: int, size: int) -> None:
    """``strokes`` brush dabs per class at random pixels of that class (matrix: erase)."""
    for cls, layer, value in ((1, layers[0], 1), (2, layers[1], 1), (0, layers[0], 0)):
        ys, xs = np.nonzero(truth == cls)
        if len(ys) == 0:
            continue
        layer.brush_size = size
        for i in rng.choice(len(ys), size=min(strokes, len(ys)), replace=False):
            layer.paint((ys[i], xs[i]), value, refresh=False)


class PreviewChanged:
    """True once the Live mode holds a new preview and no refit is running."""

    def __init__(self, live, before) -> None:
        self.live, self.before = live, before

    def __call__(self) -> bool:
        return self.live.preview is not self.before and self.live.task is None


def wait_for(app, test, timeout: float) -> float:
    start = time.perf_counter()
    while not test():
        app.processEvents()
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the live preview did not update")
        time.sleep(0.005)
    return time.perf_counter() - start


def viewer_rounds(args) -> dict:
    import napari
    from napari.qt import get_qapp

    from napari_poregrain._widgets._live import DEBOUNCE_MS

    viewer = napari.Viewer(show=False)
    app = get_qapp()
    image = viewer.open(SHARED / "images" / "train_1.tif", plugin="napari-poregrain")[0]
    from napari_poregrain.io import read_labels

    truth = read_labels(SHARED / "labels" / "train_1.png")
    unlabelled = np.full(truth.shape, 255, np.uint8)
    for name in ("grains", "pores"):
        viewer.add_labels(unlabelled.copy(), name=name, scale=image.scale, units=image.units)
    _, dock = viewer.window.add_plugin_dock_widget("napari-poregrain", "Fine-tune on corrections")
    dock._model.value = "default"
    dock.live.toggle.value = True
    features_s = wait_for(app, lambda: bool(dock.live.features), 1200)
    layers = (viewer.layers["grains"], viewer.layers["pores"])
    rng = np.random.default_rng(0)
    waits, pixels = [], []
    for _ in range(args.rounds):
        before = dock.live.preview
        paint_round(layers, truth, rng, args.strokes, args.brush)
        waits.append(wait_for(app, PreviewChanged(dock.live, before), 120))
        pixels.append(int(dock.live.brush.painted_mask(layers[0]).sum()))
    viewer.close()
    return {
        "image": "zeiss train_1 (1024x768, 691 rows above the bar)",
        "features_seconds": round(features_s, 2),
        "stroke_to_preview_seconds": [round(w, 2) for w in waits],
        "median_seconds": round(statistics.median(waits), 2),
        "painted_pixels": pixels,
        "debounce_ms": DEBOUNCE_MS,
    }


def engine_refit(features, truth: np.ndarray, n: int) -> float:
    from napari_poregrain._widgets._live_jobs import RefitJob

    rows, width = features.shape
    labels = np.full((rows, width), 255, np.uint8)
    rng = np.random.default_rng(1)
    idx = rng.choice(rows * width, size=min(n, rows * width), replace=False)
    labels.flat[idx] = truth[:rows].flat[idx]
    start = time.perf_counter()
    RefitJob(features, labels, (0, 0, min(1024, rows), min(1024, width)))(None, lambda: False)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--strokes", type=int, default=25, help="dabs per class and round")
    parser.add_argument("--brush", type=int, default=9)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    results = viewer_rounds(args)
    print(results, flush=True)
    from napari_poregrain.adapt.features import ImageFeatures
    from napari_poregrain.io import read_labels, read_sample
    from napari_poregrain.model import load_checkpoint, resolve_model

    sample = read_sample(SHARED / "images" / "train_1.tif")
    features = ImageFeatures.compute(sample, load_checkpoint(resolve_model(args.model)))
    truth = read_labels(SHARED / "labels" / "train_1.png")
    labelled = int(np.count_nonzero(truth[: features.shape[0]] != 255))
    results["engine_refit_seconds"] = {
        f"{n} labelled px": round(engine_refit(features, truth, n), 2)
        for n in (20_000, min(200_000, labelled))
    }
    info = machine_info("cpu")
    print(describe_machine(info))
    for key, value in results.items():
        print(f"{key}: {value}")
    save_results("live", results, args, argv, script=__file__, device="cpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
