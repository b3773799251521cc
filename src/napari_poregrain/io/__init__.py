"""Reading images into Samples and writing label maps (engine: no Qt, no napari).

``images`` reads Samples, ``metadata`` finds the pixel size, ``databar`` the burned-in data bar,
``labels`` reads and writes label maps, ``atomic`` claims written files atomically, ``lazy``
opens TIFF (tifffile's zarr store) and OME-Zarr images without loading them, ``writers`` streams
label blocks to a tiled TIFF or an OME-Zarr, ``outputs`` decides output names before any work.
"""

from .databar import detect_data_bar
from .files import IMAGE_SUFFIXES, LABEL_SUFFIXES, TIFF_SUFFIXES, ImageReadError
from .images import read_sample
from .labels import read_labels, write_labels
from .lazy import open_sample, read_lazy
from .metadata import length_to_nm
from .writers import LabelWriterError, open_label_writer

__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "TIFF_SUFFIXES",
    "ImageReadError",
    "LabelWriterError",
    "detect_data_bar",
    "length_to_nm",
    "open_label_writer",
    "open_sample",
    "read_lazy",
    "read_sample",
    "read_labels",
    "write_labels",
]
