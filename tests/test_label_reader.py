"""Label files reopen as grains/pores Labels layers aligned with their image (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from conftest import shared_data
from napari.layers import Labels

from napari_poregrain._reader import image_for, is_label_file, napari_get_reader
from napari_poregrain.classes import LAYER_COLOURS
from napari_poregrain.io import ImageReadError, read_labels, write_labels

CLASS_MAP = np.array([[0, 1, 1, 2], [2, 0, 255, 1], [1, 2, 0, 0]], np.uint8)


def _fei_tiff(path, shape, pixel_m=5e-9):
    ini = f"[Scan]\r\nPixelWidth={pixel_m}\r\n"
    data = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    tifffile.imwrite(path, data, extratags=[(34682, "s", 0, ini, True)])


def _open(viewer, path):
    return viewer.open(str(path), plugin="napari-poregrain")


def _check_pair(layers, class_map, scale_um):
    grains, pores = layers
    assert [ly.name for ly in layers] == ["grains", "pores"]
    for layer, cls in ((grains, 1), (pores, 2)):
        assert isinstance(layer, Labels)
        expected = np.where(class_map == 255, 255, class_map == cls).astype(np.uint8)
        np.testing.assert_array_equal(layer.data, expected)  # unlabelled stays 255 in both
        assert tuple(layer.scale) == pytest.approx((scale_um, scale_um))
        colour = layer.colormap.map(np.array([1]))[0]
        np.testing.assert_allclose(colour[:3], _rgb(LAYER_COLOURS[cls]), atol=1e-6)


def _rgb(name):
    from matplotlib.colors import to_rgb

    return to_rgb(name)


def test_labels_folder_beside_the_image_opens_at_its_pixel_size(make_napari_viewer, tmp_path):
    # as `poregrain predict sem.tif --out labels` writes it
    _fei_tiff(tmp_path / "sem.tif", CLASS_MAP.shape, pixel_m=5e-9)
    write_labels(tmp_path / "labels" / "sem.png", CLASS_MAP)
    viewer = make_napari_viewer()
    image = _open(viewer, tmp_path / "sem.tif")[0]
    layers = _open(viewer, tmp_path / "labels" / "sem.png")
    _check_pair(layers, CLASS_MAP, 0.005)
    assert [str(u) for u in layers[0].units] == ["micrometer", "micrometer"]
    assert tuple(layers[0].scale) == tuple(image.scale)  # aligned with the image
    assert layers[1].metadata["image_path"] == str(tmp_path / "sem.tif")


def test_stem_ending_in_labels_uses_the_image_beside_it(make_napari_viewer, tmp_path):
    _fei_tiff(tmp_path / "core 7.tif", CLASS_MAP.shape, pixel_m=2e-8)
    tifffile.imwrite(tmp_path / "core 7_labels.tif", CLASS_MAP)
    viewer = make_napari_viewer()
    _check_pair(_open(viewer, tmp_path / "core 7_labels.tif"), CLASS_MAP, 0.02)


def test_real_labels_folder_next_to_images_folder():
    folder = shared_data("zeiss-shale-pores")
    label_path = folder / "labels" / "train_1.png"
    assert image_for(label_path) == folder / "images" / "train_1.tif"
    grains, pores = napari_get_reader(str(label_path))(str(label_path))
    truth = read_labels(label_path)
    np.testing.assert_array_equal(pores[0], np.where(truth == 255, 255, truth == 2))
    assert grains[1]["metadata"]["image"] == "train_1"
    assert grains[1]["scale"] == pytest.approx([0.01396, 0.01396])
    assert grains[1]["units"] == ["micrometer", "micrometer"] and grains[2] == "labels"


def test_label_file_without_an_image_opens_unscaled(tmp_path):
    write_labels(tmp_path / "alone_labels.png", CLASS_MAP)
    [(_, g_kw, _), (p_data, p_kw, _)] = napari_get_reader(str(tmp_path / "alone_labels.png"))(
        str(tmp_path / "alone_labels.png")
    )
    assert g_kw["scale"] == [1.0, 1.0] and "units" not in g_kw
    assert p_kw["metadata"]["image_path"] is None
    np.testing.assert_array_equal(p_data, np.where(CLASS_MAP == 255, 255, CLASS_MAP == 2))


def test_only_label_files_go_to_the_label_reader(tmp_path):
    assert is_label_file("a/labels/x.png") and is_label_file("x_labels.tif")
    assert not is_label_file("a/images/x.png") and not is_label_file("x_labels.jpg")
    assert napari_get_reader("plain.png") is None
    assert napari_get_reader(["a_labels.png", "b.png"]) is None
    assert napari_get_reader("labels/x.png") is not napari_get_reader("x.tif")


def test_bad_label_files_say_why_in_one_sentence(tmp_path):
    tifffile.imwrite(tmp_path / "odd_labels.tif", np.array([[0, 7], [3, 1]], np.uint8))
    with pytest.raises(ImageReadError, match=r"odd_labels.tif.*not 3, 7\."):
        napari_get_reader(str(tmp_path / "odd_labels.tif"))(str(tmp_path / "odd_labels.tif"))
    _fei_tiff(tmp_path / "big.tif", (5, 6))
    write_labels(tmp_path / "big_labels.png", CLASS_MAP)
    with pytest.raises(ImageReadError, match=r"4x3 pixels but the image big.tif is 6x5"):
        napari_get_reader(str(tmp_path / "big_labels.png"))(str(tmp_path / "big_labels.png"))


def test_unlabelled_pixels_are_neither_trained_nor_scored(make_napari_viewer, tmp_path):
    from napari_poregrain._widgets._layers import labels_from_layers

    _fei_tiff(tmp_path / "sem.tif", CLASS_MAP.shape, pixel_m=5e-9)
    write_labels(tmp_path / "labels" / "sem.png", CLASS_MAP)
    viewer = make_napari_viewer()
    _open(viewer, tmp_path / "sem.tif")
    grains, pores = _open(viewer, tmp_path / "labels" / "sem.png")
    assert grains.metadata["image"] == "sem", grains.metadata
    np.testing.assert_array_equal(labels_from_layers(grains.data, pores.data), CLASS_MAP)
    grains.brush_size = 1
    grains.paint((1, 2), 1, refresh=False)  # painting an unlabelled pixel labels it
    assert labels_from_layers(grains.data, pores.data)[1, 2] == 1


def test_any_class_map_opens_over_the_open_image_at_its_scale(make_napari_viewer, tmp_path):
    write_labels(tmp_path / "anywhere.png", CLASS_MAP)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros(CLASS_MAP.shape, np.uint8), name="sem", scale=(0.02, 0.02))
    grains, pores = _open(viewer, tmp_path / "anywhere.png")
    assert grains.metadata["image"] == "sem" and tuple(pores.scale) == (0.02, 0.02)
    viewer.layers.clear()
    viewer.add_image(np.zeros((5, 5), np.uint8), name="other")
    with pytest.raises(Exception, match="open images are other 5x5"):
        _open(viewer, tmp_path / "anywhere.png")
