"""Tiled inference: devices and precision, the tile plan and blending, and ``predict``."""

from .predict import (
    CPU_TILE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    PRECISIONS,
    Prediction,
    available_devices,
    predict,
    resolve_device,
)

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
