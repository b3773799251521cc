"""The data bar of colour images is found on the one grey conversion, ``preprocess.to_grey``."""

from __future__ import annotations

import numpy as np

from napari_poregrain.io.databar import detect_data_bar
from napari_poregrain.preprocess import to_grey
from napari_poregrain.synthetic import make_sample


def _coloured_with_bar() -> np.ndarray:
    grey, _ = make_sample((256, 256), seed=0)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)  # not grey: channels differ
    rgb[200] = 0  # separator line, then a flat coloured bar
    rgb[201:] = (200, 40, 90)
    return rgb


def test_colour_bar_is_found_on_the_grey_image():
    rgb = _coloured_with_bar()
    assert detect_data_bar(rgb) == 200
    assert detect_data_bar(to_grey(rgb)) == detect_data_bar(rgb, rgb=True) == 200
    assert detect_data_bar(np.stack([rgb, rgb]), rgb=True) == 200  # a stack: its first plane


def test_to_grey_takes_colour_from_the_caller():
    rgb = np.zeros((3, 8, 3), np.uint8)  # 3 rows: too few for the guess
    rgb[..., 1] = 100
    assert to_grey(rgb).shape == (3, 8, 3)  # guessed: a stack of three grey planes
    np.testing.assert_allclose(to_grey(rgb, rgb=True), np.full((3, 8), 58.7), rtol=1e-5)
