"""``poregrain train``: the command-line contract, run in-process on tiny synthetic data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import shared_data
from PIL import Image

from napari_poregrain.cli import main
from napari_poregrain.io.images import read_sample, write_labels
from napari_poregrain.model import DEFAULT_MODEL_PATH, load_checkpoint
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training import load_training_log

FAST = ["--crop", "64", "--batch", "2", "--steps", "4", "--steps-per-epoch", "2"]
FAST += ["--device", "cpu"]


def _run(capsys, *args):
    rc = main(["train", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _write(folder_images, folder_labels, stem, shape, seed, fmt="png"):
    image, labels = make_sample(shape, seed=seed)
    folder_images.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder_images / f"{stem}.{fmt}")
    write_labels(folder_labels / f"{stem}.png", labels)
    return image, labels


@pytest.fixture
def folders(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    _write(images, labels, "a", (96, 128), 1)
    _write(images, labels, "b", (128, 80), 2, fmt="tif")  # another size and format
    return images, labels


def test_images_and_labels_folders(capsys, tmp_path, folders):
    images, labels = folders
    out = tmp_path / "out" / "m.safetensors"
    rc, stdout, err = _run(
        capsys, "--images", images, "--labels", labels, "--init", "scratch", *FAST, "--out", out
    )
    assert rc == 0, err
    assert f"model: {out}" in stdout and "best epoch" in stdout
    assert "epoch   1" in err  # per-epoch lines with the progress on stderr
    model = load_checkpoint(out)
    prov = model.meta.provenance
    assert [d["name"] for d in prov["data"]] == ["a.png", "b.tif"]
    assert prov["split"]["validation"].startswith("held-out block")
    assert prov["recipe"]["total_steps"] == 4 and model.meta.name == "m"
    assert len(load_training_log(out.with_suffix(".csv"))) == 2
    # never overwritten
    rc, stdout, err = _run(capsys, "--images", images, "--labels", labels, "--out", out)
    assert rc == 2 and stdout == "" and "already exists" in err and len(err.splitlines()) == 1


def test_fine_tune_from_a_file_with_validation_folders(capsys, tmp_path, folders, tiny_checkpoint):
    images, labels = folders
    val_images, val_labels = tmp_path / "vi", tmp_path / "vl"
    _write(val_images, val_labels, "v", (64, 96), 9)
    start_bytes = tiny_checkpoint.read_bytes()
    out = tmp_path / "tuned.safetensors"
    rc, _, err = _run(
        capsys, "--images", images, "--labels", labels, "--val-images", val_images,
        "--val-labels", val_labels, "--init", tiny_checkpoint, *FAST, "--half", "--out", out,
    )  # fmt: skip
    assert rc == 0, err
    assert tiny_checkpoint.read_bytes() == start_bytes
    prov = load_checkpoint(out).meta.provenance
    assert prov["kind"] == "fine-tune" and prov["parent"]["file"] == tiny_checkpoint.name
    assert prov["split"]["validation"] == "explicit validation images"
    assert [d["name"] for d in prov["split"]["val"]] == ["v.png"]
    assert prov["validation"]["pixels"] == 64 * 96
    assert "epoch   0" in err  # the starting model is validated first


def test_seed_dataset_layout(capsys, tmp_path):
    d = tmp_path / "seed"
    for i, shape in enumerate([(96, 96), (80, 112), (64, 64)]):
        _write(d / "JPEGImages", d / "SegmentationClassRaw", f"img{i}", shape, i, fmt="jpg")
    (d / "ImageSets").mkdir()
    (d / "ImageSets" / "train.txt").write_text("img0\nimg1\n\n")
    (d / "ImageSets" / "val.txt").write_text("img2\n")
    out = tmp_path / "m.safetensors"
    rc, _, err = _run(capsys, "--data-dir", d, "--init", "scratch", *FAST, "--out", out)
    assert rc == 0, err
    prov = load_checkpoint(out).meta.provenance
    assert [x["name"] for x in prov["data"]] == ["img0.jpg", "img1.jpg"]
    assert [x["name"] for x in prov["split"]["val"]] == ["img2.jpg"]
    # without val.txt: a held-out block of each training image
    (d / "ImageSets" / "val.txt").unlink()
    out2 = tmp_path / "m2.safetensors"
    rc, _, err = _run(capsys, "--data-dir", d, "--init", "scratch", *FAST, "--out", out2)
    assert rc == 0, err
    assert load_checkpoint(out2).meta.provenance["split"]["validation"].startswith("held-out")
    # a listed image that is missing is named
    (d / "ImageSets" / "train.txt").write_text("img0\nimg7\n")
    rc, _, err = _run(
        capsys, "--data-dir", d, "--init", "scratch", *FAST, "--out", tmp_path / "x.safetensors"
    )
    assert rc == 2 and "img7" in err


def test_problems_are_one_line_and_write_nothing(capsys, tmp_path, folders):
    images, labels = folders
    out = tmp_path / "m.safetensors"
    common = ["--images", images, "--labels", labels, *FAST, "--out", out]
    if not DEFAULT_MODEL_PATH.is_file():
        rc, _, err = _run(capsys, *common)  # --init default is the default
        assert rc == 2 and "no default model is installed" in err
    rc, _, err = _run(capsys, *common, "--init", "scratch", "--encoder", "nope")
    assert rc == 2 and "nope" in err
    rc, _, err = _run(capsys, *common, "--init", tmp_path / "missing.safetensors")
    assert rc == 2 and "missing.safetensors" in err
    with pytest.raises(SystemExit) as info:  # refused at parse time (issue 26)
        _run(capsys, *common, "--init", "scratch", "--crop", "40")
    err = capsys.readouterr().err
    assert info.value.code == 2 and "multiple of 16" in err  # (a larger crop is padded)
    (labels / "a.png").rename(labels / "zzz.png")
    rc, _, err = _run(capsys, *common, "--init", "scratch")
    assert rc == 2 and "a.png" in err and "no label file" in err
    (labels / "zzz.png").unlink()
    write_labels(labels / "a.png", np.zeros((10, 10), np.uint8))
    rc, _, err = _run(capsys, *common, "--init", "scratch")
    assert rc == 2 and "10x10" in err and "96x128" in err
    for line in err.strip().splitlines():
        assert line.startswith("poregrain train:")
    assert not out.exists() and not out.with_suffix(".csv").exists()


def test_real_zeiss_image_trains_above_its_data_bar(capsys, tmp_path):
    src = shared_data("zeiss-shale-pores")
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    shutil.copy(src / "images" / "train_1.tif", images)
    shutil.copy(src / "labels" / "train_1.png", labels)
    out = tmp_path / "zeiss.safetensors"
    rc, _, err = _run(
        capsys, "--images", images, "--labels", labels, "--init", "scratch", *FAST, "--out", out
    )
    assert rc == 0, err
    prov = load_checkpoint(out).meta.provenance
    (data,) = prov["data"]
    (val,) = prov["split"]["val"]
    # the data bar (rows 688-767) is never part of the training or validation data
    sample = read_sample(images / "train_1.tif")
    bar = sample.data_bar_row
    assert bar is not None and 680 <= bar <= 700
    usable = (bar, sample.width)  # 691 x 1024; a narrow band of columns in tests/data
    split = 1 if sample.width >= bar else 0  # split along the longer axis
    assert data["shape"][1 - split] == val["shape"][1 - split] == usable[1 - split]
    assert data["shape"][split] + val["shape"][split] == usable[split]
    assert data["class_pixels"]["grain"] == 0 and data["class_pixels"]["pore"] > 0


def test_training_recipe(capsys, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[model]\nencoder = "resnet18"\nname = "from-recipe"\n'
        "[train]\ncrop = 64\nbatch = 2\nsteps = 50\nsteps_per_epoch = 2\n"
        "scale_range = [0.9, 1.1]\n"
        '[[source]]\nname = "synthetic"\nsynthetic = true\ncount = 2\nval_count = 1\nsize = 96\n'
    )
    out = tmp_path / "m.safetensors"
    # options on the command line win over the recipe's settings
    rc, _, err = _run(capsys, "--config", recipe, "--steps", "2", "--device", "cpu", "--out", out)
    assert rc == 0, err
    model = load_checkpoint(out)
    prov = model.meta.provenance
    assert model.meta.name == "from-recipe" and prov["kind"] == "scratch"
    assert prov["recipe"]["total_steps"] == 2 and prov["recipe"]["scale_range"] == [0.9, 1.1]
    assert prov["recipe_file"] == "r.toml" and prov["sources"] == ["synthetic"]
    assert [d["name"] for d in prov["split"]["val"]] == ["synthetic/synthetic-2"]
    recipe.write_text(recipe.read_text().replace("crop = 64", "cropp = 64"))
    rc, _, err = _run(capsys, "--config", recipe, "--out", tmp_path / "n.safetensors")
    assert rc == 2 and "cropp" in err


def _parsed(*args):
    import argparse

    from napari_poregrain.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return train_cli, parser.parse_args(["--images", "x", "--out", "m.safetensors", *args])


def test_fine_tuning_starts_from_the_default_fine_tune_settings():
    from napari_poregrain.training import TrainConfig, finetune_config

    train_cli, args = _parsed()
    assert train_cli._config(args, None, fine_tune=True) == finetune_config()
    assert train_cli._config(args, None, fine_tune=False) == TrainConfig()
    _, args = _parsed("--steps", "7", "--focus", "0.25")
    cfg = train_cli._config(args, None, fine_tune=True)
    assert cfg.steps == 7 and cfg.focus == 0.25 and cfg.lr == finetune_config().lr


@pytest.mark.parametrize(
    "option, value", [("--steps", "0"), ("--lr", "-1"), ("--focus", "1.5"), ("--batch", "two")]
)
def test_numbers_out_of_range_stop_at_parse_time(capsys, tmp_path, option, value):
    with pytest.raises(SystemExit) as info:
        main(["train", "--images", str(tmp_path), option, value, "--out", str(tmp_path / "m.st")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and option in err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_folder_is_refused_before_training(capsys, tmp_path, folders):
    images, labels = folders
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    out = blocker / "m.safetensors"
    rc, out_text, err = _run(
        capsys, "--images", images, "--labels", labels, *FAST, "--init", "scratch", "--out", out
    )
    assert rc == 2 and "not-a-folder" in err and "it is a file" in err
    assert "step" not in out_text  # refused before any training step
    assert len(err.strip().splitlines()) == 1
