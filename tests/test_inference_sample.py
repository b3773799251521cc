"""``predict`` on Samples: the data bar, colour, stacks, lazy pixels, and the caller's model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_poregrain.inference.predict import as_sample, predict
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample


class _Lazy:
    """A stand-in for a lazy (dask/zarr) array: slicing is free, reading is logged."""

    def __init__(self, array: np.ndarray, reads: list[tuple[int, ...]], root: bool = True):
        self.array, self.reads, self.root = array, reads, root
        self.shape, self.ndim, self.dtype = array.shape, array.ndim, array.dtype

    def __getitem__(self, key):
        return _Lazy(self.array[key], self.reads, root=False)

    def __array__(self, dtype=None, copy=None):
        self.reads.append(("whole image",) if self.root else self.array.shape)
        return self.array if dtype is None else self.array.astype(dtype)


def _layouts(net: torch.nn.Module) -> list[tuple]:
    return [(n, t.device, t.stride()) for n, t in (*net.named_parameters(), *net.named_buffers())]


def test_model_is_left_as_found(tiny_model):
    image, _ = make_sample((96, 112), seed=7)
    eval_copy = copy.deepcopy(tiny_model)
    expected = predict(image, eval_copy, tile=64, precision="fp32").labels
    net = tiny_model.net.train()
    net.encoder.layer1.eval()  # a frozen part stays frozen
    modes = [m.training for m in net.modules()]
    layouts = _layouts(net)
    stats = net.encoder.bn1.running_mean.clone()
    params = list(net.parameters())
    got = predict(image, tiny_model, tile=64, precision="fp32").labels
    np.testing.assert_array_equal(got, expected)
    assert [m.training for m in net.modules()] == modes and net.training
    assert _layouts(net) == layouts  # device and memory layout of every tensor
    assert list(net.parameters()) == params  # moved in place: an optimiser keeps its tensors
    assert torch.equal(net.encoder.bn1.running_mean, stats)
    assert all(p.is_contiguous() for p in net.parameters())


def test_channels_last_model_stays_channels_last(tiny_model):
    net = tiny_model.net.to(memory_format=torch.channels_last)
    layouts = _layouts(net)
    predict(np.zeros((32, 32), np.uint8), tiny_model, tile=32)
    assert _layouts(net) == layouts
    assert net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_model_on_the_cpu_stays_there_when_predicting_on_cuda(tiny_model):
    image, _ = make_sample((128, 128), seed=1)
    on_gpu = predict(image, tiny_model, tile=64, device="cuda", precision="fp32").labels
    assert all(p.device.type == "cpu" for p in tiny_model.net.parameters())
    on_cpu = predict(image, tiny_model, tile=64, device="cpu", precision="fp32").labels
    assert (on_gpu == on_cpu).mean() > 0.999


def test_sample_and_array_with_content_rows_agree(tiny_model):
    image, _ = make_sample((128, 96), seed=5)
    image[100:] = 243
    sample = Sample(image, data_bar_row=100, name="bar")
    from_sample = predict(sample, tiny_model, tile=64, return_confidence=True)
    from_array = predict(image, tiny_model, tile=64, content_rows=100, return_confidence=True)
    np.testing.assert_array_equal(from_sample.labels, from_array.labels)
    assert (from_sample.labels[100:] == 0).all() and (from_sample.confidence[100:] == 0).all()
    with pytest.raises(TypeError, match="content_rows"):
        predict(sample, tiny_model, content_rows=100)
    with pytest.raises(ValueError, match="content_rows=0"):
        predict(image, tiny_model, content_rows=0)


def test_stack_sample_with_a_bar_is_segmented_slice_by_slice(tiny_model):
    stack = np.stack([make_sample((80, 64), seed=s)[0] for s in range(2)])
    result = predict(Sample(stack, data_bar_row=70), tiny_model, tile=64)
    assert result.labels.shape == stack.shape and (result.labels[:, 70:] == 0).all()
    for z in range(2):
        np.testing.assert_array_equal(
            result.labels[z, :70], predict(stack[z, :70], tiny_model, tile=64).labels
        )


def test_colour_comes_from_the_sample_not_a_guess(tiny_model):
    grey, _ = make_sample((4, 64), seed=2)  # 4 rows: too few for is_rgb's guess
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    got = predict(Sample(rgb, rgb=True), tiny_model, tile=64).labels
    np.testing.assert_array_equal(got, predict(grey, tiny_model, tile=64).labels)


def test_tiles_are_read_by_slicing(tiny_model):
    image, _ = make_sample((160, 200), seed=3)
    reads: list[tuple[int, ...]] = []
    lazy = Sample(_Lazy(image, reads), data_bar_row=150)
    got = predict(lazy, tiny_model, tile=64, overlap=0.0)
    np.testing.assert_array_equal(
        got.labels, predict(image, tiny_model, tile=64, overlap=0.0, content_rows=150).labels
    )
    assert ("whole image",) not in reads
    assert reads[0] == (150, 200)  # the intensity range's strided subsample (stride 1 here)
    assert max(h * w for h, w in reads[1:]) <= 64 * 64 < 150 * 200  # then tile by tile


def test_as_sample_wraps_arrays_once():
    image = np.zeros((20, 30, 3), np.uint8)
    sample = as_sample(image, content_rows=10)
    assert sample.rgb and sample.shape == (20, 30) and sample.rows == 10
    assert as_sample(sample) is sample
    with pytest.raises(ValueError, match="2-D image"):
        as_sample(np.zeros(5))
