"""``poregrain evaluate``: JSON shape, table, the three input layouts and error exits."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image

from napari_poregrain.cli import main
from napari_poregrain.io.images import read_labels, write_labels
from napari_poregrain.synthetic import make_sample

KEYS = {"per_class_iou", "mean_iou", "pixel_accuracy", "confusion_matrix", "n_images"}


def _run(capsys, *argv):
    rc = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def pred_truth(tmp_path):
    """Two hand-made pairs (no pore anywhere); returns (pred_dir, truth_dir)."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    write_labels(pred / "a.png", np.array([[0, 1], [1, 1]]))
    write_labels(truth / "a.png", np.array([[0, 0], [1, 255]]))
    write_labels(pred / "b.png", np.array([[1, 0, 0]]))
    write_labels(truth / "b.png", np.array([[1, 0, 1]]))
    return pred, truth


def test_json_shape_and_values(capsys, pred_truth):
    pred, truth = pred_truth
    rc, out, _ = _run(capsys, "--pred", pred, "--truth", truth, "--json")
    assert rc == 0
    d = json.loads(out)  # exactly one JSON object on stdout
    assert set(d) == KEYS
    assert list(d["per_class_iou"]) == ["matrix", "grain", "pore"]
    # pairs: a (0,0)(0,1)(1,1) ; b (1,1)(0,0)(1,0)
    assert d["confusion_matrix"] == [[2, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert d["per_class_iou"]["matrix"] == pytest.approx(2 / 4)
    assert d["per_class_iou"]["grain"] == pytest.approx(2 / 4)
    assert d["per_class_iou"]["pore"] is None
    assert d["mean_iou"] == pytest.approx(0.5)
    assert d["pixel_accuracy"] == pytest.approx(4 / 6)
    assert d["n_images"] == 2
    assert '"pore": null' in out


def test_table_output(capsys, pred_truth):
    pred, truth = pred_truth
    rc, out, _ = _run(capsys, "--pred", pred, "--truth", truth)
    assert rc == 0
    lines = out.splitlines()
    assert any(line.startswith("grain ") and "0.5000" in line for line in lines)
    assert any(line.startswith("pore ") and "n/a" in line for line in lines)
    assert "mean IoU: 0.5000" in out


def test_missing_partner(capsys, pred_truth):
    pred, truth = pred_truth
    write_labels(pred / "c.png", np.zeros((2, 2), np.uint8))
    rc, out, err = _run(capsys, "--pred", pred, "--truth", truth, "--json")
    assert rc == 2 and out == ""
    assert "c.png" in err and len(err.strip().splitlines()) == 1
    (pred / "c.png").unlink()
    write_labels(truth / "d.png", np.zeros((2, 2), np.uint8))
    rc, _, err = _run(capsys, "--pred", pred, "--truth", truth)
    assert rc == 2 and "d.png" in err


def test_size_mismatch(capsys, pred_truth):
    pred, truth = pred_truth
    write_labels(pred / "b.png", np.zeros((2, 3), np.uint8))
    rc, out, err = _run(capsys, "--pred", pred, "--truth", truth, "--json")
    assert rc == 2 and out == ""
    assert "b.png" in err and "1x3" in err and "2x3" in err


def test_unreadable_and_bad_values(capsys, pred_truth):
    pred, truth = pred_truth
    (truth / "a.png").write_bytes(b"not a png")
    rc, _, err = _run(capsys, "--pred", pred, "--truth", truth)
    assert rc == 2 and "a.png" in err
    write_labels(truth / "a.png", np.zeros((2, 2), np.uint8))
    write_labels(pred / "a.png", np.full((2, 2), 7))
    rc, _, err = _run(capsys, "--pred", pred, "--truth", truth)
    assert rc == 2 and "a.png" in err and "outside 0..2" in err


def test_missing_folder_and_truth(capsys, tmp_path, pred_truth):
    rc, _, err = _run(capsys, "--pred", tmp_path / "nope", "--truth", pred_truth[1])
    assert rc == 2 and "nope" in err
    rc, _, err = _run(capsys, "--pred", pred_truth[0], "--truth", tmp_path / "nope")
    assert rc == 2 and "nope" in err
    with pytest.raises(SystemExit):  # argparse: one source is required
        main(["evaluate", "--truth", str(tmp_path)])
    capsys.readouterr()
    rc, _, err = _run(capsys, "--pred", tmp_path)
    assert rc == 2 and "--truth" in err


def test_images_with_model(capsys, tmp_path, tiny_checkpoint):
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    for seed in range(2):
        image, labels = make_sample((64, 80), seed=seed)
        Image.fromarray(image).save(images / f"s{seed}.png")
        labels[:4] = 255
        write_labels(truth / f"s{seed}.png", labels)
    rc, out, err = _run(
        capsys, "--images", images, "--truth", truth, "--model", tiny_checkpoint,
        "--device", "cpu", "--tile", 64, "--json",
    )  # fmt: skip
    assert rc == 0, err
    d = json.loads(out)
    assert d["n_images"] == 2
    assert np.asarray(d["confusion_matrix"]).sum() == 2 * 60 * 80
    # a missing model is one line, exit 2
    rc, out, err = _run(
        capsys, "--images", images, "--truth", truth, "--model", tmp_path / "none.safetensors"
    )
    assert rc == 2 and out == "" and "none.safetensors" in err


def test_seed_layout(capsys, tmp_path, tiny_checkpoint):
    d = tmp_path / "seed"
    (d / "JPEGImages").mkdir(parents=True)
    (d / "ImageSets").mkdir()
    for seed in range(3):
        image, labels = make_sample((64, 64), seed=seed)
        suffix = ".tif" if seed == 2 else ".jpg"  # like `poregrain train`: any image suffix
        Image.fromarray(image).save(d / "JPEGImages" / f"img{seed}{suffix}")
        write_labels(d / "SegmentationClassRaw" / f"img{seed}.png", labels)
    (d / "ImageSets" / "test.txt").write_text("img0\nimg2\n\n")
    rc, out, err = _run(
        capsys, "--data-dir", d, "--split", "test", "--model", tiny_checkpoint,
        "--device", "cpu", "--tile", 64, "--json",
    )  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["n_images"] == 2
    (d / "ImageSets" / "val.txt").write_text("img1\nimg9\n")
    rc, out, err = _run(capsys, "--data-dir", d, "--split", "val", "--model", tiny_checkpoint)
    assert rc == 2 and out == "" and "img9.jpg" in err
    rc, _, err = _run(capsys, "--data-dir", d, "--split", "train", "--model", tiny_checkpoint)
    assert rc == 2 and "train.txt" in err


def _score_on_cpu(capsys, images, truth, checkpoint) -> dict:
    """``evaluate --images --truth --json`` with the model on the CPU; its JSON, checked rc 0."""
    rc, out, err = _run(
        capsys, "--images", images, "--truth", truth, "--model", checkpoint,
        "--device", "cpu", "--json",
    )  # fmt: skip
    assert rc == 0, err
    return json.loads(out)


def test_real_zeiss_tiff_against_png_labels(capsys, tmp_path, tiny_checkpoint):
    src = shared_data("zeiss-shale-pores")
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    truth.mkdir()
    shutil.copy(src / "images" / "train_1.tif", images)
    shutil.copy(src / "labels" / "train_1.png", truth)
    d = _score_on_cpu(capsys, images, truth, tiny_checkpoint)
    labels = read_labels(truth / "train_1.png")
    assert np.asarray(d["confusion_matrix"]).sum() == np.count_nonzero(labels <= 2)
    assert d["confusion_matrix"][1] == [0, 0, 0]  # this set labels no grains


def test_pairs_by_stem_name_the_file_without_partner(tmp_path):
    from napari_poregrain.cli import CliError
    from napari_poregrain.cli._files import files_by_stem, first_file, pair_by_stem

    for folder, names in (("img", ("a.tif", "b.png")), ("lab", ("a.png", "b.png", "c.png"))):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"")
    images = files_by_stem(tmp_path / "img", (".tif", ".png"), "image")
    labels = files_by_stem(tmp_path / "lab", (".png",), "label")
    with pytest.raises(CliError, match=r"c\.png: no image file named c\.\* in .*img"):
        pair_by_stem(images, labels, "image", "label")
    (tmp_path / "lab" / "c.png").unlink()
    labels = files_by_stem(tmp_path / "lab", (".png",), "label")
    pairs = pair_by_stem(images, labels, "image", "label")
    assert [(s, a.name, b.name) for s, a, b in pairs] == [
        ("a", "a.tif", "a.png"),
        ("b", "b.png", "b.png"),
    ]
    assert first_file([tmp_path / "nope.png", tmp_path / "img", *images.values()]) == images["a"]


def test_the_data_bar_is_not_scored(capsys, tmp_path, tiny_checkpoint):
    from napari_poregrain.io.images import read_sample

    src = shared_data("zeiss-shale-pores")
    images, truth = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    shutil.copy(src / "images" / "train_1.tif", images)
    labels = read_labels(src / "labels" / "train_1.png")
    bar = read_sample(images / "train_1.tif").data_bar_row
    labels[bar:] = 1  # grain in the bar: the prediction there is 0, but it must not count
    write_labels(truth / "train_1.png", labels)
    d = _score_on_cpu(capsys, images, truth, tiny_checkpoint)
    assert d["confusion_matrix"][1] == [0, 0, 0]
    assert np.asarray(d["confusion_matrix"]).sum() == np.count_nonzero(labels[:bar] <= 2)
