"""``poregrain demo``: napari with the sample SEM image and the segmentation widget docked."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--truth", action="store_true", help="also load the exact ground truth")


def run(args: argparse.Namespace) -> int:
    import napari

    viewer = napari.Viewer(title="napari-poregrain demo")
    viewer.open_sample("napari-poregrain", "shale_truth" if args.truth else "shale")
    viewer.window.add_plugin_dock_widget("napari-poregrain", "Segment pores and grains")
    napari.run()
    return 0
