"""Reading images into Samples and writing label maps (engine: no Qt, no napari).

``images`` reads Samples, ``metadata`` finds the pixel size, ``databar`` the burned-in data bar,
``labels`` reads and writes label maps, ``atomic`` claims written files atomically.
"""

from .databar import detect_data_bar
from .files import IMAGE_SUFFIXES, LABEL_SUFFIXES, TIFF_SUFFIXES, ImageReadError
from .images import read_sample
from .labels import read_labels, write_labels
from .metadata import length_to_nm

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
