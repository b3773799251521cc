"""The adaptation feature stack: filters tile by tile equal the whole image, windows, probs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_poregrain.adapt import features as features_mod
from napari_poregrain.adapt.features import FeatureSet, ImageFeatures
from napari_poregrain.adapt.filters import FilterBank
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample

SMALL = FilterBank(sigmas=(0.7, 1.6, 3.5))


def test_tiles_with_halo_equal_one_tile(monkeypatch):
    image, _ = make_sample((150, 170), seed=3)
    sample = Sample(image, data_bar_row=140)
    fs = FeatureSet(SMALL, network=False)
    whole = ImageFeatures.compute(sample, None, features=fs, device="cpu")
    monkeypatch.setattr(features_mod, "FEATURE_TILE", 48)
    tiled = ImageFeatures.compute(sample, None, features=fs, device="cpu")
    assert whole.array.shape == (len(fs.names), 140, 170) and whole.array.dtype == np.float16
    # equal up to float16 rounding of float32 sums taken in another order
    np.testing.assert_allclose(tiled.array, whole.array, rtol=2e-3, atol=2e-3)


def test_filters_respond_as_their_names_say():
    x = torch.zeros(64, 64)
    x[:, 32:] = 1.0  # a vertical edge
    bank = FilterBank(sigmas=(2.0,), raw=False)
    resp = dict(zip(bank.names, bank.apply(x), strict=True))
    grad = resp["gradmag@2"]
    assert grad[32, 31:33].min() > 5 * grad[32, 10]  # strongest at the edge
    assert torch.allclose(resp["gauss@2"][32, 16], torch.tensor(0.0), atol=1e-4)
    assert torch.allclose(resp["gauss@2"][32, 48], torch.tensor(1.0), atol=1e-4)
    st1, st2 = resp["st1@2"], resp["st2@2"]
    assert (st1 >= st2 - 1e-6).all() and st1[32, 31] > 10 * st2[32, 31].abs()  # one direction


def test_network_probabilities_and_window(tiny_model):
    image, _ = make_sample((96, 80), seed=4)
    f = ImageFeatures.compute(Sample(image), tiny_model, features=FeatureSet(SMALL), device="cpu")
    probs = f.array[-3:].astype(np.float32)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=5e-3)
    assert f.network is not None and f.window((10, 20, 30, 60)).shape == (
        len(f.features.names),
        20,
        40,
    )
    assert np.shares_memory(f.window((0, 0, 5, 5)), f.array)
    with pytest.raises(ValueError, match="outside"):
        f.window((0, 0, 97, 10))


def test_a_band_of_rows_is_the_same_band_of_the_whole(tiny_model):
    image, _ = make_sample((200, 64), seed=6)
    fs = FeatureSet(SMALL)
    whole = ImageFeatures.compute(Sample(image), tiny_model, features=fs, device="cpu")
    band = ImageFeatures.compute(
        Sample(image), tiny_model, features=fs, device="cpu", rows=(60, 130)
    )
    n = len(SMALL.names)
    np.testing.assert_allclose(band.array[:n], whole.array[:n, 60:130], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(band.array[n:], whole.array[n:, 60:130], atol=2e-2)


def test_bad_requests_are_one_sentence():
    with pytest.raises(ValueError, match="unknown filter"):
        FilterBank(filters=("gauss", "sobel"))
    with pytest.raises(ValueError, match="give a model"):
        ImageFeatures.compute(Sample(np.zeros((32, 32), np.uint8)), None, features=FeatureSet())


def test_network_probabilities_do_not_depend_on_the_thread_count(tiny_model):
    """The network's probabilities come from predict's exact backend (not bf16 kernels that vary
    with threads); the filters agree to float16 rounding."""
    sample = Sample(make_sample((96, 80), seed=4)[0])
    before = torch.get_num_threads()
    try:
        stacks = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            stacks.append(ImageFeatures.compute(sample, tiny_model, device="cpu").array)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(stacks[0][-3:], stacks[1][-3:])  # the probabilities: exact
    # the filter responses (torch fp32 convolutions) agree to float16 rounding
    np.testing.assert_allclose(stacks[0][:-3], stacks[1][:-3], rtol=2e-3, atol=1e-4)
