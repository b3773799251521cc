"""The same input gives the same labels whatever the layout: threads, batch, block split.

With the default backend and precision (ONNX Runtime fp32 on the CPU). Before it, the default
on CPUs with native bf16 was torch bf16 autocast, whose kernels change with the thread count.
"""

import numpy as np
import pytest
import torch

from napari_poregrain.inference.onnx import onnx_net
from napari_poregrain.inference.predict import predict
from napari_poregrain.io.images import read_sample
from napari_poregrain.model import load_checkpoint, resolve_model
from napari_poregrain.synthetic import make_sample


class Threads:
    """``with Threads(n):`` torch (and so ONNX Runtime) on ``n`` threads, put back after."""

    def __init__(self, n: int) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(resolve_model("default"))


def test_onnx_logits_are_bit_identical_across_threads_and_batch(tiny_model):
    image, _ = make_sample((96, 128), seed=3)
    x = torch.from_numpy(image.astype(np.float32) / 64 - 2).expand(3, 1, 96, 128)
    x = x + torch.linspace(0, 0.3, 3)[:, None, None, None]  # three different tiles
    with Threads(1):
        one = torch.cat([onnx_net(tiny_model.net.eval())(t[None]) for t in x])
    with Threads(2):
        batched = onnx_net(tiny_model.net)(x)
    assert torch.equal(one, batched)


@pytest.mark.slow
def test_default_labels_do_not_depend_on_threads_or_batch(shipped, real_data):
    sample = read_sample(real_data("zeiss-shale-pores") / "images" / "train_4.tif")
    runs = []
    for threads, batch in ((1, 1), (2, 3), (2, 1)):
        with Threads(threads):
            runs.append(predict(sample, shipped, tile=256, batch_size=batch).labels)
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


@pytest.mark.slow
def test_blocks_give_the_labels_of_one_process(shipped, real_data, tmp_path):
    zarr = pytest.importorskip("zarr")
    from napari_poregrain.preprocess import intensity_range
    from napari_poregrain.scale.batch import PredictOptions
    from napari_poregrain.scale.blocks import plan_blocks, predict_block

    path = real_data("zeiss-shale-pores") / "images" / "train_4.tif"
    sample = read_sample(path)
    whole = predict(sample, shipped, tile=256).labels[: sample.rows]
    shape = (sample.rows, sample.width)
    store = str(tmp_path / "labels.zarr")
    zarr.open_array(store, mode="w", shape=shape, chunks=(512, 512), dtype="u1", fill_value=0)
    intensity = intensity_range(sample.content(), shipped.meta.normalization)
    options = PredictOptions(tile=256)
    for block in plan_blocks(shape, 512):
        model = str(resolve_model("default"))
        assert predict_block(str(path), store, block, shape, model, options, intensity) is None
    assert np.array_equal(np.asarray(zarr.open_array(store, mode="r")), whole)


@pytest.mark.slow
def test_two_cluster_workers_give_the_one_process_labels(shipped, real_data, tmp_path):
    pytest.importorskip("distributed")
    from PIL import Image

    from napari_poregrain.scale.batch import PredictOptions, open_client, run_batch

    images = sorted((real_data("zeiss-shale-pores") / "images").glob("*.tif"))[:2]
    out = tmp_path / "out"
    with open_client("local:2") as client:  # workers of one thread each
        report = run_batch(client, images, out, resolve_model("default"), PredictOptions(tile=256))
    assert report.ok
    for path in images:
        one = predict(read_sample(path), shipped, tile=256).labels
        assert np.array_equal(np.asarray(Image.open(out / f"{path.stem}.png")), one)
