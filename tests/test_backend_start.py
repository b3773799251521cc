"""A quick start: ``--help`` imports no torch, and a checkpoint whose export is cached runs on
ONNX Runtime without its torch network being built."""

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_poregrain.inference import onnx
from napari_poregrain.inference.backend import OnnxModel, cached_model
from napari_poregrain.inference.predict import predict
from napari_poregrain.synthetic import make_sample

HEAVY = ("torch", "segmentation_models_pytorch", "onnxruntime", "napari")


@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_command_help_imports_no_torch(command):
    code = (
        "import sys\nfrom napari_poregrain.cli import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_a_remembered_checkpoint_runs_without_its_torch_network(
    tiny_model, tiny_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv(onnx.CACHE_ENV, str(tmp_path / "cache"))
    image, _ = make_sample((120, 150), seed=2)
    assert cached_model(tiny_checkpoint) is None  # nothing exported yet
    ref = predict(image, tiny_model, tile=64).labels  # exports
    assert cached_model(tiny_checkpoint) is None  # exported, but not yet tied to the file
    onnx.remember_file(tiny_checkpoint, tiny_model.net)
    fast = cached_model(tiny_checkpoint)
    assert isinstance(fast, OnnxModel) and fast.meta.normalization == tiny_model.meta.normalization
    assert np.array_equal(predict(image, fast, tile=64).labels, ref)
    assert cached_model(tiny_checkpoint, backend="torch") is None
    with pytest.raises(ValueError, match="onnxruntime only"):
        predict(image, fast, backend="torch")
    tiny_checkpoint.write_bytes(tiny_checkpoint.read_bytes() + b" ")  # another file now
    assert cached_model(tiny_checkpoint) is None


@pytest.mark.slow
def test_the_cli_starts_from_the_cached_export_on_its_second_run(tiny_checkpoint, tmp_path):
    from napari_poregrain.io.images import write_labels

    image = tmp_path / "small.png"
    write_labels(image, make_sample((100, 120), seed=4)[0])
    env = {"NAPARI_POREGRAIN_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        "import sys\nfrom napari_poregrain.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('HEAVY:' + ','.join(m for m in ('segmentation_models_pytorch',) "
        "if m in sys.modules))\nsys.exit(code)"
    )
    runs = []
    for out in ("a", "b"):
        cmd = [sys.executable, "-c", code, "predict", str(image), "--out", str(tmp_path / out),
               "--model", str(tiny_checkpoint)]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
        assert run.returncode == 0, run.stderr
        runs.append(run.stdout.strip().splitlines()[-1])
    assert runs == ["HEAVY:segmentation_models_pytorch", "HEAVY:"]
    a, b = ((tmp_path / d / "small.png").read_bytes() for d in "ab")
    assert a == b
