"""Issue 16, the command-line side: nothing replaced unasked, absurd options refused at parse
time, outputs checked before the compute, save errors as one sentence, stray truth values named.

Each numbered failure of the issue has a test here that fails on the code before the fix.
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_poregrain.cli import build_parser, command_parsers, main
from napari_poregrain.io.atomic import short_name
from napari_poregrain.io.images import write_labels
from napari_poregrain.io.outputs import (
    OutputError,
    check_folder,
    check_space,
    image_shape,
    is_fatal,
    label_bytes,
    plan_outputs,
    save_error,
)
from napari_poregrain.synthetic import make_sample


def _image(path, shape=(48, 64), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, make_sample(shape, seed=seed)[0])
    return path


def _predict(*argv, model):
    return main(["predict", *map(str, argv), "--model", str(model), "--tile", "64"])


def _leftovers(folder):
    """Hidden temporary or probe files left in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# -- 1. two inputs, one output name; an earlier output replaced without a word ------------------
def test_two_images_with_one_name_are_refused_and_both_named(tiny_checkpoint, tmp_path, capsys):
    a, b = _image(tmp_path / "a" / "x.tif"), _image(tmp_path / "b" / "x.tif", seed=1)
    out = tmp_path / "out"
    assert _predict(a, b, "--out", out, model=tiny_checkpoint) == 2
    err = capsys.readouterr().err
    assert str(a) in err and str(b) in err and str(out / "x.png") in err
    assert err.count("\n") == 1 and not (out / "x.png").exists()


def test_unique_names_keep_both(tiny_checkpoint, tmp_path):
    a, b = _image(tmp_path / "a" / "x.tif"), _image(tmp_path / "b" / "x.tif", seed=1)
    out = tmp_path / "out"
    assert _predict(a, b, "--out", out, "--unique-names", model=tiny_checkpoint) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_x.png", "b_x.png"]


def test_an_earlier_output_is_kept_unless_overwrite(tiny_checkpoint, tmp_path, capsys):
    image = _image(tmp_path / "x.tif")
    out = tmp_path / "out"
    earlier = write_labels(out / "x.png", np.full((48, 64), 2, np.uint8))
    before = earlier.read_bytes()
    assert _predict(image, "--out", out, model=tiny_checkpoint) == 2
    err = capsys.readouterr().err
    assert str(earlier) in err and "--overwrite" in err
    assert earlier.read_bytes() == before
    assert _predict(image, "--out", out, "--overwrite", model=tiny_checkpoint) == 0
    assert earlier.read_bytes() != before


def test_the_same_image_twice_is_named(tmp_path):
    image = tmp_path / "x.tif"
    with pytest.raises(OutputError, match="given twice"):
        plan_outputs([image, tmp_path / "." / "x.tif"], tmp_path / "out", (".png",))


def test_measure_refuses_two_label_files_with_one_name_even_with_overwrite(tmp_path, capsys):
    a = write_labels(tmp_path / "a" / "x.png", np.zeros((8, 8), np.uint8))
    b = write_labels(tmp_path / "b" / "x.png", np.ones((8, 8), np.uint8))
    out = tmp_path / "out"
    assert main(["measure", str(a), str(b), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert str(a) in err and str(b) in err and not out.exists()
    assert main(["measure", str(a), str(b), "--out", str(out), "--unique-names"]) == 0
    assert (out / "a_x_summary.json").is_file() and (out / "b_x_summary.json").is_file()


# -- 3 (and every numeric option): absurd values stop at parse time, exit 2 ----------------------
@pytest.mark.parametrize(
    ("argv", "option", "words"),
    [
        (["predict", "x.tif", "--out", "o", "--batch", "-1"], "--batch", "must be ≥ 1"),
        (["predict", "x.tif", "--out", "o", "--batch", "0"], "--batch", "must be ≥ 1"),
        (["predict", "x.tif", "--out", "o", "--batch", "two"], "--batch", "whole number"),
        (["predict", "x.tif", "--out", "o", "--tile", "0"], "--tile", "must be ≥ 16"),
        (["predict", "x.tif", "--out", "o", "--tile", "100"], "--tile", "multiple of 16"),
        (["predict", "x.tif", "--out", "o", "--overlap", "1"], "--overlap", "[0, 1)"),
        (["predict", "x.tif", "--out", "o", "--overlap", "-0.1"], "--overlap", "[0, 1)"),
        (["predict", "x.tif", "--out", "o", "--overlap", "nan"], "--overlap", "finite"),
        (["evaluate", "--pred", "p", "--truth", "t", "--batch", "0"], "--batch", "≥ 1"),
        (["evaluate", "--pred", "p", "--truth", "t", "--ignore-values", "300"], "--ignore", "255"),
        (["measure", "x.png", "--out", "o", "--min-size", "0"], "--min-size", "must be ≥ 1"),
        (["measure", "x.png", "--out", "o", "--pixel-size=-5nm"], "--pixel-size", "positive"),
        (["measure", "x.png", "--out", "o", "--pixel-size", "0nm"], "--pixel-size", ""),
        (["measure", "x.png", "--out", "o", "--pixel-size", "inf nm"], "--pixel-size", ""),
    ],
)
def test_numeric_options_are_range_checked_at_parse_time(argv, option, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"poregrain {argv[0]}: error: {option}")  # "error: --batch must be ≥ 1"
    assert words in last


def test_batch_minus_one_used_to_give_an_all_zero_map(tiny_checkpoint, tmp_path):
    image = _image(tmp_path / "x.tif")
    with pytest.raises(SystemExit):
        _predict(image, "--out", tmp_path / "out", "--batch", "-1", model=tiny_checkpoint)
    assert not (tmp_path / "out").exists()


# -- 4 (message side). An OSError while saving: one sentence naming the file, exit 1 ------------
def test_save_error_is_one_sentence_naming_the_file_and_leaves_no_temporary(
    tiny_checkpoint, tmp_path, capsys
):
    image = _image(tmp_path / "x.tif")
    out = tmp_path / "out"
    (out / "x.png").mkdir(parents=True)  # a folder where the class map goes: the save fails
    assert _predict(image, "--out", out, "--overwrite", model=tiny_checkpoint) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "poregrain" in line]
    kept = short_name(out / "x.png")  # issue 26: the finished class map is never lost
    assert err == [
        f"poregrain predict: cannot save {out / 'x.png'}: is a directory; the class map is "
        f"kept as {kept}"
    ]
    assert _leftovers(out) == [] and kept.is_file()


def test_measure_save_error_is_one_sentence(tmp_path, capsys):
    labels = write_labels(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    out = tmp_path / "out"
    (out / "a_objects.csv").mkdir(parents=True)
    assert main(["measure", str(labels), "--out", str(out), "--overwrite"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    kept = short_name(out / "a_objects.csv")  # issue 26: the finished table is never lost
    assert err == [
        f"poregrain measure: cannot save {out / 'a_objects.csv'}: is a directory; the table is "
        f"kept as {kept}"
    ]
    assert _leftovers(out) == [] and kept.read_text().startswith("class,label,")


def test_disk_full_and_read_only_stop_the_run_in_one_sentence(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".tmp"))
    assert save_error(tmp_path / "x.png", full) == (
        f"cannot save {tmp_path / 'x.png'}: no space left on device"
    )
    assert is_fatal(full) and is_fatal(OSError(errno.EROFS, "Read-only file system"))
    assert not is_fatal(OSError(errno.ENAMETOOLONG, "File name too long"))


# -- 7. evaluate ignored truth values 3-254 without a word --------------------------------------
def test_evaluate_refuses_stray_truth_values_and_names_them(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    write_labels(pred / "a.png", np.array([[0, 1, 2, 1]]))
    ref = write_labels(truth / "a.png", np.array([[0, 1, 7, 200]]))
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert str(ref) in err and "7, 200" in err and "--ignore-values 7 200" in err
    argv = ["evaluate", "--pred", str(pred), "--truth", str(truth), "--json"]
    assert main([*argv, "--ignore-values", "7", "200"]) == 0
    scored = json.loads(capsys.readouterr().out)
    write_labels(truth / "a.png", np.array([[0, 1, 255, 255]]))
    assert main(argv) == 0
    assert scored == json.loads(capsys.readouterr().out)  # listed values count as 255


def test_evaluate_checks_the_truth_before_predicting(tiny_checkpoint, tmp_path, capsys):
    _image(tmp_path / "img" / "a.tif")
    ref = write_labels(tmp_path / "truth" / "a.png", np.full((48, 64), 9, np.uint8))
    argv = ["evaluate", "--images", tmp_path / "img", "--truth", tmp_path / "truth"]
    assert main([*map(str, argv), "--model", str(tiny_checkpoint), "--tile", "64"]) == 2
    assert str(ref) in capsys.readouterr().err


# -- 10. the output folder was checked only after the compute -----------------------------------
def test_unwritable_output_folder_is_refused_before_the_model_is_loaded(tmp_path, capsys):
    image = _image(tmp_path / "x.tif")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    missing_model = tmp_path / "no-such-model.safetensors"
    assert _predict(image, "--out", blocker / "out", model=missing_model) == 2
    err = capsys.readouterr().err
    assert f"cannot write to the output folder {blocker / 'out'}" in err
    assert err.count("\n") == 1


def test_measure_checks_its_folder_before_measuring(tmp_path, capsys):
    labels = write_labels(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["measure", str(labels), "--out", str(blocker / "out")]) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err


def test_folder_check_creates_the_folder_and_leaves_nothing(tmp_path):
    folder = check_folder(tmp_path / "new" / "deeper")
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_disk_space_estimate_refuses_what_cannot_fit(tmp_path):
    image = _image(tmp_path / "x.tif", shape=(40, 50))
    png = tmp_path / "y.png"
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(png)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 no")
    assert [image_shape(p) for p in (image, png, broken)] == [(40, 50), (30, 20), None]
    assert 0 < label_bytes([(40, 50), None]) < 40 * 50
    check_space(tmp_path, 1000)
    with pytest.raises(OutputError, match=f"need about .* but {tmp_path} has only"):
        check_space(tmp_path, 1e18)


# -- help: every option of predict, evaluate and measure says what it is for --------------------
@pytest.mark.parametrize("command", ["predict", "evaluate", "measure"])
def test_every_option_has_a_help_string(command):
    parser = command_parsers(build_parser())[command]
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and len(action.help.split()) >= 4, action.option_strings
