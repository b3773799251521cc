"""Issue 26, the second hostile sweep: nothing lost, nothing silently wrong.

Inputs are never written over, names are proven writable (temporaries included) before the
compute and finished work survives a failed save, non-regular and unsegmentable inputs are
refused by name before anything opens or computes them. Each test fails on the code before.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_poregrain.cli import main
from napari_poregrain.io.atomic import short_name
from napari_poregrain.io.files import ImageReadError
from napari_poregrain.io.images import read_sample, write_labels
from napari_poregrain.io.lazy import read_lazy
from napari_poregrain.io.outputs import OutputError, check_names, image_shape
from napari_poregrain.model import load_checkpoint
from napari_poregrain.synthetic import make_sample


def _image(path, shape=(48, 64), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = make_sample(shape, seed=seed)[0]
    if path.suffix == ".png":
        Image.fromarray(image).save(path)
    else:
        tifffile.imwrite(path, image)
    return path


def _predict(*argv, model):
    return main(["predict", *map(str, argv), "--model", str(model), "--tile", "64"])


def _lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "poregrain" in line]


# -- inputs never written over ------------------------------------------------------------------
@pytest.mark.parametrize(("name", "fmt"), [("img.png", "auto"), ("img.tif", "tiff")])
@pytest.mark.parametrize("overwrite", [True, False])
def test_predict_never_writes_over_its_input(
    tiny_checkpoint, tmp_path, capsys, name, fmt, overwrite
):
    image = _image(tmp_path / name)
    before = image.read_bytes()
    flags = ["--overwrite"] if overwrite else []
    assert _predict(image, "--out", tmp_path, "--format", fmt, *flags, model=tiny_checkpoint) == 2
    [line] = _lines(capsys)
    assert line.count(str(image)) == 2 and "input" in line
    assert image.read_bytes() == before


def test_measure_never_writes_over_its_inputs(tmp_path, capsys):
    labels = write_labels(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    table = tmp_path / "summary.csv"  # given as an input by mistake
    table.write_text("the user's table")
    argv = ["measure", str(labels), str(table), "--out", str(tmp_path), "--overwrite"]
    assert main(argv) == 2
    [line] = _lines(capsys)
    assert line.count(str(table)) == 2 and "input" in line
    assert table.read_text() == "the user's table" and not (tmp_path / "a_objects.csv").exists()


def test_train_never_writes_over_its_starting_model(tiny_checkpoint, tmp_path, capsys):
    before = tiny_checkpoint.read_bytes()
    argv = ["train", "--images", str(tmp_path), "--labels", str(tmp_path)]
    assert main([*argv, "--init", str(tiny_checkpoint), "--out", str(tiny_checkpoint)]) == 2
    [line] = _lines(capsys)
    assert line.count(str(tiny_checkpoint)) == 2 and "input" in line
    assert tiny_checkpoint.read_bytes() == before


# -- names proven writable before the compute; nothing lost at save time -------------------------
def test_a_name_too_long_is_refused_before_the_compute(tmp_path):
    check_names([tmp_path / ("x" * 251 + ".png")])  # 255 bytes: fine, temporary included
    with pytest.raises(OutputError, match="bytes, longer than the file system"):
        check_names([tmp_path / ("x" * 252 + ".png")])
    assert list(tmp_path.iterdir()) == []


def test_predict_refuses_a_long_name_before_loading_the_model(tmp_path, capsys):
    image = _image(tmp_path / "folder" / ("x" * 248 + ".tif"))  # folder_xxx.png: 259 bytes
    missing = tmp_path / "missing.safetensors"
    for out in (tmp_path / "new", tmp_path):  # a folder to create, one that exists
        assert _predict(image, "--out", out, "--unique-names", model=missing) == 2
        [line] = _lines(capsys)
        assert "longer than the file system" in line


def test_train_refuses_a_long_name_before_reading_anything(tmp_path, capsys):
    out = tmp_path / ("m" * 245 + ".safetensors")  # 257 bytes, in a folder that exists
    argv = ["train", "--images", str(tmp_path / "none"), "--labels", str(tmp_path)]
    assert main([*argv, "--init", "scratch", "--out", str(out)]) == 2
    [line] = _lines(capsys)
    assert "257 bytes, longer than the file system" in line


def test_a_failed_model_save_keeps_the_model_and_says_where(tmp_path, capsys, monkeypatch):
    from napari_poregrain.training import trainer as trainer_module

    images, labels = tmp_path / "images", tmp_path / "labels"
    image, truth = make_sample((96, 96), seed=1)
    images.mkdir()
    Image.fromarray(image).save(images / "a.png")
    write_labels(labels / "a.png", truth)
    out = tmp_path / "out" / "m.safetensors"
    monkeypatch.setattr(trainer_module, "save_checkpoint", _FailFor(out, trainer_module))
    argv = ["train", "--images", images, "--labels", labels, "--init", "scratch", "--out", out]
    fast = ["--crop", "64", "--batch", "2", "--steps", "2", "--steps-per-epoch", "2"]
    assert main([*map(str, argv), *fast, "--device", "cpu"]) == 1
    [line] = _lines(capsys)
    kept = short_name(out)
    assert line.endswith(f"the model is kept as {kept}") and str(out) in line
    assert load_checkpoint(kept).meta.provenance["step"] == 2 and not out.exists()


class _FailFor:
    """``save_checkpoint`` that fails (file name too long) for one path: a save-time failure."""

    def __init__(self, path, module) -> None:
        self.path, self.save = path, module.save_checkpoint

    def __call__(self, model, path, **kwargs):
        if path == self.path:
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(path))
        return self.save(model, path, **kwargs)


# -- non-regular files, one file steering the others ---------------------------------------------
def test_a_named_pipe_is_refused_by_name_and_the_others_are_done(
    tiny_checkpoint, tmp_path, capsys
):
    pipe = tmp_path / "pipe.tif"
    os.mkfifo(pipe)
    good = _image(tmp_path / "good.tif")
    assert image_shape(pipe) is None  # the shape probe does not open it (it would block)
    assert _predict(pipe, good, "--out", tmp_path / "out", model=tiny_checkpoint) == 1
    [line] = _lines(capsys)
    assert str(pipe) in line and "named pipe" in line
    assert (tmp_path / "out" / "good.png").is_file()
    for read in (read_sample, read_lazy):
        with pytest.raises(ImageReadError, match="named pipe"):
            read(pipe)


def test_format_auto_is_decided_per_file(tiny_checkpoint, tmp_path):
    liar = tmp_path / "liar.tif"  # claims 100000 x 100000 pixels, holds 16 x 16
    tifffile.imwrite(liar, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(liar, mode="r+b") as tf:
        for tag in ("ImageWidth", "ImageLength"):
            tf.pages.first.tags[tag].overwrite(100_000)
    assert image_shape(liar) == (100_000, 100_000)
    good = _image(tmp_path / "good.png")
    assert _predict(liar, good, "--out", tmp_path / "out", model=tiny_checkpoint) == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


# -- unsegmentable shapes refused when read ------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "words"), [((96, 96, 2), "2 channels"), ((2, 3, 40, 40), "4-D")]
)
def test_unsegmentable_shapes_are_refused_when_read(tmp_path, shape, words):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8))
    for read in (read_sample, read_lazy):
        with pytest.raises(ImageReadError, match=words):
            read(path)


def test_a_two_channel_image_is_refused_before_the_compute(tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.zeros((96, 96, 2), np.uint8))
    assert _predict(path, "--out", tmp_path / "out", model=tiny_checkpoint) == 1
    [line] = _lines(capsys)
    assert str(path) in line and "2 channels" in line and "Cannot write" not in line


# -- --ignore-values 0 1 2 had no effect at all ---------------------------------------------------
def test_ignore_values_leave_classes_unscored_too(tmp_path, capsys):
    import json

    pred, truth = tmp_path / "pred", tmp_path / "truth"
    write_labels(pred / "a.png", np.array([[0, 1, 2, 2], [0, 1, 1, 2]]))
    write_labels(truth / "a.png", np.array([[0, 1, 2, 1], [0, 1, 2, 2]]))
    argv = ["evaluate", "--pred", str(pred), "--truth", str(truth), "--json"]
    scores = []
    for ignore in ([], ["2"], ["0", "1", "2"]):
        assert main([*argv, *(["--ignore-values", *ignore] if ignore else [])]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    every, no_pores, none = scores
    assert every["per_class_iou"]["pore"] == pytest.approx(2 / 4)
    assert no_pores["per_class_iou"]["pore"] == 0.0  # only the false pore on a grain is left
    assert no_pores["per_class_iou"]["grain"] == pytest.approx(2 / 3)
    assert none["mean_iou"] is None and sum(map(sum, none["confusion_matrix"])) == 0


def test_a_named_pipe_as_model_is_refused_unopened(tmp_path, capsys):
    pipe = tmp_path / "m.safetensors"
    os.mkfifo(pipe)
    image = _image(tmp_path / "a.tif")
    assert _predict(image, "--out", tmp_path / "out", model=pipe) == 2
    argv = ["train", "--images", str(tmp_path), "--labels", str(tmp_path), "--init", str(pipe)]
    assert main([*argv, "--out", str(tmp_path / "new.safetensors")]) == 2
    lines = _lines(capsys)
    assert len(lines) == 2 and all(f"{pipe}: it is a named pipe" in line for line in lines)


def test_train_never_writes_over_the_recipes_starting_model(tiny_checkpoint, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[model]\ninit = "{tiny_checkpoint}"\n[[source]]\nname = "s"\nsynthetic = true\n'
    )
    before = tiny_checkpoint.read_bytes()
    tiny_checkpoint.with_suffix(".csv").unlink(missing_ok=True)
    assert main(["train", "--config", str(recipe), "--out", str(tiny_checkpoint)]) == 2
    [line] = _lines(capsys)
    assert line.count(str(tiny_checkpoint)) == 2 and tiny_checkpoint.read_bytes() == before


def test_a_streamed_class_map_the_name_refuses_is_kept(tiny_checkpoint, tmp_path, capsys):
    image = _image(tmp_path / "x.png")
    out = tmp_path / "out"
    (out / "x.tif").mkdir(parents=True)  # a folder where the TIFF goes: the claim fails
    assert (
        _predict(image, "--out", out, "--format", "tiff", "--overwrite", model=tiny_checkpoint)
        == 1
    )
    kept = short_name(out / "x.tif")
    [line] = _lines(capsys)
    assert line == (
        f"poregrain predict: cannot save {out / 'x.tif'}: is a directory; the class map is kept "
        f"as {kept}"
    )
    assert tifffile.imread(kept).shape == (48, 64)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_a_named_pipe_in_a_training_folder_is_named(tmp_path, capsys):
    images, labels = tmp_path / "images", tmp_path / "labels"
    _image(images / "a.png")
    labels.mkdir()
    os.mkfifo(labels / "a.png")
    argv = ["train", "--images", images, "--labels", labels, "--init", "scratch"]
    assert main([*map(str, argv), "--out", str(tmp_path / "m.safetensors")]) == 2
    [line] = _lines(capsys)
    assert line == f"poregrain train: {labels / 'a.png'}: it is a named pipe (FIFO), not a file"
