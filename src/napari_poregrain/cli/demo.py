"""``poregrain demo``: napari with a synthetic shale SEM image and the Segment panel docked."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--truth",
        action="store_true",
        help="also open the true pores and grains of the synthetic image, to compare the "
        "segmentation with",
    )


def run(args: argparse.Namespace) -> int:
    import napari

    viewer = napari.Viewer(title="napari-poregrain demo")
    viewer.open_sample("napari-poregrain", "shale_truth" if args.truth else "shale")
    viewer.window.add_plugin_dock_widget("napari-poregrain", "Segment pores and grains")
    napari.run()
    return 0
