"""The npe2 reader: SEM TIFFs become image layers with µm scale and data-bar metadata."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from conftest import is_crop, shared_data
from napari.layers import Image, Layer

from napari_poregrain._reader import napari_get_reader
from napari_poregrain.io.images import ImageReadError
from napari_poregrain.synthetic import make_sample


def _fei_tiff(path, pixel_m=5e-9, rows=100, shape=(120, 160)):
    data = np.zeros(shape, np.uint8)
    data[:rows] = make_sample((rows, shape[1]), seed=0)[0]
    ini = f"[Scan]\r\nPixelWidth={pixel_m}\r\n[Image]\r\nResolutionY={rows}\r\n"
    tifffile.imwrite(path, data, extratags=[(34682, "s", 0, ini, True)])
    return data


def _read(path):
    reader = napari_get_reader(str(path))
    assert callable(reader)
    return reader(str(path))


def test_reader_only_claims_tiffs(tmp_path):
    assert napari_get_reader("image.png") is None
    assert napari_get_reader("image.jpg") is None
    assert napari_get_reader("folder") is None
    assert napari_get_reader(["a.tif", "b.png"]) is None
    assert napari_get_reader([]) is None
    assert callable(napari_get_reader("a.tif"))
    assert callable(napari_get_reader(tmp_path / "A.TIFF"))
    assert callable(napari_get_reader(["a.tif", "b.tiff"]))


@pytest.mark.parametrize("stem", ["train_1", "train_2", "train_3", "train_4"])
def test_zeiss_layer_has_micrometre_scale_and_bar(stem):
    path = shared_data("zeiss-shale-pores") / "images" / f"{stem}.tif"
    [(data, kwargs, kind)] = _read(path)
    assert kind == "image" and data.dtype == np.uint8
    assert data.shape == (768, 1024) or (is_crop(path) and data.shape[0] == 768), data.shape
    assert kwargs["name"] == stem
    assert kwargs["metadata"]["data_bar_row"] == 691
    assert kwargs["metadata"]["source_path"] == str(path)
    px_nm = kwargs["metadata"]["pixel_size_nm"]
    assert kwargs["scale"] == pytest.approx([px_nm / 1000] * 2)
    if stem == "train_1":
        assert kwargs["scale"] == pytest.approx([0.01396, 0.01396])
    layer = Layer.create(data, kwargs, kind)  # napari accepts the kwargs as they are
    assert isinstance(layer, Image) and not layer.rgb
    assert layer.scale == pytest.approx([px_nm / 1000] * 2)
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["data_bar_row"] == 691


def test_duvernay_tile_has_unit_scale_and_no_bar():
    path = sorted((shared_data("duvernay-grains") / "images").glob("*.tif"))[0]
    [(data, kwargs, _)] = _read(path)
    assert data.shape == (256, 256)
    assert kwargs["scale"] == [1.0, 1.0]
    assert kwargs["metadata"] == {
        "pixel_size_nm": None,
        "data_bar_row": None,
        "source_path": str(path),
    }
    assert "units" not in kwargs


def test_fei_metadata_scale_and_bar(tmp_path):
    path = tmp_path / "helios.tif"
    data = _fei_tiff(path, pixel_m=5e-9, rows=100)
    [(layer_data, kwargs, _)] = _read(path)
    np.testing.assert_array_equal(layer_data, data)  # the bar stays in the layer
    assert kwargs["scale"] == pytest.approx([0.005, 0.005])
    assert kwargs["metadata"]["pixel_size_nm"] == pytest.approx(5.0)
    assert kwargs["metadata"]["data_bar_row"] == 100


def test_stack_rgb_and_several_paths(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (4, 32, 48), dtype=np.uint8)
    rgb = np.random.default_rng(1).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    tifffile.imwrite(tmp_path / "colour.tif", rgb, photometric="rgb")
    _fei_tiff(tmp_path / "fei.tif", pixel_m=2e-9)
    paths = [str(tmp_path / n) for n in ("stack.tif", "colour.tif", "fei.tif")]
    layers = napari_get_reader(paths)(paths)
    assert [k["name"] for _, k, _ in layers] == ["stack", "colour", "fei"]
    (s_data, s_kw, _), (c_data, c_kw, _), (_, f_kw, _) = layers
    assert s_data.shape == (4, 32, 48) and s_kw["scale"] == [1.0, 1.0, 1.0]
    assert c_kw["rgb"] and c_kw["scale"] == [1.0, 1.0]
    assert f_kw["scale"] == pytest.approx([0.002, 0.002])
    for data, kwargs, kind in layers:
        Layer.create(data, kwargs, kind)
    # a pixel-size stack gets a leading 1.0
    fei_stack = tmp_path / "fei_stack.tif"
    ini = "[Scan]\r\nPixelWidth=1e-08\r\n"
    tifffile.imwrite(fei_stack, stack, extratags=[(34682, "s", 0, ini, True)])
    [(_, kwargs, _)] = _read(fei_stack)
    assert kwargs["scale"] == pytest.approx([1.0, 0.01, 0.01])
    assert kwargs["units"] == ["pixel", "micrometer", "micrometer"]


def test_bad_tiff_raises_a_named_error(tmp_path):
    path = tmp_path / "corrupt.tif"
    path.write_bytes(b"II*\x00garbage" * 20)
    with pytest.raises(ImageReadError, match="corrupt.tif"):
        _read(path)
    with pytest.raises(ImageReadError, match="missing.tif"):
        _read(tmp_path / "missing.tif")


def test_npe2_manifest_routes_tiffs_to_the_reader(tmp_path):
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    try:
        pm.get_manifest("napari-poregrain")
    except KeyError:
        pytest.skip("napari-poregrain manifest not registered (package not installed)")
    path = tmp_path / "fei.tif"
    _fei_tiff(path, pixel_m=5e-9, rows=100)
    [(_, kwargs, kind)] = npe2.read([str(path)], stack=False, plugin_name="napari-poregrain")
    assert kind == "image" and kwargs["metadata"]["data_bar_row"] == 100


def test_viewer_open_uses_the_reader(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = tmp_path / "fei.tif"
    data = _fei_tiff(path, pixel_m=5e-9, rows=100)
    [layer] = viewer.open(str(path), plugin="napari-poregrain")
    np.testing.assert_array_equal(layer.data, data)
    assert layer.name == "fei"
    assert layer.scale == pytest.approx([0.005, 0.005])
    assert layer.metadata["data_bar_row"] == 100
