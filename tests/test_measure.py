"""Measurements of drawn objects of known size, in pixels and in physical units."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import shared_data
from skimage.draw import disk

from napari_poregrain.analysis.export import (
    export_measurement,
    export_paths,
    first_existing,
    free_base,
    objects_csv,
)
from napari_poregrain.analysis.measure import (
    analysed_region,
    class_map_sample,
    low_confidence_fraction,
    measure,
)
from napari_poregrain.analysis.summary import (
    flat_summary,
    size_colours,
    size_histogram,
    summary_rows,
    weighted_percentile,
)
from napari_poregrain.callbacks import Cancelled
from napari_poregrain.classes import GRAIN, IGNORE, PORE

sample = class_map_sample  # a class map (with pixel size, bar, region, name) as a Sample

R = 12  # disc radius in pixels
RECT = (slice(10, 30), slice(100, 160))  # 20 rows x 60 columns


def scene() -> np.ndarray:
    """A pore disc, a grain rectangle and a pore touching the rectangle, on matrix."""
    cm = np.zeros((128, 200), np.uint8)
    rr, cc = disk((64, 40), R)
    cm[rr, cc] = PORE
    cm[RECT] = GRAIN
    cm[30:34, 120:126] = PORE  # 4 x 6 pore right below the grain
    return cm


def by_label_area(table):
    return dict(zip(table["area"].tolist(), range(len(table["area"])), strict=True))


def test_disc_and_rectangle_in_pixels():
    cm = scene()
    m = measure(sample(cm))
    assert m.unit == "px" and m.summary["unit_note"].startswith("no pixel size known")
    pores, grains = m.objects["pores"], m.objects["grains"]
    disc_area = int(np.count_nonzero(cm == PORE)) - 24
    assert sorted(pores["area"].tolist()) == [24, disc_area]
    i = by_label_area(pores)[disc_area]
    assert pores["equivalent_diameter"][i] == pytest.approx(2 * math.sqrt(disc_area / math.pi))
    assert pores["equivalent_diameter"][i] == pytest.approx(2 * R, rel=0.05)
    assert pores["perimeter"][i] == pytest.approx(2 * math.pi * R, rel=0.05)
    assert pores["aspect_ratio"][i] == pytest.approx(1.0, abs=0.02)
    assert not pores["touches_grain"][i]
    assert pores["touches_grain"][by_label_area(pores)[24]]

    assert grains["area"].tolist() == [1200]
    # second-moment ellipse of an L-pixel side: 4 * sqrt((L^2 - 1) / 12)
    assert grains["major_axis"][0] == pytest.approx(4 * math.sqrt((60**2 - 1) / 12))
    assert grains["minor_axis"][0] == pytest.approx(4 * math.sqrt((20**2 - 1) / 12))
    assert grains["aspect_ratio"][0] == pytest.approx(math.sqrt(399 / 3599))
    assert grains["orientation_deg"][0] == pytest.approx(0.0)  # long side horizontal
    assert grains["centroid_row_px"][0] == pytest.approx(19.5)
    assert grains["centroid_col_px"][0] == pytest.approx(129.5)

    n = cm.size
    assert m.summary["pore_fraction"] == pytest.approx((disc_area + 24) / n)
    assert m.summary["grain_fraction"] == pytest.approx(1200 / n)
    assert m.summary["pores"]["count"] == 2 and m.summary["pores"]["touching_grain"] == 1
    assert m.summary["grains"]["d50_px"] == pytest.approx(2 * math.sqrt(1200 / math.pi))


def test_physical_units_scale_lengths_and_areas():
    cm = scene()
    px = measure(sample(cm))
    nm = measure(sample(cm, 13.96))
    um = measure(sample(cm, 250.0))
    assert (nm.unit, um.unit) == ("nm", "µm")
    for name in ("pores", "grains"):
        a, b, c = px.objects[name], nm.objects[name], um.objects[name]
        np.testing.assert_allclose(b["area"], a["area"] * 13.96**2)
        np.testing.assert_allclose(b["equivalent_diameter"], a["equivalent_diameter"] * 13.96)
        np.testing.assert_allclose(c["major_axis"], a["major_axis"] * 0.25)
        np.testing.assert_allclose(c["area"], a["area"] * 0.25**2)
        np.testing.assert_allclose(b["aspect_ratio"], a["aspect_ratio"])
    assert nm.summary["pore_fraction"] == px.summary["pore_fraction"]
    assert um.summary["grains"]["d50_um"] == pytest.approx(px.summary["grains"]["d50_px"] * 0.25)
    assert nm.summary["analysed_area_nm2"] == pytest.approx(cm.size * 13.96**2)
    forced = measure(sample(cm, 250.0), unit="nm")
    assert forced.unit == "nm" and forced.objects["grains"]["area"][0] == pytest.approx(
        1200 * 250**2
    )


def elongated(kind: str) -> np.ndarray:
    """A 2-pixel-wide bar: vertical, or diagonal rising or falling to the right as displayed."""
    cm = np.zeros((50, 50), np.uint8)
    if kind == "vertical":
        cm[5:45, 20:24] = GRAIN
    for i in range(30):
        if kind == "up-right":
            cm[40 - i : 42 - i, 5 + i : 7 + i] = GRAIN
        elif kind == "down-right":
            cm[10 + i : 12 + i, 5 + i : 7 + i] = GRAIN
    return cm


@pytest.mark.parametrize(
    ("kind", "expected"), [("vertical", 90.0), ("up-right", 45.0), ("down-right", -45.0)]
)
def test_orientation_from_horizontal(kind, expected):
    m = measure(sample(elongated(kind)))
    assert m.objects["grains"]["orientation_deg"][0] == pytest.approx(expected, abs=1.0)


def test_ignore_data_bar_and_region_are_excluded():
    cm = scene()
    cm[:, :55] = IGNORE  # covers the pore disc
    cm[100:] = PORE  # below the data bar: must not count
    valid = np.ones(cm.shape, bool)
    valid[:, 180:] = False
    m = measure(sample(cm, data_bar_row=100, valid=valid))
    region = 100 * 125
    assert m.region_pixels == region
    assert m.excluded_pixels == {
        "data_bar": 28 * 200,
        "outside_region": 100 * 20,
        "ignore_255": 100 * 55,
    }
    assert m.summary["pore_fraction"] == pytest.approx(24 / region)
    assert m.summary["grain_fraction"] == pytest.approx(1200 / region)
    assert m.summary["matrix_fraction"] == pytest.approx(1 - (1224 / region))
    assert m.objects["pores"]["area"].tolist() == [24]


def test_edge_objects_are_flagged():
    cm = np.zeros((60, 60), np.uint8)
    cm[0:5, 20:30] = PORE  # on the image border
    cm[30:35, 30:40] = PORE  # inside
    cm[30:35, 41:45] = IGNORE  # next to the second pore, but not touching
    cm[45:50, 10:15] = PORE
    cm[50:52, 10:15] = IGNORE  # touching the third pore: it may be cut
    t = measure(sample(cm)).objects["pores"]
    edge = dict(zip(t["centroid_row_px"].round().astype(int).tolist(), t["touches_edge"]))
    assert edge == {2: True, 32: False, 47: True}


def test_min_size_drops_objects_not_pixels():
    cm = np.zeros((40, 40), np.uint8)
    cm[5, 5] = PORE
    cm[10:12, 10:12] = PORE
    cm[20:25, 20:25] = PORE
    assert measure(sample(cm), min_size=1).summary["pores"]["count"] == 3
    m = measure(sample(cm), min_size=5, keep_labels=True)
    assert m.objects["pores"]["area"].tolist() == [25]
    assert m.summary["pore_fraction"] == pytest.approx(30 / 1600)
    ids = m.object_labels["pores"]
    assert np.count_nonzero(ids) == 25 and set(np.unique(ids)) == {0, *m.objects["pores"]["label"]}
    one = measure(sample(cm), min_size=1).objects["pores"]
    assert one["aspect_ratio"][one["area"] == 1][0] == 1.0


def test_empty_map_gives_zero_counts():
    m = measure(sample(np.zeros((64, 64), np.uint8), 10.0))
    s = m.summary
    assert s["pores"]["count"] == 0 and s["grains"]["count"] == 0
    assert s["pore_fraction"] == 0.0 and s["pores"]["d50_nm"] is None
    assert objects_csv(m).count("\n") == 1  # header only
    assert summary_rows(m)
    edges, counts, area = size_histogram(m.objects["pores"]["equivalent_diameter"])
    assert edges.size == counts.size == area.size == 0
    nothing = measure(sample(np.full((8, 8), IGNORE, np.uint8)))
    assert nothing.region_pixels == 0 and nothing.summary["pore_fraction"] is None
    assert flat_summary(nothing.summary)["pores_count"] == 0


def test_low_confidence_fraction():
    conf = np.full((10, 10), 200, np.uint8)
    conf[:, :3] = 100  # 100/255 < 0.5
    assert low_confidence_fraction(conf, 0.5) == pytest.approx(0.3)
    assert low_confidence_fraction(conf / 255.0, 0.5) == pytest.approx(0.3)
    region = np.zeros((10, 10), bool)
    region[:, :5] = True
    assert low_confidence_fraction(conf, 0.5, region) == pytest.approx(0.6)
    cm = np.zeros((10, 10), np.uint8)
    cm[:, 5:] = IGNORE
    m = measure(sample(cm), confidence=conf, confidence_threshold=0.5)
    assert m.low_confidence == {"threshold": 0.5, "fraction": pytest.approx(0.6)}
    with pytest.raises(ValueError, match="threshold"):
        low_confidence_fraction(conf, 1.5)


def test_bad_maps_are_refused():
    with pytest.raises(ValueError, match="outside 0, 1, 2 and 255"):
        measure(sample(np.full((4, 4), 7, np.uint8)))
    with pytest.raises(ValueError, match="2-D"):
        measure(sample(np.zeros((2, 4, 4), np.uint8)))
    with pytest.raises(ValueError, match="region mask"):
        analysed_region(np.zeros((4, 4), np.uint8), valid=np.ones((3, 3), bool))


def test_cancel():
    with pytest.raises(Cancelled):
        measure(sample(scene()), should_stop=lambda: True)


def test_statistics_helpers():
    d = np.array([1.0, 2.0, 3.0, 10.0])
    a = np.array([1.0, 1.0, 1.0, 97.0])
    assert weighted_percentile(d, a, 50) == 10.0
    assert weighted_percentile(d, np.ones(4), 50) == 2.0
    edges, counts, area = size_histogram(d, a, bins=4)
    assert counts.sum() == 4 and area.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(np.log(edges)), np.log(10) / 4)
    assert size_colours(d).shape == (4, 4)


def test_export_files(tmp_path):
    m = measure(sample(scene(), 13.96, name="scene"))
    paths = export_measurement(m, tmp_path / "scene")
    assert paths == list(export_paths(tmp_path / "scene"))
    with open(paths[0], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == ["pore", "pore", "grain"]
    assert {r["touches_grain"] for r in rows} == {"True", "False", ""}
    grain = rows[2]
    assert float(grain["area_nm2"]) == pytest.approx(1200 * 13.96**2)
    summary = json.loads(paths[1].read_text(encoding="utf-8"))
    assert summary["unit"] == "nm" and summary["pixel_size_nm"] == 13.96
    assert summary["grains"]["count"] == 1
    with pytest.raises(FileExistsError):
        export_measurement(m, tmp_path / "scene")
    assert free_base(tmp_path / "scene_objects.csv") == tmp_path / "scene-2"


def test_real_zeiss_labels_fractions():
    from napari_poregrain.io.images import read_labels

    labels = read_labels(shared_data("zeiss-shale-pores") / "labels" / "train_1.png")
    m = measure(sample(labels, 13.96, data_bar_row=688))
    above = labels[:688]
    labelled = np.count_nonzero(above != IGNORE)
    assert m.region_pixels == labelled
    assert m.summary["pore_fraction"] == pytest.approx(np.count_nonzero(above == PORE) / labelled)
    assert m.summary["pores"]["count"] > 10
    assert m.objects["pores"]["area"].sum() <= np.count_nonzero(above == PORE) * 13.96**2


def test_a_region_mask_of_another_shape_is_refused_by_the_sample():
    with pytest.raises(ValueError, match="valid"):
        sample(np.zeros((4, 4), np.uint8), valid=np.ones((3, 3), bool))


def test_a_sample_without_labels_is_refused():
    from napari_poregrain.sample import Sample

    with pytest.raises(ValueError, match="no class map"):
        measure(Sample(np.zeros((8, 8), np.uint8), name="img"))


def test_progress_counts_each_class_and_the_summary():
    calls = []
    measure(sample(scene()), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_the_sample_decides_bar_region_scale_and_source():
    cm = scene()
    valid = np.ones(cm.shape, bool)
    valid[:, 180:] = False
    from_sample = measure(sample(cm, 13.96, data_bar_row=100, valid=valid, name="s.png"))
    cut = cm[:100, :180]  # the same pixels, cut by hand
    by_hand = measure(sample(cut, 13.96, name="s.png"))
    assert from_sample.source == "s.png" and from_sample.summary["source"] == "s.png"
    assert from_sample.unit == "nm" and from_sample.pixel_size_nm == 13.96
    assert from_sample.region_pixels == by_hand.region_pixels == 100 * 180
    assert from_sample.class_pixels == by_hand.class_pixels
    assert from_sample.excluded_pixels == {
        "data_bar": 28 * 200,
        "outside_region": 100 * 20,
        "ignore_255": 0,
    }


def test_first_existing(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.json"
    assert first_existing([a, b]) is None
    b.write_text("{}")
    assert first_existing([a, b]) == b


def test_real_zeiss_image_and_labels_as_one_sample():
    from napari_poregrain.io.images import read_labels, read_sample

    data = shared_data("zeiss-shale-pores")
    s = read_sample(data / "images" / "train_1.tif", labels=data / "labels" / "train_1.png")
    m = measure(s)
    labels = read_labels(data / "labels" / "train_1.png")
    above = labels[: s.data_bar_row]
    assert m.pixel_size_nm == pytest.approx(13.96) and m.unit == "nm"
    assert m.region_pixels == np.count_nonzero(above != IGNORE)
    assert m.excluded_pixels["data_bar"] == (labels.shape[0] - s.data_bar_row) * labels.shape[1]
