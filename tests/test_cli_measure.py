"""``poregrain measure``: per-image CSV + JSON, the combined CSV, units and errors."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import shared_data

from napari_poregrain.classes import GRAIN, IGNORE, PORE
from napari_poregrain.cli import main
from napari_poregrain.io.images import write_labels


@pytest.fixture
def label_files(tmp_path):
    a = np.zeros((64, 96), np.uint8)
    a[10:20, 10:30] = GRAIN  # 200 px
    a[40:44, 40:44] = PORE  # 16 px
    a[60:] = IGNORE
    b = np.zeros((32, 32), np.uint8)
    b[5:10, 5:10] = PORE
    return [write_labels(tmp_path / "a.png", a), write_labels(tmp_path / "b.png", b)]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_writes_objects_summaries_and_combined_csv(label_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["measure", *map(str, label_files), "--pixel-size", "13.96nm", "--out", str(out)])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "a_objects.csv",
        "a_summary.json",
        "b_objects.csv",
        "b_summary.json",
        "summary.csv",
    ]
    objects = read_csv(out / "a_objects.csv")
    assert [r["class"] for r in objects] == ["pore", "grain"]
    assert float(objects[1]["area_nm2"]) == pytest.approx(200 * 13.96**2)
    assert float(objects[0]["equivalent_diameter_nm"]) == pytest.approx(
        2 * math.sqrt(16 / math.pi) * 13.96
    )
    summary = json.loads((out / "a_summary.json").read_text(encoding="utf-8"))
    assert summary["unit"] == "nm" and summary["analysed_pixels"] == 60 * 96
    assert summary["pore_fraction"] == pytest.approx(16 / (60 * 96))
    combined = read_csv(out / "summary.csv")
    assert [r["file"] for r in combined] == [str(p) for p in label_files]
    assert float(combined[1]["pore_fraction"]) == pytest.approx(25 / 1024)
    assert combined[1]["grains_d50_nm"] == ""  # no grains: blank, not an error
    assert "a.png: pores" in capsys.readouterr().out


def test_units_in_um_and_pixels(label_files, tmp_path):
    assert (
        main(
            [
                "measure",
                str(label_files[0]),
                "--pixel-size",
                "0.2um",
                "--out",
                str(tmp_path / "um"),
            ]
        )
        == 0
    )
    s = json.loads((tmp_path / "um" / "a_summary.json").read_text(encoding="utf-8"))
    assert s["unit"] == "µm" and s["grains"]["total_area_um2"] == pytest.approx(200 * 0.04)
    assert main(["measure", str(label_files[0]), "--out", str(tmp_path / "px")]) == 0
    s = json.loads((tmp_path / "px" / "a_summary.json").read_text(encoding="utf-8"))
    assert s["unit"] == "px" and "no pixel size" in s["unit_note"]
    assert s["grains"]["total_area_px2"] == 200


def test_bad_file_is_reported_and_others_done(label_files, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    write_labels(bad, np.full((8, 8), 7, np.uint8))
    out = tmp_path / "out"
    files = [str(label_files[0]), str(tmp_path / "missing.png"), str(bad)]
    assert main(["measure", *files, "--out", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "poregrain measure:" in line]
    assert len(err) == 2
    assert "missing.png" in err[0] and "bad.png" in err[1] and "outside 0, 1, 2" in err[1]
    assert (out / "a_objects.csv").is_file()
    assert [r["file"] for r in read_csv(out / "summary.csv")] == [files[0]]


def test_refuses_to_overwrite_without_flag(label_files, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["measure", str(label_files[0]), "--out", out]) == 0
    assert main(["measure", str(label_files[0]), "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["measure", str(label_files[0]), "--out", out, "--overwrite"]) == 0


def test_argument_errors(label_files, tmp_path, capsys):
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:  # refused by argparse, before any work
        main(["measure", str(label_files[0]), "--pixel-size", "13", "--out", out])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("poregrain measure: error: --pixel-size: ")
    assert main(["measure", *map(str, label_files), "--image", "x.tif", "--out", out]) == 2
    assert main(["measure", str(label_files[0]), "--unit", "nm", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("poregrain measure: ") for line in err)
    assert not (tmp_path / "out").exists()


def test_pixel_size_and_data_bar_from_zeiss_tiff(tmp_path):
    data = shared_data("zeiss-shale-pores")
    from napari_poregrain.io.images import read_labels, read_sample

    image = read_sample(data / "images" / "train_1.tif")
    labels = read_labels(data / "labels" / "train_1.png")
    assert image.data_bar_row is not None
    labels[image.data_bar_row :] = PORE  # would count if the bar were not excluded
    path = write_labels(tmp_path / "train_1.png", labels)
    out = tmp_path / "out"
    assert (
        main(
            [
                "measure",
                str(path),
                "--image",
                str(data / "images" / "train_1.tif"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    s = json.loads((out / "train_1_summary.json").read_text(encoding="utf-8"))
    assert s["pixel_size_nm"] == pytest.approx(13.96) and s["unit"] == "nm"
    above = labels[: image.data_bar_row]
    assert s["pore_fraction"] == pytest.approx(
        np.count_nonzero(above == PORE) / np.count_nonzero(above != IGNORE)
    )
    bar_rows = labels.shape[0] - image.data_bar_row
    assert s["excluded_pixels"]["data_bar"] == bar_rows * labels.shape[1]
