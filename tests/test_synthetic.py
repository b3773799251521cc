import numpy as np

from napari_poregrain._sample_data import shale_sample, shale_sample_with_truth
from napari_poregrain.synthetic import SHIFTED, Style, make_sample


def test_deterministic_by_seed_and_seed_matters():
    a, la = make_sample((128, 160), seed=7)
    b, lb = make_sample((128, 160), seed=7)
    c, _ = make_sample((128, 160), seed=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_classes_look_like_shale():
    image, labels = make_sample((512, 512), seed=0)
    assert image.dtype == np.uint8 and labels.dtype == np.uint8 and image.shape == labels.shape
    fractions = np.bincount(labels.ravel(), minlength=3) / labels.size
    assert 0.5 < fractions[0] < 0.8 and 0.2 < fractions[1] < 0.45 and 0.005 < fractions[2] < 0.1
    means = [image[labels == c].mean() for c in range(3)]
    assert means[2] < means[0] < means[1]  # pores dark, grains bright
    assert image.std() > 10  # textured, noisy


def test_shifted_style_changes_the_look_not_the_labels_encoding():
    image, labels = make_sample((256, 256), seed=1, style=SHIFTED)
    normal, _ = make_sample((256, 256), seed=1)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert abs(float(image[labels == 2].mean()) - float(normal[labels == 2].mean())) > 10


def test_sample_data_contributions():
    [(image, kwargs, kind)] = shale_sample()
    assert kind == "image" and image.shape == (1024, 1024)
    assert kwargs["scale"] == (0.01, 0.01) and kwargs["metadata"]["pixel_size_nm"] == 10.0
    assert kwargs["units"] == ("micrometer", "micrometer")  # physical units, not bare numbers
    layers = shale_sample_with_truth()
    assert all(k["units"] == ("micrometer", "micrometer") for _, k, _ in layers)
    assert [k for _, _, k in layers] == ["image", "labels", "labels"]
    grains, pores = layers[1][0], layers[2][0]
    _, truth = make_sample((1024, 1024), seed=0)
    np.testing.assert_array_equal(grains.astype(bool), truth == 1)
    np.testing.assert_array_equal(pores.astype(bool), truth == 2)


def test_organic_matter_is_matrix_darker_than_matrix_with_its_own_pores():
    style = Style(organic_fraction=0.25, organic=0.25, pore=0.05)
    image, labels = make_sample((384, 384), seed=2, style=style)
    plain_image, plain_labels = make_sample((384, 384), seed=2)
    # The grains are the same draw; organic matter only adds (never moves) what came before.
    np.testing.assert_array_equal(labels == 1, plain_labels == 1)
    dark_matrix = (labels == 0) & (image < 0.35 * 255)
    assert 0.1 < dark_matrix.mean() < 0.35  # organic matter: labelled matrix, darker
    means = [image[labels == c].mean() for c in range(3)]
    assert means[2] < image[dark_matrix].mean() < means[0] < means[1]
    assert (labels == 2).sum() > (plain_labels == 2).sum()  # pores in the organic matter


def test_a_style_without_organic_matter_is_unchanged_by_the_feature():
    a, la = make_sample((128, 128), seed=4, style=Style(organic_fraction=0.0, organic=0.3))
    b, lb = make_sample((128, 128), seed=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
