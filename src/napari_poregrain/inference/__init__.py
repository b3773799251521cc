"""Tiled inference: devices and precision (``device``), the tile plan and streamed blending
(``tiling``), and ``predict`` (Sample in, class map out)."""

from .device import CPU_TILE, DEFAULT_TILE, PRECISIONS, available_devices, resolve_device
from .predict import Prediction, predict
from .tiling import DEFAULT_OVERLAP

__all__ = [
    "CPU_TILE",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "PRECISIONS",
    "Prediction",
    "available_devices",
    "predict",
    "resolve_device",
]
