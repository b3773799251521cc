import numpy as np
import pytest

from napari_poregrain.inference.tiling import GROWTH, blend_window, layout


@pytest.mark.parametrize("length", [1, 15, 100, 1024, 1025, 2048, 3000, 4096, 16384, 30001])
@pytest.mark.parametrize("tile,overlap", [(1024, 64), (512, 64), (256, 0), (64, 0), (128, 32)])
def test_layout_covers_the_axis_with_the_overlap(length, tile, overlap):
    side, starts = layout(length, tile, overlap)
    assert side % 16 == 0 and (side <= tile * GROWTH or len(starts) == 1)
    assert starts[0] == 0
    if len(starts) == 1:
        assert side >= length
    else:
        assert starts[-1] + side == length
        assert min(a + side - b for a, b in zip(starts, starts[1:])) >= overlap
    covered = len(starts) * side
    assert covered <= max(length, side) + len(starts) * overlap + 16 * len(starts)


def test_blend_window_is_smooth_and_positive():
    w = blend_window(64, 96, 16)
    assert w.shape == (64, 96) and w.min() > 0 and w.max() == 1
    assert np.allclose(w, w[::-1, ::-1])
    assert np.abs(np.diff(w[32])).max() < 0.2


def test_bad_tile_is_refused():
    with pytest.raises(ValueError, match="multiple of 16"):
        layout(100, 100, 0)


def test_an_overlap_leaving_no_step_is_a_value_error():  # was a ZeroDivisionError (issue 26)
    from napari_poregrain.inference.tiling import layout

    with pytest.raises(ValueError, match="no step between tiles"):
        layout(100, 16, 16)
    assert layout(100, 16, 8)[1][0] == 0
