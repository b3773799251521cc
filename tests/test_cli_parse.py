"""Issue 26, the parse-time side: degenerate option combinations, seed ranges, clear messages for
values that start with ``-``, and ``poregrain demo`` without a display. Each used to end in a
traceback, a late unclear error or a Qt abort."""

from __future__ import annotations

import pytest

from napari_poregrain.cli import main


def _refused(capsys, argv) -> str:
    """The one error line of a command refused at parse time (exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"poregrain {argv[0]}: error: ") or lines[-1].startswith(
        "poregrain: error: "
    )
    return lines[-1]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["predict", "x.tif", "--out", "o", "--tile", "16", "--overlap", "0.99"], "0 pixels"),
        (["predict", "x.tif", "--out", "o", "--tile", "32", "--overlap", "0.6"], "13 pixels"),
        (["predict", "x.tif", "--out", "o", "--overlap", "0.99"], "the default tile 768"),
        (["evaluate", "--pred", "p", "--truth", "t", "--tile", "16", "--overlap", "0.5"], "8 p"),
    ],
)
def test_a_tile_and_overlap_leaving_no_step_are_refused_at_parse_time(
    capsys, tmp_path, argv, words
):
    line = _refused(capsys, argv)
    assert "--overlap" in line and "between tiles" in line and words in line


@pytest.mark.parametrize("value", ["-1", str(2**70), "1.5", "x"])
def test_the_seed_is_range_checked_at_parse_time(capsys, tmp_path, value):
    argv = [
        "train",
        "--images",
        str(tmp_path),
        "--labels",
        str(tmp_path),
        "--out",
        "m.safetensors",
    ]
    assert "--seed" in _refused(capsys, [*argv, "--seed", value])


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--crop", "100"], "multiple of 16"),
        (["--scale-range", "2", "1"], "scale range"),
        (["--mix", "0"], "mix"),
        (["--workers", "100000"], "--workers must be in [0, 64]"),
    ],
)
def test_train_settings_that_cannot_go_together_stop_at_parse_time(
    capsys, tmp_path, options, words
):
    argv = ["train", "--images", str(tmp_path / "none"), "--labels", str(tmp_path), "--out", "m"]
    assert words in _refused(capsys, [*argv, *options])  # before the missing folder is noticed


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["predict", "-x.tif", "--out", "o"], "-- -x.tif"),
        (["predict", "a.tif", "-x.tif", "--out", "o"], "-- -x.tif"),
        (["measure", "x.png", "--out", "o", "--pixel-size", "-5nm"], "--pixel-size=-5nm"),
    ],
)
def test_values_starting_with_a_dash_get_a_way_to_write_them(capsys, argv, hint):
    assert hint in _refused(capsys, argv)


def test_a_negative_pixel_size_written_with_equals_is_refused_for_its_sign(capsys):
    line = _refused(capsys, ["measure", "x.png", "--out", "o", "--pixel-size=-5nm"])
    assert "--pixel-size" in line and "positive" in line


@pytest.mark.parametrize("display", [None, ":987"])
def test_demo_without_a_display_says_so_in_one_line(capsys, monkeypatch, display):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", display)
    assert main(["demo"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("poregrain demo: no display to open napari on")
