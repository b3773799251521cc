from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from napari_poregrain.inference.predict import predict
from napari_poregrain.inference.scales import ScaleAveraged
from napari_poregrain.synthetic import make_sample


def test_scale_averaged_probabilities_are_the_mean_over_the_zoomed_views(tiny_model):
    net = tiny_model.net.eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        got = torch.softmax(ScaleAveraged(net, (1.0, 0.5))(x), dim=1)
        half = F.interpolate(x, size=(32, 48), mode="bilinear", antialias=True)
        back = F.interpolate(torch.softmax(net(half), 1), size=(64, 96), mode="bilinear")
        want = (torch.softmax(net(x), 1) + back) / 2
        alone = torch.softmax(ScaleAveraged(net, (1.0,))(x), dim=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, torch.softmax(net(x), 1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, alone, atol=1e-3)  # the zoomed view matters


def test_zoomed_sides_are_multiples_of_16_and_outputs_keep_the_input_size(tiny_model):
    net = tiny_model.net.eval()
    x = torch.randn(1, 1, 80, 112)  # 0.5x: 40 x 56, rounded to 48 x 48 (DeepLabV3+ needs /16)
    with torch.no_grad():
        out = ScaleAveraged(net, (1.0, 0.5, 0.75))(x)
    assert out.shape == (1, 3, 80, 112)
    with pytest.raises(ValueError, match="positive"):
        ScaleAveraged(net, (1.0, 0.0))


def test_predict_takes_a_scale_averaged_model(tiny_model):
    image, _ = make_sample((96, 128), seed=1)
    plain = predict(image, tiny_model, tile=64, precision="fp32").labels
    model = replace(tiny_model, net=ScaleAveraged(tiny_model.net, (1.0, 0.5)))
    scaled = predict(image, model, tile=64, precision="fp32").labels
    assert scaled.shape == plain.shape == image.shape
    assert 0 < np.mean(scaled != plain) < 0.5
