"""The committed real crops (tests/data) and how the tests find and mark real data."""

from __future__ import annotations

import hashlib
import importlib.util

import conftest
import numpy as np
import pytest
import tifffile
from conftest import CROPS, is_crop, shared_data

from napari_poregrain.io.images import read_labels, read_sample

ZEISS = {"train_1": 13.96, "train_2": 11.16, "train_3": 11.16, "train_4": 7.443}


def test_crops_are_small_and_licensed():
    files = [p for p in CROPS.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 300_000
    for subset in ("zeiss-shale-pores", "duvernay-grains"):
        assert (CROPS / subset / "LICENSE").is_file()
        images = sorted(p.stem for p in (CROPS / subset / "images").glob("*.tif"))
        assert images and images == sorted(p.stem for p in (CROPS / subset / "labels").iterdir())


@pytest.mark.parametrize("stem", sorted(ZEISS))
def test_zeiss_crops_stay_real_zeiss_tiffs(stem):
    path = CROPS / "zeiss-shale-pores" / "images" / f"{stem}.tif"
    with tifffile.TiffFile(path) as tf:
        assert tf.is_sem and int(tf.pages.first.photometric) == 3  # palette, as written
        assert tf.sem_metadata["ap_pixel_size"] == ("Pixel Size", ZEISS[stem], "nm")
    sample = read_sample(path)
    assert sample.height == 768 and sample.data_bar_row == 691
    assert sample.pixel_size_nm == pytest.approx(ZEISS[stem])
    labels = read_labels(CROPS / "zeiss-shale-pores" / "labels" / f"{stem}.png")
    assert labels.shape == sample.shape and (labels[691:] == 255).all()
    assert np.count_nonzero(labels == 2) > 100


def test_crops_regenerate_byte_for_byte(tmp_path):
    full = conftest.SHARED_DATA
    if not (full / "zeiss-shale-pores").is_dir() or not (full / "duvernay-grains").is_dir():
        pytest.skip(f"the full data set is not at {full}")
    spec = importlib.util.spec_from_file_location("make_crops", CROPS / "make_crops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--source", str(full), "--out", str(tmp_path)]) == 0
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert made and all((CROPS / rel).is_file() for rel in made)
    for rel in made:
        digest = hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()
        assert digest == hashlib.sha256((CROPS / rel).read_bytes()).hexdigest(), rel


def test_shared_data_falls_back_to_the_crops(monkeypatch, tmp_path, request):
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "missing")
    path = shared_data("duvernay-grains")
    assert path == CROPS / "duvernay-grains" and is_crop(path)
    assert request.node.get_closest_marker("real_data")  # marked: it calls shared_data
    (tmp_path / "missing" / "duvernay-grains").mkdir(parents=True)
    assert shared_data("duvernay-grains") == tmp_path / "missing" / "duvernay-grains"
    assert not is_crop(shared_data("duvernay-grains"))
    with pytest.raises(pytest.skip.Exception, match="neither"):
        shared_data("no-such-subset")


def test_markers_set_at_collection(request, real_data):
    assert real_data is shared_data
    assert request.node.get_closest_marker("real_data")
    assert not request.node.get_closest_marker("gui")
    assert not request.node.get_closest_marker("slow")
