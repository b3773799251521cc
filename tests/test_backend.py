"""The ONNX Runtime backend: choice rules, the export cache and its labels against torch fp32."""

import numpy as np
import pytest
import torch

from napari_poregrain.inference import onnx
from napari_poregrain.inference.backend import Backend, available_backends, resolve_backend
from napari_poregrain.inference.predict import predict
from napari_poregrain.io.images import read_sample
from napari_poregrain.model import load_checkpoint, resolve_model
from napari_poregrain.synthetic import make_sample


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(resolve_model("default"))


def test_auto_is_exact_fp32_on_the_cpu_and_torch_elsewhere():
    assert "onnxruntime" in available_backends()
    assert resolve_backend("auto", "cpu", "auto") == Backend("onnxruntime", torch.float32, True)
    assert resolve_backend("torch", "cpu", "auto") == Backend("torch", torch.float32)
    assert resolve_backend("auto", "cpu", "bf16") == Backend("torch", torch.bfloat16)
    assert resolve_backend("onnxruntime", "cpu", "fp32").describe() == "onnxruntime fp32"
    assert resolve_backend("auto", "cuda", "fp16") == Backend("torch", torch.float16)


@pytest.mark.parametrize(
    "args,words",
    [
        (("tensorrt", "cpu", "auto"), "backend must be one of"),
        (("onnxruntime", "cpu", "bf16"), "runs fp32, not bf16"),
        (("onnxruntime", "cuda", "auto"), "runs on the CPU, not on cuda"),
        (("auto", "cpu", "fp8"), "precision must be one of"),
    ],
)
def test_impossible_choices_are_one_sentence(args, words):
    with pytest.raises(ValueError, match=words):
        resolve_backend(*args)


@pytest.mark.slow
def test_onnxruntime_labels_equal_torch_fp32_on_a_real_image(shipped, real_data):
    sample = read_sample(real_data("zeiss-shale-pores") / "images" / "train_4.tif")
    ort = predict(sample, shipped, backend="onnxruntime", tile=256).labels
    ref = predict(sample, shipped, backend="torch", precision="fp32", tile=256).labels
    assert np.array_equal(ort, ref)
    assert onnx.onnx_net(shipped.net).exact


def _cached(net) -> list:
    key = onnx.network_key(net)
    return [p for p in onnx.cache_dir().glob("*.onnx") if p.stem == key]


def test_the_export_is_cached_by_key_and_a_bad_file_is_rebuilt(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv(onnx.CACHE_ENV, str(tmp_path))
    net = tiny_model.net.eval()
    x = torch.from_numpy(make_sample((64, 96), seed=1)[0].astype(np.float32) / 255)[None, None]
    first = onnx._Cache().get(net, 1)
    (path,) = _cached(net)
    assert path.parent == tmp_path / "onnx" and first.exact
    inode = path.stat().st_ino
    again = onnx._Cache().get(net, 2)  # a fresh process: loaded, not exported (same file)
    assert path.stat().st_ino == inode
    assert torch.equal(first(x), again(x))
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    rebuilt = onnx._Cache().get(net, 1)
    assert torch.equal(rebuilt(x), first(x)) and path.stat().st_size > 100_000
    _write_foreign(path)
    assert onnx._load(path, path.stem, 1) is None  # holds another key: never used
    assert torch.equal(onnx._Cache().get(net, 1)(x), first(x))
    assert onnx._load(path, path.stem, 1) is not None


def _write_foreign(path):
    import onnx as onnx_lib

    model = onnx_lib.load(str(path))
    for prop in model.metadata_props:
        if prop.key == onnx.KEY_PROP:
            prop.value = "0" * 64
    path.write_bytes(model.SerializeToString())


def test_weights_changed_in_place_get_their_own_export(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv(onnx.CACHE_ENV, str(tmp_path))
    net = tiny_model.net.eval()
    cache = onnx._Cache()
    before = cache.key(net)
    with torch.no_grad():
        net.segmentation_head[0].bias.add_(1.0)
    after = cache.key(net)
    assert after != before and after == onnx.network_key(net)


@pytest.mark.slow
def test_cli_refuses_an_onnxruntime_bf16_run_before_any_compute(tiny_checkpoint, tmp_path):
    import subprocess
    import sys

    image = tmp_path / "a.png"
    from napari_poregrain.io.images import write_labels

    write_labels(image, make_sample((64, 64))[0])
    cmd = [sys.executable, "-m", "napari_poregrain.cli", "predict", str(image), "--out",
           str(tmp_path / "o"), "--model", str(tiny_checkpoint), "--backend", "onnxruntime",
           "--precision", "bf16"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].endswith("runs fp32, not bf16")
    assert not (tmp_path / "o" / "a.png").exists()


def test_a_network_onnx_cannot_hold_runs_on_torch_under_auto(tiny_model):
    from dataclasses import replace

    from napari_poregrain.inference.scales import ScaleAveraged

    image, _ = make_sample((96, 128), seed=1)
    model = replace(tiny_model, net=ScaleAveraged(tiny_model.net, (1.0, 0.5)))
    ref = predict(image, model, tile=64, backend="torch").labels
    assert np.array_equal(predict(image, model, tile=64).labels, ref)
    with pytest.raises(ValueError, match="cannot be exported to ONNX"):
        predict(image, model, tile=64, backend="onnxruntime")


def test_the_cache_keeps_the_most_recently_used_exports(tmp_path):
    import os

    for i in range(onnx.KEEP + 3):
        f = tmp_path / f"{i:064x}.onnx"
        f.write_bytes(b"x")
        os.utime(f, (1000 + i, 1000 + i))
    onnx.prune(tmp_path)
    left = sorted(int(p.stem, 16) for p in tmp_path.glob("*.onnx"))
    assert left == list(range(3, onnx.KEEP + 3))
