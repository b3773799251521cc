import subprocess
import sys

import numpy as np
import tifffile
from conftest import shared_data
from PIL import Image

from napari_poregrain.cli import main
from napari_poregrain.synthetic import make_sample


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_poregrain.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predict_writes_one_class_map_per_image(tiny_checkpoint, tmp_path):
    image, _ = make_sample((100, 150), seed=0)
    tifffile.imwrite(tmp_path / "a.tif", image)
    Image.fromarray(make_sample((70, 60), seed=1)[0]).save(tmp_path / "b.png")
    rgb = np.repeat(make_sample((40, 50), seed=2)[0][..., None], 3, -1)
    Image.fromarray(rgb).save(tmp_path / "c.jpg")
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "a.tif"), str(tmp_path / "b.png"), str(tmp_path / "c.jpg")]
    code = main([*args, "--out", str(out), "--model", str(tiny_checkpoint), "--tile", "64"])
    assert code == 0
    for stem, shape in (("a", (100, 150)), ("b", (70, 60)), ("c", (40, 50))):
        labels = np.asarray(Image.open(out / f"{stem}.png"))
        assert labels.shape == shape and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1, 2}


def test_bad_files_are_named_and_the_rest_still_done(tiny_checkpoint, tmp_path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, make_sample((64, 64), seed=0)[0])
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not really a tiff")
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    missing = tmp_path / "missing.tif"
    out = tmp_path / "out"
    res = _run(
        "predict",
        str(missing),
        str(broken),
        str(odd),
        str(good),
        "--out",
        str(out),
        "--model",
        str(tiny_checkpoint),
        "--tile",
        "64",
    )
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("poregrain predict:")]
    assert len(errors) == 3
    for bad, line in zip((missing, broken, odd), errors):
        assert str(bad) in line
    assert (out / "good.png").is_file() and not (out / "broken.png").exists()


def test_corrupt_model_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    image = tmp_path / "a.tif"
    tifffile.imwrite(image, np.zeros((32, 32), np.uint8))
    res = _run("predict", str(image), "--out", str(tmp_path / "o"), "--model", str(bad))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and str(bad) in res.stderr


def test_data_bar_of_the_real_zeiss_image_gets_class_zero(tiny_checkpoint, tmp_path):
    path = shared_data("zeiss-shale-pores") / "images" / "train_1.tif"
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(path),
                "--out",
                str(out),
                "--model",
                str(tiny_checkpoint),
                "--tile",
                "256",
            ]
        )
        == 0
    )
    labels = np.asarray(Image.open(out / "train_1.png"))
    assert labels.shape == tifffile.imread(path).shape and labels.shape[0] == 768
    assert (labels[700:] == 0).all()


def test_predict_uses_the_files_sample_and_the_chosen_precision(tiny_checkpoint, tmp_path):
    from napari_poregrain.inference.predict import predict
    from napari_poregrain.io.images import read_sample
    from napari_poregrain.model import load_checkpoint

    image, _ = make_sample((100, 90), seed=3)
    image[88:] = 243  # a flat data bar with a sharp edge: detected by read_sample
    image[87] = 0
    tifffile.imwrite(tmp_path / "bar.tif", image)
    sample = read_sample(tmp_path / "bar.tif")
    assert sample.data_bar_row is not None
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "bar.tif"), "--out", str(out), "--tile", "64"]
    assert main([*args, "--model", str(tiny_checkpoint), "--precision", "fp32"]) == 0
    expected = predict(sample, load_checkpoint(tiny_checkpoint), tile=64, precision="fp32")
    got = np.asarray(Image.open(out / "bar.png"))
    np.testing.assert_array_equal(got, expected.labels)
    assert (got[sample.data_bar_row :] == 0).all()


def test_streamed_formats_hold_the_same_labels_as_the_png(tiny_checkpoint, tmp_path):
    """--format tiff / zarr stream the label blocks; the classes equal the in-memory PNG's."""
    image, _ = make_sample((150, 170), seed=4)
    src = tmp_path / "s.tif"
    tifffile.imwrite(src, image, tile=(64, 64))
    common = ["predict", str(src), "--model", str(tiny_checkpoint), "--tile", "64"]
    for fmt in ("png", "tiff", "zarr"):
        assert main([*common, "--out", str(tmp_path / fmt), "--format", fmt]) == 0
    png = np.asarray(Image.open(tmp_path / "png" / "s.png"))
    with tifffile.TiffFile(tmp_path / "tiff" / "s.tif") as tf:
        assert tf.pages.first.is_tiled  # readable tile by tile, by tifffile and napari
        np.testing.assert_array_equal(tf.asarray(), png)
    import zarr

    group = zarr.open_group(str(tmp_path / "zarr" / "s.zarr"), mode="r")
    labels = group["labels"]["classes"]
    np.testing.assert_array_equal(np.asarray(labels["0"]).reshape(png.shape), png)
    assert "image-label" in dict(labels.attrs) and "multiscales" in dict(group.attrs)
    # auto keeps PNG for an ordinary image; a second run does not replace without --overwrite
    assert main([*common, "--out", str(tmp_path / "png")]) == 2
    assert main([*common, "--out", str(tmp_path / "tiff"), "--format", "tiff", "--overwrite"]) == 0


def test_auto_format_streams_large_images(monkeypatch):
    from napari_poregrain.cli import predict as predict_cli

    assert predict_cli.resolve_format("auto", [(100, 100), None]) == "png"
    big = (predict_cli.STREAM_ABOVE // 1000 + 1, 1000)
    assert predict_cli.resolve_format("auto", [(100, 100), big]) == "tiff"
    assert predict_cli.resolve_format("zarr", [(100, 100)]) == "zarr"


def test_a_batch_of_small_images_counts_images_not_empty_tile_bars(
    tiny_checkpoint, tmp_path, capsys
):
    import tifffile

    from napari_poregrain.cli import main
    from napari_poregrain.synthetic import make_sample

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"small_{i}.tif")
        tifffile.imwrite(paths[-1], make_sample((40, 48), seed=i)[0])
    code = main(["predict", *map(str, paths), "--out", str(tmp_path / "out"),
                 "--model", str(tiny_checkpoint)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "0tile" not in err and "3/3" in err
