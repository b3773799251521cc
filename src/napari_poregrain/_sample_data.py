"""npe2 sample-data contributions: synthetic SEM-like shale made by the package."""

from __future__ import annotations

from .classes import GRAIN, PORE
from .synthetic import SAMPLE_PIXEL_SIZE_NM, make_sample

_SCALE = (SAMPLE_PIXEL_SIZE_NM / 1000,) * 2
_UNITS = ("micrometer", "micrometer")


def _image_layer(image):
    meta = {"pixel_size_nm": SAMPLE_PIXEL_SIZE_NM, "data_bar_row": None, "synthetic_seed": 0}
    return (
        image,
        {"name": "synthetic shale", "scale": _SCALE, "units": _UNITS, "metadata": meta},
        "image",
    )


def shale_sample():
    """A 1024x1024 synthetic shale image (10 nm pixels), seed 0."""
    image, _ = make_sample((1024, 1024), seed=0)
    return [_image_layer(image)]


def shale_sample_with_truth():
    """The same image with its exact ground truth as `grains truth` and `pores truth` layers."""
    image, labels = make_sample((1024, 1024), seed=0)
    truth = [
        (
            (labels == c).astype("uint8"),
            {"name": f"{name} truth", "scale": _SCALE, "units": _UNITS},
            "labels",
        )
        for c, name in ((GRAIN, "grains"), (PORE, "pores"))
    ]
    return [_image_layer(image), *truth]
