from dataclasses import replace

import numpy as np
import torch

from napari_poregrain.inference.flips import FlipAveraged
from napari_poregrain.inference.predict import predict
from napari_poregrain.synthetic import make_sample


def test_flip_averaged_probabilities_are_the_mean_over_the_mirrors(tiny_model):
    net = tiny_model.net.eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        got = torch.softmax(FlipAveraged(net)(x), dim=1)
        views = [net(x), net(x.flip(-1)).flip(-1), net(x.flip(-2)).flip(-2)]
        want = torch.stack([torch.softmax(v, dim=1) for v in views]).mean(0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, torch.softmax(views[0], dim=1), atol=1e-3)  # flips matter


def test_predict_takes_a_flip_averaged_model_and_keeps_the_shape(tiny_model):
    image, _ = make_sample((96, 128), seed=1)
    plain = predict(image, tiny_model, tile=64, precision="fp32").labels
    flipped = predict(image, replace(tiny_model, net=FlipAveraged(tiny_model.net)), tile=64,
                      precision="fp32").labels  # fmt: skip
    assert flipped.shape == plain.shape == image.shape
    assert 0 < np.mean(flipped != plain) < 0.5
