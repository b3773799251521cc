"""``predict`` uses a model's pixel head: in memory, streamed, in bands, through the file."""

from __future__ import annotations

import numpy as np

from napari_poregrain.adapt import apply as apply_mod
from napari_poregrain.adapt.features import FeatureSet, ImageFeatures
from napari_poregrain.adapt.filters import FilterBank
from napari_poregrain.adapt.head import fit_head
from napari_poregrain.classes import IGNORE
from napari_poregrain.inference.predict import predict
from napari_poregrain.model import load_checkpoint, save_checkpoint
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample

FS = FeatureSet(FilterBank(sigmas=(0.7, 1.6)))


class _Sink:
    def __init__(self, shape):
        self.out = np.full(shape, 99, np.uint8)

    def write(self, y0, x0, block):
        self.out[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = block


def test_predict_applies_the_stored_head(tiny_model, tmp_path, monkeypatch):
    image, truth = make_sample((120, 96), seed=21)
    sample = Sample(image, data_bar_row=100)
    f = ImageFeatures.compute(sample, tiny_model, features=FS, device="cpu")
    strokes = np.full(truth.shape, IGNORE, np.uint8)
    strokes[::5, ::5] = truth[::5, ::5]
    tiny_model.head = fit_head(f, strokes)  # labels of the whole image: bar rows cut
    model = load_checkpoint(save_checkpoint(tiny_model, tmp_path / "m.safetensors"))
    got = predict(sample, model, device="cpu", return_confidence=True)
    np.testing.assert_array_equal(got.labels[:100], tiny_model.head.predict(f))
    assert (got.labels[100:] == 0).all() and (got.confidence[100:] == 0).all()
    assert got.confidence[:100].min() >= 255 // 3
    sink = _Sink(truth.shape)
    assert predict(sample, model, device="cpu", out=sink).labels is None
    np.testing.assert_array_equal(sink.out[:100], got.labels[:100])
    monkeypatch.setattr(apply_mod, "BAND", 32)  # bands: the filters see across band edges
    banded = predict(sample, model, device="cpu").labels
    assert np.mean(banded == got.labels) > 0.99
    model.head = None  # without the head: the network's own classes
    plain = predict(sample, model, device="cpu").labels
    assert not np.array_equal(plain, got.labels)
