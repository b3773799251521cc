"""``poregrain demo``: napari with a synthetic shale SEM image and the Segment panel docked."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from . import CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--truth",
        action="store_true",
        help="also open the true pores and grains of the synthetic image, to compare the "
        "segmentation with",
    )


HEADLESS_QT = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")
"""``QT_QPA_PLATFORM`` values that need no display server."""


def check_display() -> None:
    """CliError (exit 1) when there is no display to open napari on (Qt would abort)."""
    if not sys.platform.startswith("linux"):
        return  # macOS and Windows always have their own window system
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    display = os.environ.get("DISPLAY", "")
    if platform in HEADLESS_QT or os.environ.get("WAYLAND_DISPLAY"):
        return
    if not display:
        raise CliError(
            "no display to open napari on (neither DISPLAY nor WAYLAND_DISPLAY is set); run it "
            "on a desktop, or over ssh -X",
            1,
        )
    local = re.fullmatch(r":(\d+)(\.\d+)?", display)
    if local and not Path(f"/tmp/.X11-unix/X{local.group(1)}").exists():
        raise CliError(f"no display to open napari on (no X server answers DISPLAY={display})", 1)


def run(args: argparse.Namespace) -> int:
    check_display()  # before importing napari: without a display Qt aborts the process
    import napari

    viewer = napari.Viewer(title="napari-poregrain demo")
    viewer.open_sample("napari-poregrain", "shale_truth" if args.truth else "shale")
    viewer.window.add_plugin_dock_widget("napari-poregrain", "Segment pores and grains")
    napari.run()
    return 0
