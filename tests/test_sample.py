"""The Sample type: the data bar cut in one place, the usable region, stacks, array wrappers."""

import numpy as np
import pytest

from napari_poregrain.classes import GRAIN, IGNORE, PORE
from napari_poregrain.sample import Sample


def test_content_cuts_the_data_bar_for_grey_colour_and_stacks():
    grey = Sample(np.zeros((10, 8), np.uint8), data_bar_row=7)
    assert grey.content().shape == (7, 8) and grey.rows == 7
    colour = Sample(np.zeros((10, 8, 3), np.uint8), data_bar_row=6, rgb=True)
    assert colour.shape == (10, 8) and colour.content().shape == (6, 8, 3)
    stack = Sample(np.zeros((3, 10, 8), np.uint8), data_bar_row=5)
    assert stack.is_stack and stack.content().shape == (3, 5, 8)
    labels = np.ones((10, 8), np.uint8)
    assert colour.content(labels).shape == (6, 8)  # another array of the spatial shape
    assert np.shares_memory(grey.content(), grey.pixels)  # a view, never a copy


def test_usable_mask_leaves_out_bar_region_and_ignore():
    labels = np.full((6, 4), GRAIN, np.uint8)
    labels[0, 0] = IGNORE
    valid = np.ones((6, 4), bool)
    valid[:, 3] = False
    s = Sample(np.zeros((6, 4)), labels=labels, valid=valid, data_bar_row=5)
    mask = s.usable_mask()
    assert mask.sum() == 5 * 3 - 1
    assert not mask[5].any() and not mask[:, 3].any() and not mask[0, 0]
    masked = s.masked_labels()
    assert (masked[~mask] == IGNORE).all() and (masked[mask] == GRAIN).all()
    assert s.labels[5, 0] == GRAIN  # the caller's labels are not changed
    for y0, y1 in ((0, 2), (2, 6), (4, 6), (5, 6)):  # a band of rows is the same mask's rows
        assert np.array_equal(s.usable_mask((y0, y1)), mask[y0:y1])
        assert np.array_equal(s.usable_mask((y0, y1), labels[y0:y1]), mask[y0:y1])


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="labels of shape"):
        Sample(np.zeros((4, 4)), labels=np.zeros((4, 5), np.uint8), name="x")
    with pytest.raises(ValueError, match="data bar row"):
        Sample(np.zeros((4, 4)), data_bar_row=9)


def test_slices_of_a_stack_carry_their_labels_and_names():
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[1] = PORE
    s = Sample(np.zeros((2, 4, 4)), labels=labels, name="fib")
    parts = list(s.slices())
    assert [p.name for p in parts] == ["fib[0]", "fib[1]"]
    assert (parts[1].labels == PORE).all() and not parts[0].is_stack
    flat = Sample(np.zeros((4, 4)))
    assert list(flat.slices()) == [flat]


def test_array_wrappers():
    colour = Sample.from_array(np.zeros((8, 8, 3), np.uint8))
    assert colour.rgb and colour.shape == (8, 8)
    assert not Sample.from_array(np.zeros((8, 8, 3), np.uint8), rgb=False).rgb
    m = Sample.of_labels(np.full((5, 6), PORE, np.uint8), pixel_size_nm=4.0, name="map")
    assert m.shape == (5, 6) and m.pixel_size_nm == 4.0 and (m.labels == PORE).all()
    assert m.pixels.strides == (0, 0)  # no copy of the map's size
