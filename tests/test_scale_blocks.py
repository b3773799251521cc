"""One image split into blocks over dask workers: the labels of one process, bad blocks named."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from napari_poregrain.cli import predict as predict_cli  # noqa: E402
from napari_poregrain.cli._cluster import run_on_cluster  # noqa: E402
from napari_poregrain.inference.predict import predict  # noqa: E402
from napari_poregrain.io.lazy import read_lazy  # noqa: E402
from napari_poregrain.model import load_checkpoint  # noqa: E402
from napari_poregrain.scale.batch import (  # noqa: E402
    PredictOptions,
    SplitOptions,
    open_client,
    run_batch,
)
from napari_poregrain.scale.blocks import check_block, plan_blocks  # noqa: E402
from napari_poregrain.synthetic import make_sample  # noqa: E402

OPTIONS = PredictOptions(tile=256, device="cpu", precision="fp32")
SAME_AT_LEAST = 0.999


@pytest.fixture(scope="module")
def scheduler():
    """The address of a 2-worker LocalCluster shared by this module's tests (one start-up)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_blocks_cover_the_image_once_aligned_to_the_zarr_chunks():
    blocks = plan_blocks((1300, 1100), 512)
    seen = np.zeros((1300, 1100), np.int64)
    for b in blocks:
        assert b.y0 % 512 == 0 and b.x0 % 512 == 0
        seen[b.y0 : b.y1, b.x0 : b.x1] += 1
    assert len(blocks) == 9 and (seen == 1).all()
    for bad in (256, 700, 0):
        with pytest.raises(ValueError, match="multiple of 512"):
            check_block(bad)


@pytest.mark.slow
def test_two_workers_split_one_image_like_one_process(scheduler, tiny_checkpoint, tmp_path):
    image, _ = make_sample((768, 1024), seed=5)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib")
    model = load_checkpoint(tiny_checkpoint)
    expected = predict(read_lazy(path), model, **OPTIONS.keywords()).labels
    tif, ome = tmp_path / "tif", tmp_path / "zarr"
    split = SplitOptions(above=0, block=512)  # 4 blocks (+ the tiles that reach into them)
    with open_client(scheduler) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        for folder, suffix in ((tif, ".tif"), (ome, ".ome.zarr")):
            out = [folder / f"big{suffix}"]
            report = run_batch(client, [path], folder, tiny_checkpoint, OPTIONS, outputs=out,
                               split=split)  # fmt: skip
            assert report.ok and report.done == {path: out[0]}
    got = tifffile.imread(tif / "big.tif")
    same = float((got == expected).mean())
    print(f"block-split vs one process: {same:.5%} identical pixels")
    assert same >= SAME_AT_LEAST
    labels = zarr.open_array(ome / "big.ome.zarr" / "labels" / "classes" / "0", mode="r")
    np.testing.assert_array_equal(labels[:], got)
    np.testing.assert_array_equal(np.asarray(read_lazy(ome / "big.ome.zarr").pixels), image)
    assert not _leftovers(tif) and not _leftovers(ome)


@pytest.mark.slow
def test_small_files_stream_to_tiff_one_task_each(scheduler, tiny_checkpoint, tmp_path, capsys):
    image, _ = make_sample((96, 160), seed=7)
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, image)
    expected = predict(image, load_checkpoint(tiny_checkpoint), **OPTIONS.keywords()).labels
    out = tmp_path / "out"
    p = argparse.ArgumentParser()
    predict_cli.add_arguments(p)
    args = p.parse_args(
        f"{path} --out {out} --model {tiny_checkpoint} --tile 256 --device cpu --precision fp32 "
        f"--format tiff --cluster {scheduler}".split()
    )
    assert run_on_cluster(args, predict_cli.plan(args)) == 0  # once refused: "--cluster PNG only"
    np.testing.assert_array_equal(tifffile.imread(out / "small.tif"), expected)
    assert not _leftovers(out)


def _corrupt_strip(path, row):
    """Overwrite the compressed bytes of one strip (one row) of a TIFF on disk."""
    with tifffile.TiffFile(path) as tf:
        page = tf.pages.first
        offset, count = page.dataoffsets[row], page.databytecounts[row]
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * count)


@pytest.mark.slow
def test_a_block_that_cannot_be_read_is_named_and_nothing_is_written(
    scheduler, tiny_checkpoint, tmp_path, capsys
):
    # 8448 x 512 pixels (> 4 Mpx): the client's intensity range reads every other row only, so
    # the corrupt odd row 1537 is first read by the worker of block rows 1024-2048, the only
    # block whose window (its tiles of 256 + 16 px) reaches that row
    image, _ = make_sample((8448, 512), seed=6)
    path = tmp_path / "tall.tif"
    tifffile.imwrite(path, image, rowsperstrip=1, compression="zlib")
    _corrupt_strip(path, 1537)
    out = tmp_path / "out"
    p = argparse.ArgumentParser()
    predict_cli.add_arguments(p)
    argv = f"{path} --out {out} --model {tiny_checkpoint} --tile 256 --device cpu --format tiff"
    argv += f" --cluster {scheduler} --split blocks --block 1024"
    args = p.parse_args(argv.split())
    assert run_on_cluster(args, predict_cli.plan(args)) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "poregrain" in line]
    assert len(err) == 1
    assert str(path) in err[0] and "block rows 1024-2048, columns 0-512" in err[0]
    assert "other blocks" not in err[0]  # the 8 other blocks were predicted
    assert not (out / "tall.tif").exists() and not _leftovers(out)
