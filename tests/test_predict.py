import numpy as np
import pytest
import torch

from napari_poregrain.callbacks import Cancelled
from napari_poregrain.inference.predict import predict, resolve_device
from napari_poregrain.inference.tiling import blend_window, layout, overlap_pixels
from napari_poregrain.preprocess import Normalization, intensity_range, normalize, to_grey
from napari_poregrain.synthetic import make_sample


def _untiled(model, image):
    norm = model.meta.normalization
    x = normalize(to_grey(image), *intensity_range(image, norm), norm)
    with torch.inference_mode():
        return model.net(torch.from_numpy(x)[None, None]).argmax(1)[0].numpy().astype(np.uint8)


def _blended_whole_image(model, image, tile, overlap):
    """Reference: every tile's probabilities blended into whole-image float buffers."""
    norm = model.meta.normalization
    x = normalize(to_grey(image), *intensity_range(image, norm), norm)
    ov = overlap_pixels(tile, overlap)
    (th, ys), (tw, xs) = layout(image.shape[0], tile, ov), layout(image.shape[1], tile, ov)
    h, w = max(image.shape[0], th), max(image.shape[1], tw)
    x = np.pad(x, ((0, h - x.shape[0]), (0, w - x.shape[1])), mode="reflect")
    acc, wsum = np.zeros((3, h, w)), np.zeros((h, w))
    window = blend_window(th, tw, ov)
    for y0 in ys:
        for x0 in xs:
            t = torch.from_numpy(np.ascontiguousarray(x[y0 : y0 + th, x0 : x0 + tw]))
            with torch.inference_mode():
                p = torch.softmax(model.net(t[None, None]), 1)[0].numpy()
            acc[:, y0 : y0 + th, x0 : x0 + tw] += p * window
            wsum[y0 : y0 + th, x0 : x0 + tw] += window
    acc = acc[:, : image.shape[0], : image.shape[1]]
    return acc.argmax(0), acc.max(0) / wsum[: image.shape[0], : image.shape[1]]


@pytest.mark.parametrize(
    "shape,tile,overlap",
    [((300, 460), 64, 0.25), ((200, 200), 64, 0.6), ((130, 250), 96, 0.0), ((40, 300), 64, 0.1)],
)
def test_streamed_blending_equals_whole_image_blending(tiny_model, shape, tile, overlap):
    image, _ = make_sample(shape, seed=5)
    got = predict(
        image,
        tiny_model,
        tile=tile,
        overlap=overlap,
        batch_size=3,
        precision="fp32",
        return_confidence=True,
    )
    labels, top = _blended_whole_image(tiny_model, image, tile, overlap)
    assert (got.labels == labels).mean() > 0.999  # float sums in another order: rare ties
    assert np.abs(got.confidence.astype(int) - np.round(top * 255)).max() <= 1


def _seam_ratio(conf: np.ndarray, edges: list[int]) -> float:
    """Largest mean jump across the given tile-edge columns, relative to the median jump."""
    jumps = np.abs(np.diff(conf.astype(float), axis=1)).mean(axis=0)
    return float(jumps[[e - 1 for e in edges]].max() / np.median(jumps))


def test_single_tile_equals_untiled_forward(tiny_model):
    image, _ = make_sample((256, 256), seed=1)
    tiled = predict(image, tiny_model, tile=256, device="cpu", precision="fp32").labels
    np.testing.assert_array_equal(tiled, _untiled(tiny_model, image))


def test_reduced_precision_agrees_with_fp32(tiny_model):
    image, _ = make_sample((128, 128), seed=1)
    exact = predict(image, tiny_model, tile=128, precision="fp32").labels
    fast = predict(image, tiny_model, tile=128, precision="bf16").labels
    assert (fast == exact).mean() > 0.98
    with pytest.raises(ValueError, match="precision"):
        predict(image, tiny_model, precision="int4")


def test_blending_leaves_no_seams(tiny_model):
    image, _ = make_sample((256, 256), seed=3)
    blended = predict(image, tiny_model, tile=128, overlap=0.25, return_confidence=True)
    hard = predict(image, tiny_model, tile=128, overlap=0.0, return_confidence=True)
    # 144-px tiles start at x = 0, 112 (blended: edges 112, 144) and 0, 128 (hard: edge 128)
    assert layout(256, 128, 32) == (144, [0, 112]) and layout(256, 128, 0) == (128, [0, 128])
    assert _seam_ratio(hard.confidence, [128]) > 5  # the check sees a seam where there is one
    assert _seam_ratio(blended.confidence, [112, 144]) < 2
    # most pixels agree with one untiled forward of the whole image
    assert (blended.labels == _untiled(tiny_model, image)).mean() > 0.85


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (100, 130), (257, 63), (300, 700), (17, 1000)])
def test_any_size_gives_a_map_of_the_same_size(tiny_model, shape):
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    result = predict(image, tiny_model, tile=128, overlap=0.25, return_confidence=True)
    assert result.labels.shape == shape and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert result.confidence.shape == shape and result.confidence.min() >= 85  # >= 1/3


def test_rgb_16bit_and_float_match_the_grey_uint8_image(tiny_model):
    grey, _ = make_sample((96, 128), seed=2)
    expected = predict(grey, tiny_model, tile=128).labels
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgba = np.concatenate([rgb, np.full_like(grey, 255)[..., None]], axis=-1)
    for variant in (rgb, rgba, grey.astype(np.uint16) * 257, grey.astype(np.float64) / 255):
        got = predict(variant, tiny_model, tile=128).labels
        assert got.shape == grey.shape
        assert (got == expected).mean() > 0.99


def test_nan_and_inf_are_handled(tiny_model):
    image = make_sample((64, 64), seed=4)[0].astype(np.float32)
    image[10:20, 10:20] = np.nan
    image[30, :] = np.inf
    image[40, :] = -np.inf
    assert predict(image, tiny_model, tile=64).labels.shape == (64, 64)


def test_stack_is_segmented_slice_by_slice(tiny_model):
    stack = np.stack([make_sample((64, 80), seed=s)[0] for s in range(3)])
    result = predict(stack, tiny_model, tile=64)
    assert result.labels.shape == stack.shape
    for i in range(3):
        np.testing.assert_array_equal(
            result.labels[i], predict(stack[i], tiny_model, tile=64).labels
        )


def test_data_bar_rows_are_left_out(tiny_model):
    image, _ = make_sample((128, 128), seed=5)
    image[100:] = 243
    result = predict(image, tiny_model, tile=128, content_rows=100)
    assert (result.labels[100:] == 0).all()
    np.testing.assert_array_equal(
        result.labels[:100], predict(image[:100], tiny_model, tile=128).labels
    )


def test_progress_and_cancel(tiny_model):
    image, _ = make_sample((200, 200), seed=6)
    seen = []
    predict(image, tiny_model, tile=64, overlap=0.0, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == 16  # 4 x 4 tiles of 64 px
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    calls = []
    with pytest.raises(Cancelled):
        predict(image, tiny_model, tile=64, should_stop=lambda: calls.append(1) or len(calls) > 2)


def test_bad_input_is_refused_clearly(tiny_model):
    with pytest.raises(ValueError, match="tile size"):
        predict(np.zeros((32, 32)), tiny_model, tile=100)
    with pytest.raises(ValueError, match="overlap"):
        predict(np.zeros((32, 32)), tiny_model, overlap=1.0)
    with pytest.raises(ValueError, match="2-D image"):
        predict(np.zeros((2, 2, 8, 8)), tiny_model)
    with pytest.raises(ValueError, match="no pixels"):
        predict(np.zeros((0, 8)), tiny_model)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_normalisation_is_robust_to_outliers():
    norm = Normalization()
    image = np.full((100, 100), 100.0)
    image[:50] = 200.0
    image[0, 0] = 1e9  # a single hot pixel does not squash the contrast
    low, high = intensity_range(image, norm)
    assert (low, high) == (100.0, 200.0)
    x = normalize(image, low, high, norm)
    assert np.isfinite(x).all() and x.max() == pytest.approx((1.5 - 0.5) / 0.25)
