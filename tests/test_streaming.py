"""``predict`` streamed: tiles read from a lazy TIFF, label blocks written as they come."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_poregrain.inference.predict import predict
from napari_poregrain.io.lazy import read_lazy
from napari_poregrain.io.writers import open_label_writer
from napari_poregrain.synthetic import make_sample

SIDES = (2048, 4096)  # 2k² ~24 s, 4k² (the size) 1.5-4 min on 2 shared CPU cores


@pytest.mark.slow
@pytest.mark.parametrize("side", SIDES)
def test_streamed_labels_equal_the_in_memory_argmax_on_a_large_image(tiny_model, tmp_path, side):
    image, _ = make_sample((side, side), seed=3)
    image[side - 100] = 0  # a data bar: its rows are not segmented
    image[side - 99 :] = 30
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(512, 512), compression="zlib")
    sample = read_lazy(tmp_path / "big.tif")
    assert sample.data_bar_row == side - 100
    settings = {"tile": 1024, "device": "cpu", "precision": "fp32"}
    expected = predict(image, tiny_model, content_rows=side - 100, **settings).labels
    out = tmp_path / "labels.tif"
    with open_label_writer(out, sample.shape, sample.pixel_size_nm) as writer:
        assert predict(sample, tiny_model, out=writer, **settings).labels is None
    np.testing.assert_array_equal(tifffile.imread(out), expected)


@pytest.mark.slow
def test_streamed_ome_zarr_holds_the_image_and_the_same_labels(tiny_model, tmp_path):
    image, _ = make_sample((600, 520), seed=4)
    tifffile.imwrite(tmp_path / "img.tif", image, rowsperstrip=32)
    sample = read_lazy(tmp_path / "img.tif")
    settings = {"tile": 256, "device": "cpu", "precision": "fp32"}
    expected = predict(image, tiny_model, **settings).labels
    out = tmp_path / "img.ome.zarr"
    with open_label_writer(out, sample.shape, sample.pixel_size_nm, sample.pixels) as writer:
        predict(sample, tiny_model, out=writer, **settings)
    np.testing.assert_array_equal(np.asarray(read_lazy(out).pixels), image)
    labels = zarr.open_array(out / "labels" / "classes" / "0", mode="r")[:]
    np.testing.assert_array_equal(labels, expected)


def test_streaming_refuses_stacks_and_confidence(tiny_model, tmp_path):
    stack = np.zeros((2, 64, 64), np.uint8)
    with open_label_writer(tmp_path / "s.tif", (64, 64)) as w:
        with pytest.raises(ValueError, match="stack"):
            predict(stack, tiny_model, out=w, tile=64)
        with pytest.raises(ValueError, match="return_confidence"):
            predict(stack[0], tiny_model, out=w, tile=64, return_confidence=True)
