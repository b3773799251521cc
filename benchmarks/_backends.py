"""Every inference backend side by side: MP/s of ``predict`` and labels against torch fp32.

Used by ``benchmarks/inference.py --sections backends``. Cases: torch fp32, torch bf16 (when the
CPU has native bf16, or on CUDA), ONNX Runtime fp32 (CPU), and any extra cases a caller adds
(e.g. int8). Agreement = share of pixels whose class equals torch fp32's, on the timed image
and on each real image given (the lowest is reported).
"""

from __future__ import annotations

import functools
import statistics

import torch
from _common import interleaved, megapixels

from napari_poregrain.inference.backend import available_backends
from napari_poregrain.inference.predict import predict

BACKENDS = [
    ("case", "backend"),
    ("seconds", "s (median)"),
    ("mp_per_s", "MP/s"),
    ("speedup", "x torch fp32"),
    ("agree_timed", "agree (timed)"),
    ("agree_real", "agree (real, min)"),
    ("identical", "identical"),
]


def backend_cases(device: torch.device) -> dict[str, dict]:
    """``{name: predict keywords}`` of the backends this machine can run; torch fp32 first."""
    cases = {"torch fp32": {"backend": "torch", "precision": "fp32"}}
    bf16 = device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if bf16:
        cases["torch bf16"] = {"backend": "torch", "precision": "bf16"}
    if device.type == "cpu" and "onnxruntime" in available_backends():
        cases["onnxruntime fp32"] = {"backend": "onnxruntime", "precision": "fp32"}
    return cases


def backend_rows(model, image, real_images, device, repeat, extra=None) -> list[dict]:
    """One row per case: median seconds over ``repeat`` interleaved runs and agreement."""
    cases = {**backend_cases(device), **(extra or {})}
    runs = {
        name: functools.partial(predict, image, model, device=device, **kw)
        for name, kw in cases.items()
    }
    labels = {name: run().labels for name, run in runs.items()}  # warm-up (exports) and labels
    real = {
        name: [predict(x, model, device=device, **kw).labels for x in real_images]
        for name, kw in cases.items()
    }
    times = interleaved(runs, repeat)
    base = statistics.median(times["torch fp32"])
    rows = []
    for name, ts in times.items():
        median = statistics.median(ts)
        timed = float((labels[name] == labels["torch fp32"]).mean())
        agree = [float((a == b).mean()) for a, b in zip(real[name], real["torch fp32"])]
        rows.append(
            {
                "case": name,
                "seconds": median,
                "all_seconds": ts,
                "mp_per_s": megapixels(*image.shape[:2]) / median,
                "speedup": base / median,
                "agree_timed": timed,
                "agree_real": min(agree) if agree else None,
                "identical": timed == 1.0 and all(a == 1.0 for a in agree),
            }
        )
    return rows


def real_images(folder, limit: int = 4) -> list:
    """Up to ``limit`` images (above their data bar) of a real-data folder; [] when absent."""
    from pathlib import Path

    from napari_poregrain.io.images import read_sample

    paths = sorted(Path(folder).glob("images/*.tif"))[:limit] if folder else []
    return [read_sample(p) for p in paths]
