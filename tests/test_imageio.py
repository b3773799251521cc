"""Reading SEM images (pixel size, data bar) and label maps, on real and small written files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from conftest import is_crop, shared_data
from PIL import Image

from napari_poregrain.io.images import (
    ImageReadError,
    apply_palette,
    detect_data_bar,
    length_to_nm,
    read_labels,
    read_sample,
    write_labels,
)
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import SHIFTED, make_sample

ZEISS_PIXEL_NM = {"train_1": 13.96, "train_2": 11.16, "train_3": 11.16, "train_4": 7.443}
ZEISS_BAR_ROW = 691  # black separator line, then flat grey with text down to the last rows


def _fei_ini(pixel_m: float = 2.5e-9, rows: int | None = 200, section: str = "Scan") -> str:
    lines = [
        "[User]",
        "Date=01/02/2024",
        f"[{section}]",
        f"PixelWidth={pixel_m}",
        "Dwelltime=1e-06",
    ]
    if rows is not None:
        lines += ["[Image]", "ResolutionX=256", f"ResolutionY={rows}"]
    return "\r\n".join(lines) + "\r\n"


def _with_bar(image: np.ndarray, bar_rows: int, value: int = 0, text: bool = True) -> np.ndarray:
    """Append an FEI-like data bar (flat ``value`` with white blocks of 'text') below ``image``."""
    h, w = image.shape
    bar = np.full((bar_rows, w), value, np.uint8)
    if text:
        rng = np.random.default_rng(0)
        for x0 in range(8, w - 8, 20):
            y0 = bar_rows // 3
            bar[y0 : y0 + bar_rows // 3, x0 : x0 + 8] = np.where(rng.random((1, 8)) > 0.4, 255, 0)
    return np.concatenate([image, bar])


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.parametrize("stem", sorted(ZEISS_PIXEL_NM))
def test_zeiss_tiff_grey_pixel_size_and_bar(stem, tmp_path):
    folder = shared_data("zeiss-shale-pores")
    image = read_sample(folder / "images" / f"{stem}.tif")
    assert isinstance(image, Sample)
    # grey palette applied: 2-D uint8 grey, not palette indices
    assert image.pixels.dtype == np.uint8
    shape = image.pixels.shape
    assert shape == (768, 1024) or (is_crop(folder) and shape[0] == 768), shape
    assert not image.rgb
    assert image.pixel_size_nm == pytest.approx(ZEISS_PIXEL_NM[stem])
    assert image.metadata["vendor"] == "zeiss"
    assert image.data_bar_row == ZEISS_BAR_ROW
    assert image.content().shape == (ZEISS_BAR_ROW, shape[1])
    # the bar starts with a black line and is flat white below it
    assert (image.pixels[ZEISS_BAR_ROW] == 0).mean() > 0.99
    assert (image.pixels[ZEISS_BAR_ROW + 5] == 255).mean() > 0.99
    # everything from the bar down is unlabelled in the hand-made labels
    labels = read_labels(folder / "labels" / f"{stem}.png")
    assert labels.shape == image.pixels.shape
    assert (labels[ZEISS_BAR_ROW:] == 255).all()
    # the heuristic survives saving as JPEG (no metadata, blurred separator line)
    Image.fromarray(image.pixels).save(tmp_path / f"{stem}.jpg", quality=75)
    jpeg = read_sample(tmp_path / f"{stem}.jpg")
    assert jpeg.pixel_size_nm is None and jpeg.data_bar_row == ZEISS_BAR_ROW
    assert detect_data_bar(image.pixels[:ZEISS_BAR_ROW]) is None  # cropped: no bar


def test_duvernay_lzw_tiles_read_without_bar():
    folder = shared_data("duvernay-grains")
    paths = sorted((folder / "images").glob("*.tif"))
    assert len(paths) >= (2 if is_crop(folder) else 10)
    for path in paths:
        image = read_sample(path)
        assert image.pixels.shape == (256, 256) and image.pixels.dtype == np.uint8, path
        assert image.pixels.std() > 5, path
        assert image.data_bar_row is None, path
        assert image.pixel_size_nm is None, path
        labels = read_labels(folder / "labels" / f"{path.stem}.png")
        assert labels.shape == (256, 256) and set(np.unique(labels)) <= {0, 1, 255}


# ---------------------------------------------------------------------------------------------
# Data-bar detection


@pytest.mark.parametrize("style", [None, SHIFTED])
@pytest.mark.parametrize("shape", [(64, 64), (256, 256), (300, 500)])
def test_no_bar_on_synthetic_images(shape, style):
    for seed in range(4):
        image, _ = make_sample(shape, seed=seed, style=style)
        assert detect_data_bar(image) is None


def test_no_bar_on_flat_or_tiny_images():
    assert detect_data_bar(np.zeros((200, 200), np.uint8)) is None
    assert detect_data_bar(np.full((200, 200), 0.5, np.float32)) is None
    assert detect_data_bar(np.zeros((4, 4), np.uint8)) is None
    # a clipped black region at the bottom with a soft, ragged top edge is not a bar
    image, _ = make_sample((256, 256), seed=0)
    image = image.copy()
    rows = np.arange(256)[:, None] + np.random.default_rng(1).integers(-12, 12, (1, 256))
    image[rows > 215] = 0
    assert detect_data_bar(image) is None


@pytest.mark.parametrize("value", [0, 243])
@pytest.mark.parametrize("bar_rows", [10, 30, 60])
def test_bar_found_by_row_statistics(value, bar_rows):
    image, _ = make_sample((200, 256), seed=2)
    with_bar = _with_bar(image, bar_rows, value)
    assert detect_data_bar(with_bar) == 200
    # same answer for other dtypes and colour
    assert detect_data_bar(with_bar.astype(np.uint16) * 257) == 200
    assert detect_data_bar(with_bar.astype(np.float32) / 255) == 200
    assert detect_data_bar(np.stack([with_bar] * 3, axis=-1)) == 200
    assert detect_data_bar(np.stack([with_bar] * 2)) == 200  # stack: first plane


def test_bar_with_a_stray_last_row_and_implausible_heights():
    image, _ = make_sample((200, 256), seed=3)
    with_bar = _with_bar(image, 30)
    with_bar[-1] = image[0]  # a last row of image content below the bar (as in Zeiss files)
    assert detect_data_bar(with_bar) == 200
    assert detect_data_bar(_with_bar(image, 2)) is None  # < 2% of the height
    assert detect_data_bar(_with_bar(image, 150)) is None  # > 30% of the height


def test_scan_rows_from_metadata_win():
    image, _ = make_sample((128, 128), seed=0)
    assert detect_data_bar(image, scan_rows=100) == 100
    assert detect_data_bar(image, scan_rows=128) is None  # no rows beyond the scan
    assert detect_data_bar(_with_bar(image, 20), scan_rows=0) == 128  # unusable -> heuristic


# ---------------------------------------------------------------------------------------------
# Pixel size metadata


@pytest.mark.parametrize(
    ("value", "unit", "nm"),
    [(13.96, "nm", 13.96), (500, "pm", 0.5), (1.5, "µm", 1500), (1.5, "μm", 1500),
     (2, "um", 2000), (3e-9, "m", 3.0), (0, "nm", None), (1, "parsec", None), ("x", "nm", None)],
)  # fmt: skip
def test_length_to_nm(value, unit, nm):
    result = length_to_nm(value, unit)
    assert result == pytest.approx(nm) if nm is not None else result is None


@pytest.mark.parametrize("tag", [34682, 34680])  # FEI_HELIOS, FEI_SFEG
def test_fei_metadata_gives_pixel_size_and_bar(tmp_path, tag):
    image, _ = make_sample((200, 256), seed=4)
    data = _with_bar(image, 30, text=False)
    data[200:] = 17  # no sharp black bar: only the metadata can tell
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, data, extratags=[(tag, "s", 0, _fei_ini(2.5e-9, 200), True)])
    result = read_sample(path)
    assert result.metadata["vendor"] == "fei"
    assert result.pixel_size_nm == pytest.approx(2.5)
    assert result.data_bar_row == 200
    np.testing.assert_array_equal(result.pixels, data)


def test_fei_escan_without_image_section(tmp_path):
    image, _ = make_sample((128, 160), seed=5)
    path = tmp_path / "escan.tif"
    ini = _fei_ini(4e-10, rows=None, section="EScan")
    tifffile.imwrite(path, image, extratags=[(34682, "s", 0, ini, True)])
    result = read_sample(path)
    assert result.pixel_size_nm == pytest.approx(0.4)
    assert result.data_bar_row is None


def test_imagej_calibration_gives_pixel_size(tmp_path):
    path = tmp_path / "ij.tif"
    data = make_sample((64, 64), seed=0)[0]
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.02, 1 / 0.02),
                     metadata={"unit": "um"})  # fmt: skip
    assert read_sample(path).pixel_size_nm == pytest.approx(20.0)


# ---------------------------------------------------------------------------------------------
# Formats


def test_png_jpeg_bmp_grey(tmp_path):
    data = make_sample((96, 128), seed=6)[0]
    for name in ("a.png", "a.bmp"):
        Image.fromarray(data).save(tmp_path / name)
        result = read_sample(tmp_path / name)
        np.testing.assert_array_equal(result.pixels, data)
        assert result.pixel_size_nm is None and result.data_bar_row is None
    Image.fromarray(data).save(tmp_path / "a.jpg", quality=95)
    jpeg = read_sample(tmp_path / "a.jpg").pixels
    assert jpeg.shape == data.shape and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - data).mean() < 4


def test_rgb_and_rgba_stay_colour(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    rgba = rng.integers(0, 255, (40, 50, 4), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    for name, expected in [("rgb.png", rgb), ("rgba.png", rgba), ("rgb.tif", rgb)]:
        result = read_sample(tmp_path / name)
        assert result.rgb, name
        np.testing.assert_array_equal(result.pixels, expected)


def test_sixteen_bit_float_and_stack_keep_dtype(tmp_path):
    rng = np.random.default_rng(1)
    u16 = rng.integers(0, 65535, (48, 64), dtype=np.uint16)
    f32 = rng.random((48, 64), dtype=np.float32)
    stack = rng.integers(0, 255, (3, 48, 64), dtype=np.uint8)
    Image.fromarray(u16).save(tmp_path / "u16.png")
    tifffile.imwrite(tmp_path / "u16.tif", u16)
    tifffile.imwrite(tmp_path / "f32.tif", f32)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    for name, expected in [("u16.png", u16), ("u16.tif", u16), ("f32.tif", f32)]:
        result = read_sample(tmp_path / name)
        assert result.pixels.dtype == expected.dtype, name
        np.testing.assert_array_equal(result.pixels, expected)
    result = read_sample(tmp_path / "stack.tif")
    assert result.pixels.shape == (3, 48, 64) and not result.rgb
    np.testing.assert_array_equal(result.pixels, stack)


def test_palettes(tmp_path):
    idx = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 256
    idx = idx.astype(np.uint8)
    grey = np.tile((np.arange(256) * 257).astype(np.uint16), (3, 1))
    grey_inverted = grey[:, ::-1].copy()
    colour = np.stack([grey[0], grey[0][::-1], np.full(256, 1000, np.uint16)])
    tifffile.imwrite(tmp_path / "grey.tif", idx, photometric="palette", colormap=grey_inverted)
    tifffile.imwrite(tmp_path / "colour.tif", idx, photometric="palette", colormap=colour)
    result = read_sample(tmp_path / "grey.tif")
    assert not result.rgb
    np.testing.assert_array_equal(result.pixels, 255 - idx)
    result = read_sample(tmp_path / "colour.tif")
    assert result.rgb and result.pixels.shape == (64, 64, 3)
    np.testing.assert_array_equal(result.pixels[..., 1], 255 - idx)
    # a grey palette with a rarely used colour entry (Zeiss logo) stays grey
    cmap = grey.copy()
    cmap[:, 18] = (0, 65535, 0)
    few = np.full((100, 100), 50, np.uint8)
    few[0, :5] = 18
    data, is_rgb = apply_palette(few, cmap)
    assert not is_rgb and data.shape == (100, 100) and data[0, 0] == 150 and data[50, 50] == 50
    # a grey palette PNG gives grey pixels, not indices
    png = Image.fromarray(idx, mode="P")
    png.putpalette(np.repeat(255 - np.arange(256, dtype=np.uint8), 3).tobytes())
    png.save(tmp_path / "grey_palette.png")
    result = read_sample(tmp_path / "grey_palette.png")
    assert not result.rgb
    np.testing.assert_array_equal(result.pixels, 255 - idx)


# ---------------------------------------------------------------------------------------------
# Errors


def test_missing_corrupt_and_unsupported_files(tmp_path):
    missing = tmp_path / "nothing_here.tif"
    with pytest.raises(ImageReadError, match="nothing_here.tif.*does not exist"):
        read_sample(missing)
    for name in ("broken.tif", "broken.png", "broken.jpg"):
        (tmp_path / name).write_bytes(b"this is not an image at all" * 10)
        with pytest.raises(ImageReadError, match=name) as info:
            read_sample(tmp_path / name)
        assert "\n" not in str(info.value) and str(info.value).endswith(".")
    truncated = tmp_path / "truncated.tif"
    tifffile.imwrite(truncated, make_sample((64, 64), seed=0)[0])
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ImageReadError, match="truncated.tif"):
        read_sample(truncated)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="notes.txt.*unsupported file type"):
        read_sample(tmp_path / "notes.txt")
    (tmp_path / "folder.tif").mkdir()
    with pytest.raises(ImageReadError, match="folder.tif.*not a file"):
        read_sample(tmp_path / "folder.tif")
    assert issubclass(ImageReadError, ValueError)


# ---------------------------------------------------------------------------------------------
# Label maps


def test_write_labels_round_trip(tmp_path):
    _, labels = make_sample((80, 96), seed=7)
    labels = labels.copy()
    labels[:5] = 255
    path = write_labels(tmp_path / "sub" / "labels.png", labels)
    assert path.exists()
    with Image.open(path) as img:
        assert img.mode == "L"
    back = read_labels(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    # overwrite is atomic and leaves no temporary files
    write_labels(path, np.zeros_like(labels))
    assert read_labels(path).max() == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["labels.png"]
    write_labels(tmp_path / "from_int64.png", labels.astype(np.int64))
    np.testing.assert_array_equal(read_labels(tmp_path / "from_int64.png"), labels)


def test_write_labels_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="png"):
        write_labels(tmp_path / "labels.jpg", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="shape|array"):
        write_labels(tmp_path / "labels.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="integers"):
        write_labels(tmp_path / "labels.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="0-255"):
        write_labels(tmp_path / "labels.png", np.full((4, 4), 300, np.int32))
    assert not (tmp_path / "labels.png").exists()


def test_read_labels_formats_and_refusals(tmp_path):
    labels = (np.arange(30 * 40).reshape(30, 40) % 3).astype(np.uint8)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    np.testing.assert_array_equal(read_labels(tmp_path / "labels.tif"), labels)
    tifffile.imwrite(tmp_path / "labels16.tif", labels.astype(np.uint16))
    np.testing.assert_array_equal(read_labels(tmp_path / "labels16.tif"), labels)
    # palette PNG label maps give their indices, not colours
    pal = Image.fromarray(labels, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    pal.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "palette.png"), labels)

    Image.fromarray(np.stack([labels, labels * 2, labels], -1)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError, match="rgb.png.*single-channel"):
        read_labels(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "float.tif", labels.astype(np.float32))
    with pytest.raises(ImageReadError, match="float.tif.*integers"):
        read_labels(tmp_path / "float.tif")
    tifffile.imwrite(tmp_path / "big.tif", labels.astype(np.uint16) * 200)
    with pytest.raises(ImageReadError, match="big.tif.*0-255"):
        read_labels(tmp_path / "big.tif")
    Image.fromarray(labels).save(tmp_path / "lossy.jpg")
    with pytest.raises(ImageReadError, match="lossy.jpg.*lossless"):
        read_labels(tmp_path / "lossy.jpg")
    with pytest.raises(ImageReadError, match="gone.png.*does not exist"):
        read_labels(tmp_path / "gone.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_labels(tmp_path / "broken.png")


def test_miniswhite_tiff_becomes_ordinary_grey(tmp_path):
    data = make_sample((64, 64), seed=8)[0]
    tifffile.imwrite(tmp_path / "mw.tif", data, photometric="miniswhite")
    np.testing.assert_array_equal(read_sample(tmp_path / "mw.tif").pixels, 255 - data)
