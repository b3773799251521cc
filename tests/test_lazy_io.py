"""Lazy reading (TIFF via tifffile's zarr store, OME-Zarr via zarr) and streamed writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
import zarr

from napari_poregrain.io import ImageReadError, read_sample
from napari_poregrain.io.databar import detect_data_bar
from napari_poregrain.io.lazy import open_sample, read_lazy
from napari_poregrain.io.writers import (
    LabelWriterError,
    OmeZarrLabelWriter,
    TiffLabelWriter,
    open_label_writer,
)
from napari_poregrain.synthetic import make_sample


class RowCountingArray:
    """A read-only array that records which rows were read (what a lazy store would fetch)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.rows_read = data, set()
        self.shape, self.ndim, self.dtype = data.shape, data.ndim, data.dtype

    def __getitem__(self, key):
        rows = key[0] if isinstance(key, tuple) else key
        self.rows_read.update(range(*rows.indices(self.shape[0])))
        return self.data[key]


def _with_bar(height: int = 1200, width: int = 900, bar: int = 100) -> np.ndarray:
    grey, _ = make_sample((height, width), seed=1)
    grey[height - bar] = 0
    grey[height - bar + 1 :] = 40
    grey[height - bar + 30 : height - bar + 40, 100:400] = 250  # text in the bar
    return grey


def test_tiled_and_striped_tiffs_are_read_lazily(tmp_path):
    image = _with_bar()
    for kind, options in {"tiled": {"tile": (256, 256)}, "strips": {"rowsperstrip": 64}}.items():
        path = tmp_path / f"{kind}.tif"
        tifffile.imwrite(path, image, compression="zlib", **options)
        sample = read_lazy(path)
        assert isinstance(sample.pixels, zarr.Array)  # not a NumPy copy
        assert sample.metadata["lazy"] and sample.shape == image.shape
        np.testing.assert_array_equal(sample.pixels[300:700, 10:500], image[300:700, 10:500])
        eager = read_sample(path)
        assert sample.data_bar_row == eager.data_bar_row == 1100
        assert sample.pixel_size_nm == eager.pixel_size_nm
        assert isinstance(open_sample(path, lazy=False).pixels, np.ndarray)
        assert isinstance(open_sample(path).pixels, zarr.Array)


def test_data_bar_reads_a_bounded_band_of_rows_and_keeps_its_answers():
    image = _with_bar(4000, 512, bar=300)
    counting = RowCountingArray(image)
    assert detect_data_bar(counting) == detect_data_bar(image) == 3700
    assert len(counting.rows_read) < 0.5 * image.shape[0]  # old code: np.asarray of every row
    for variant in (image.astype(np.uint16) * 257, image.astype(np.float32) / 255):
        assert detect_data_bar(RowCountingArray(variant)) == 3700
    plain, _ = make_sample((4000, 512), seed=2)
    counting = RowCountingArray(plain)
    assert detect_data_bar(counting) is None
    assert len(counting.rows_read) < 0.1 * plain.shape[0]


def _ome_zarr(path, levels, unit="micrometer", size=0.005):
    root = zarr.open_group(path, mode="w", zarr_format=2)
    datasets = []
    for i, level in enumerate(levels):
        root.create_array(str(i), data=level, chunks=(1, 128, 128))
        scale = [1.0, size * 2**i, size * 2**i]
        datasets.append(
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    axes = [{"name": "c", "type": "channel"}]
    axes += [{"name": a, "type": "space", "unit": unit} for a in ("y", "x")]
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]


def test_ome_zarr_gives_its_highest_resolution_level_and_pixel_size(tmp_path):
    image = _with_bar(512, 640, bar=40)
    _ome_zarr(tmp_path / "img.ome.zarr", [image[None], image[None, ::2, ::2]])
    sample = read_lazy(tmp_path / "img.ome.zarr")
    assert sample.shape == (512, 640) and sample.name == "img"
    assert sample.pixel_size_nm == pytest.approx(5.0)  # 0.005 micrometer
    assert sample.data_bar_row == 472
    np.testing.assert_array_equal(np.asarray(sample.pixels[100:200]), image[100:200])


def test_bad_lazy_inputs_say_what_is_wrong(tmp_path):
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(ImageReadError, match="holds no image"):
        read_lazy(tmp_path / "empty.zarr")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_lazy(tmp_path / "missing.tif")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ImageReadError, match="only TIFF files and OME-Zarr"):
        read_lazy(tmp_path / "a.png")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ImageReadError, match="bad.tif"):
        read_lazy(tmp_path / "bad.tif")


def _blocks(labels: np.ndarray, step: tuple[int, int]):
    """Blocks as blend_tiles makes them: bands top to bottom, right to left inside a band."""
    for y in range(0, labels.shape[0], step[0]):
        for x in reversed(range(0, labels.shape[1], step[1])):
            yield y, x, labels[y : y + step[0], x : x + step[1]]


def test_tiff_writer_streams_blocks_into_a_tiled_compressed_tiff(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (700, 1000), dtype=np.uint8)
    labels[650:] = 0  # rows below a data bar are never written
    with TiffLabelWriter(tmp_path / "out.tif", labels.shape, pixel_size_nm=4.0) as writer:
        for y, x, block in _blocks(labels[:650], (300, 330)):
            writer.write(y, x, block)
        assert len(writer.band) < 600  # only unfinished rows are held
    with tifffile.TiffFile(tmp_path / "out.tif") as tf:
        page = tf.pages.first
        assert page.is_tiled and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        np.testing.assert_array_equal(page.asarray(), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_a_failed_write_removes_the_partial_output_and_keeps_the_old_file(tmp_path):
    for suffix in (".tif", ".zarr"):
        target = tmp_path / f"old{suffix}"
        target.write_bytes(b"previous") if suffix == ".tif" else target.mkdir()
        with pytest.raises(RuntimeError, match="cancelled"):
            with open_label_writer(target, (600, 600)) as writer:
                writer.write(0, 0, np.ones((300, 600), np.uint8))
                raise RuntimeError("cancelled")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in tmp_path.iterdir() if not p.name.startswith(".")
        )
    assert (tmp_path / "old.tif").read_bytes() == b"previous"


def test_a_full_disk_is_reported_with_the_path_and_leaves_nothing(tmp_path):
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        from napari_poregrain.io.writers import TiffLabelWriter, LabelWriterError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # a disk that fills
        labels = np.random.default_rng(0).integers(0, 255, (2048, 2048), dtype=np.uint8)
        try:
            with TiffLabelWriter({str(tmp_path / "big.tif")!r}, labels.shape) as w:
                for y in range(0, 2048, 256):
                    w.write(y, 0, labels[y : y + 256])
        except LabelWriterError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 3, run.stderr
    assert "Cannot write" in run.stdout and "big.tif" in run.stdout
    assert list(tmp_path.iterdir()) == []
    assert issubclass(LabelWriterError, OSError)


def test_ome_zarr_writer_lays_out_image_labels_pyramid_and_colours(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    image = _with_bar(1100, 700, bar=60)
    labels = np.random.default_rng(1).integers(0, 3, image.shape, dtype=np.uint8)
    with OmeZarrLabelWriter(tmp_path / "out.ome.zarr", image.shape, 5.0, image) as writer:
        for y, x, block in _blocks(labels, (256, 300)):
            writer.write(y, x, block)
    nodes = list(Reader(parse_url(str(tmp_path / "out.ome.zarr")))())
    images = [n for n in nodes if n.load(Multiscales) and not n.load(Label)]
    label = next(n for n in nodes if n.load(Label))
    assert [d.shape for d in images[0].data] == [(1100, 700), (550, 350), (275, 175)]
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels)
    np.testing.assert_array_equal(np.asarray(label.data[1]), labels[::2, ::2])
    assert label.metadata["color"] == {1: [1.0, 0.0, 0.0, 1.0], 2: [0.0, 1.0, 0.0, 1.0]}
    assert read_lazy(tmp_path / "out.ome.zarr").pixel_size_nm == pytest.approx(5.0)
