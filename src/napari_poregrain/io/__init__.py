"""Reading images into Samples and writing label maps (engine: no Qt, no napari)."""

from .images import (
    IMAGE_SUFFIXES,
    LABEL_SUFFIXES,
    TIFF_SUFFIXES,
    ImageReadError,
    detect_data_bar,
    length_to_nm,
    read_labels,
    read_sample,
    write_labels,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "TIFF_SUFFIXES",
    "ImageReadError",
    "detect_data_bar",
    "length_to_nm",
    "read_sample",
    "read_labels",
    "write_labels",
]
