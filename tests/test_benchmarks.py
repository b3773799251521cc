"""Smoke tests: every benchmark script still runs end to end on tiny sizes (no timings checked)."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """Import a script from benchmarks/ by name (they import their sibling ``_common``)."""
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmarks folder not found at {BENCHMARKS}")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    threads = torch.get_num_threads()
    yield importlib.import_module
    torch.set_num_threads(threads)  # the scripts' --threads must not leak into other tests


def _doc(path: Path) -> dict:
    doc = json.loads(path.read_text())
    assert doc["quick"] is True
    assert doc["command"].startswith("python benchmarks/")
    assert doc["machine"]["cpu"] and doc["machine"]["torch"] == torch.__version__
    return doc["results"]


def test_inference_quick_run_writes_every_section(bench, tmp_path, capsys):
    inference = bench("inference")
    argv = ["--quick", "--threads", "1", "--compare-encoder", "resnet18", "--out", str(tmp_path)]
    assert inference.main(argv) == 0
    res = _doc(tmp_path / "inference.quick.json")
    printed = capsys.readouterr().out
    assert "MP/s" in printed and "tiled / untiled" in printed
    assert {r["model"] for r in res["throughput"]} == {"default", "resnet18"}
    assert all(r["mp_per_s"] > 0 and r["gflop_per_mp"] > 0 for r in res["throughput"])
    assert len(res["ratio"]) == 2
    assert all(r["ratio"] > 0 and 0.9 <= r["agreement"] <= 1 for r in res["ratio"])
    study = res["cpu_study"]["default"]
    plain = study[0]
    assert plain["variant"].startswith("fp32") and plain["speedup"] == pytest.approx(1)
    timed = [r for r in study if "speedup" in r]
    assert len(timed) >= 4 and all(0.9 <= r["agreement"] <= 1 for r in timed)
    assert study[-1]["variant"] == "ONNX Runtime"
    cases = {r["case"]: r for r in res["backends"]}
    assert cases["torch fp32"]["speedup"] == pytest.approx(1)
    assert (
        cases["onnxruntime fp32"]["agree_timed"] > 0.99
        and cases["onnxruntime fp32"]["mp_per_s"] > 0
    )
    if not torch.cuda.is_available():
        assert "figures pending" in res["cuda"] and "figures pending" in printed


def test_gpu_script_without_cuda_is_one_line(bench, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script measures instead")
    assert bench("gpu").main(["--quick"]) == 0
    assert capsys.readouterr().out.strip().count("\n") == 0


@pytest.mark.slow
def test_startup_quick_run_times_every_case(bench, tmp_path):
    startup = bench("startup")
    assert startup.main(["--quick", "--repeat", "1", "--files", "2", "--out", str(tmp_path)]) == 0
    rows = {r["case"]: r for r in _doc(tmp_path / "startup.quick.json")["rows"]}
    assert {"predict --help", "first (export)", "one file, export cached", "2 files"} <= set(rows)
    assert all(r["wall"] > 0 for r in rows.values())


def test_cuda_figures_code_path_runs_on_cpu(bench, tiny_model):
    """The GPU section's code, run on the CPU so it cannot rot before a GPU sees it."""
    inference = bench("inference")
    rows = inference.accelerator_figures(
        tiny_model,
        "tiny",
        torch.device("cpu"),
        tile=32,
        batches=[1, 2],
        peak_tflops=1.0,
        iters=1,
        size=48,
    )
    cases = {r["case"] for r in rows}
    assert {"forward, autocast", "forward, bf16 weights"} <= cases
    assert any(c.startswith("predict()") for c in cases)
    assert all(r["tflop_per_s"] > 0 and r["peak_fraction"] > 0 for r in rows)


def test_fold_batchnorm_keeps_the_network_output(bench, tiny_model):
    inference = bench("inference")
    net = tiny_model.net
    torch.manual_seed(1)
    for m in net.modules():  # non-trivial statistics, so folding really changes weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        before = net(x)
        folded = inference.fold_batchnorm(copy.deepcopy(net))
        after = folded(x)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert n_bn < sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_memory_quick_run_measures_each_child(bench, tmp_path):
    memory = bench("memory")
    argv = ["--quick", "--sizes", "256", "--threads", "1", "--out", str(tmp_path)]
    assert memory.main(argv) == 0
    res = _doc(tmp_path / "memory.quick.json")
    (row,) = res["rows"]
    assert row["side"] == 256 and row["image_bytes"] == 256 * 256
    assert row["labels_dtype"] == "uint8"
    # The kernel's per-child peak covers at least the baseline work (imports + model).
    assert row["peak_bytes"] >= 0.8 * res["baseline_bytes"] > 0


def test_synthetic_image_fills_in_place_without_float_copies(bench):
    common = bench("_common")
    img = common.synthetic_image(100, 300, patch=64)
    assert img.dtype == np.uint8 and img.shape == (100, 300)
    np.testing.assert_array_equal(img[:64, :64], img[:64, 64:128])
    text = common.table([{"a": 1.5, "b": None}], [("a", "A"), ("b", "B")])
    assert text.splitlines()[2].split() == ["1.5", "-"]


def test_finetune_quick_run_scores_every_lever_column(bench, tmp_path):
    finetune = bench("finetune")
    argv = ["--quick", "--cases", "synthetic", "--threads", "1", "--flips", "--also-mix", "0.5"]
    assert finetune.main([*argv, "--out", str(tmp_path)]) == 0
    res = _doc(tmp_path / "finetune.quick.json")
    [row] = res["rows"]
    assert res["flips"] is True and row["steps"] == 2
    for key in ("zero_shot", "tuned", "mixed"):
        assert len(row[key].split("/")) == 3  # matrix / grain / pore


def test_zeroshot_shifts_change_images_as_named_and_score_every_row(bench, tmp_path):
    zeroshot = bench("zeroshot")
    from napari_poregrain.sample import Sample

    image = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (60, 1))
    labels = (image > 100).astype(np.uint8)
    sample = Sample(image, labels=labels, pixel_size_nm=10.0)
    zoomed = zeroshot.shifted(sample, "zoom 2x")
    assert zoomed.pixels.shape == (120, 200) and zoomed.pixel_size_nm == 5.0
    assert set(np.unique(zoomed.labels)) == {0, 1}  # nearest-neighbour labels
    darker = zeroshot.shifted(sample, "gamma 1.6")
    assert (darker.pixels <= image).all() and (darker.pixels < image).any()
    assert np.array_equal(darker.labels, labels)
    noisy = zeroshot.shifted(sample, "noise 12")
    assert 8 < np.std(noisy.pixels.astype(float) - image) < 16
    assert zeroshot.main(["--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    res = _doc(tmp_path / "zeroshot.quick.json")["default"]
    assert {"synthetic unseen", "synthetic organic 2x"} <= set(res["iou"])
    assert 0 <= res["mean"] <= 1
