"""Inference speed: throughput tables, tiling overhead, the CPU path study and CUDA figures.

    python benchmarks/inference.py [--model PATH|default] [--quick] [--sections ...]

Sections (``--sections throughput,ratio,study,cuda``):

throughput  MP/s of ``predict.predict`` on a synthetic SIZE x SIZE image for the default
            model and a random-init ResNet-101, at several tile and batch sizes.
ratio       time of ``predict`` (default tile and overlap) over ONE untiled forward of the
            same net on the same image. Both sides include the same pre- and post-processing
            (percentile range + normalisation of the uint8 image, argmax to a uint8 map),
            both run at the same precision with channels_last under inference_mode; the tiled
            side also pays for blending. Target: <= 1.15.
study       CPU path: plain fp32 forward (NCHW, no_grad) against inference_mode, channels_last,
            conv-BN folding, bf16 autocast (when the CPU has native bf16), TorchScript freeze,
            oneDNN off, thread counts, ``torch.compile`` (with --compile); speed-up and label
            agreement (fraction of equal argmax pixels) against plain fp32.
backends    every backend side by side (torch fp32, torch bf16 where native, ONNX Runtime
            fp32): median s and MP/s of ``predict`` on the SIZE x SIZE image, speed-up over
            torch fp32, and label agreement with torch fp32 there and on --real images.
cuda        (only with a CUDA GPU) MP/s and achieved TFLOP/s of large batched bf16 tiles as a
            fraction of --peak-tflops, forward-only and end to end through ``predict``.

Timings on a shared machine are noisy: runs are interleaved round-robin and the minimum of
--repeat runs is reported. Results: benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import (
    apply_threads,
    count_flops,
    describe_machine,
    int_list,
    interleaved,
    load_model,
    machine_info,
    megapixels,
    random_model,
    script_parser,
    sync,
    synthetic_image,
    table,
    write_results,
)
from _cpu_study import STUDY, cpu_study, onnxruntime_status
from _cpu_study import fold_batchnorm as fold_batchnorm  # re-exported: tests fold through here

from napari_poregrain.inference.device import (
    PRECISIONS,
    autocast,
    default_tile,
    resolve_device,
    resolve_precision,
)
from napari_poregrain.inference.predict import predict
from napari_poregrain.inference.tiling import DEFAULT_OVERLAP, layout, overlap_pixels
from napari_poregrain.model import LoadedModel
from napari_poregrain.preprocess import intensity_range, normalize, to_grey

SECTIONS = ("throughput", "ratio", "study", "backends", "cuda")
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "zeiss-shale-pores"
REAL_QUICK = Path(__file__).resolve().parents[1] / "tests" / "data" / "zeiss-shale-pores"
H100_SXM_BF16_DENSE_TFLOPS = 989.0

# option: (full run, --quick)
SIZES = {
    "size": (2048, 160),
    "tiles": ([512, 1024], [64, 128]),
    "batches": ([1, 2, 4], [1, 2]),
    "study_tile": (512, 64),
    "study_repeat": (3, 1),
    "study_threads": ([1, 2], [1]),
    "cuda_tile": (1024, 64),
    "cuda_batches": ([8, 16, 32], [1, 2]),
    "cuda_size": (8192, 160),
    "cuda_iters": (10, 1),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__)
    p.add_argument("--sections", default=",".join(SECTIONS), help="which sections to run")
    p.add_argument("--size", type=int, help="image side for throughput and ratio (2048)")
    p.add_argument("--tiles", type=int_list, help="tile sizes (512,1024)")
    p.add_argument("--batches", type=int_list, help="batch sizes (1,2,4)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--repeat", type=int, help="timed runs per case, min reported (cpu 1, gpu 3)")
    p.add_argument("--compare-encoder", default="resnet101", help="second, random-init model")
    p.add_argument("--study-tile", type=int, help="input side of the CPU study (512)")
    p.add_argument("--study-batch", type=int, default=1, help="batch of the CPU study (1)")
    p.add_argument("--study-repeat", type=int, help="timed runs per CPU variant (3)")
    p.add_argument("--study-threads", type=int_list, help="thread counts to try (1,2)")
    p.add_argument("--compile", action="store_true", help="also try torch.compile")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_SXM_BF16_DENSE_TFLOPS,
        help="device bf16 peak; default 989 = H100 SXM dense bf16 (H100 PCIe: 756)",
    )
    p.add_argument("--cuda-tile", type=int, help="tile side on the GPU (1024)")
    p.add_argument("--cuda-batches", type=int_list, help="GPU batch sizes (8,16,32)")
    p.add_argument("--cuda-size", type=int, help="image side for end-to-end GPU predict (8192)")
    p.add_argument("--cuda-iters", type=int, help="timed forwards per GPU case (10)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="set cudnn.benchmark")
    p.add_argument("--real", help="real images for agreement (shared Zeiss; --quick: crops)")
    args = p.parse_args(argv)
    for key, (full, quick) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {SECTIONS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    device = resolve_device(args.device)
    repeat = args.repeat or (3 if device.type == "cuda" else 1)
    info = machine_info(device)
    print(describe_machine(info))

    default, desc = load_model(args.model)
    models = [("default", default, desc)]
    enc = args.compare_encoder
    models.append((enc, random_model(enc), f"{enc} with random-init weights"))
    for label, _, d in models:
        print(f"model {label}: {d}")
    results: dict = {
        "models": {label: d for label, _, d in models},
        "device": str(device),
        "precision": str(resolve_precision(args.precision, device)),
        "repeat": repeat,
        "defaults": {
            "tile": default_tile(device),
            "overlap": DEFAULT_OVERLAP,
            "batch": "auto (8 on CUDA, else 1)",
        },
    }
    for _, model, _ in models:
        _warm_up(model, device, args.precision)

    image = None
    if {"throughput", "ratio", "backends"} & set(args.sections):
        image = synthetic_image(args.size, args.size)
    if "throughput" in args.sections:
        rows = throughput(models, image, args.tiles, args.batches, device, args.precision, repeat)
        _show(
            f"(1) predict() throughput, {args.size}x{args.size} uint8 image, "
            f"{results['precision']}, overlap {DEFAULT_OVERLAP}",
            rows,
            THROUGHPUT,
        )
        results["throughput"] = rows
    if "ratio" in args.sections:
        rows = tiling_ratio(models, image, device, args.precision, repeat)
        _show(
            f"(2) tiled / untiled, {args.size}x{args.size}, tile {default_tile(device)}, overlap "
            f"{DEFAULT_OVERLAP} (pre/post-processing included on both sides; target <= 1.15)",
            rows,
            RATIO,
        )
        results["ratio"] = rows
    if "study" in args.sections:
        study = {}
        for label, model, _ in models:
            rows = cpu_study(
                model,
                tile=args.study_tile,
                batch=args.study_batch,
                repeat=args.study_repeat,
                threads=args.study_threads,
                compile_mode=args.compile_mode if args.compile else None,
            )
            _show(
                f"(3) CPU path, {label}: {args.study_batch}x1x{args.study_tile}x{args.study_tile}"
                f" forward, {torch.get_num_threads()} threads unless noted",
                rows,
                STUDY,
            )
            study[label] = rows
        results["cpu_study"] = study
        results["onnxruntime"] = onnxruntime_status()
    if "backends" in args.sections:
        results["backends"] = _backends(default, image, device, args)
    if "cuda" in args.sections:
        results["cuda"] = _cuda(models, args)
    path = write_results(
        "inference",
        results,
        script=__file__,
        argv=argv,
        out_dir=args.out,
        quick=args.quick,
        device=device,
    )
    print(f"\nwrote {path}")
    return 0


# --------------------------------------------------------------------------- (1) throughput

THROUGHPUT = [
    ("model", "model"),
    ("tile", "tile"),
    ("tile_px", "tile px"),
    ("batch", "batch"),
    ("n_tiles", "tiles"),
    ("work", "work"),
    ("seconds", "s"),
    ("mp_per_s", "MP/s"),
    ("gflop_per_mp", "GFLOP/MP"),
    ("gflop_per_s", "GFLOP/s"),
]


def throughput(models, image, tiles, batches, device, precision, repeat) -> list[dict]:
    """MP/s of ``predict`` for each model, tile size and batch size."""
    h, w = image.shape
    rows = []
    for label, model, _ in models:
        runs, info = {}, {}
        for tile in tiles:
            th, tw, n = _grid(h, w, tile, DEFAULT_OVERLAP)
            per_tile = count_flops(model.net, (1, 1, th, tw))
            for b in batches:
                runs[tile, b] = functools.partial(
                    predict,
                    image,
                    model,
                    tile=tile,
                    overlap=DEFAULT_OVERLAP,
                    batch_size=b,
                    device=device,
                    precision=precision,
                )
                info[tile, b] = (th, tw, n, per_tile)
        times = interleaved(runs, repeat)
        for (tile, b), ts in times.items():
            th, tw, n, per_tile = info[tile, b]
            best = min(ts)
            rows.append(
                {
                    "model": label,
                    "tile": tile,
                    "tile_px": f"{th}x{tw}",
                    "batch": b,
                    "n_tiles": n,
                    "work": n * th * tw / (h * w),
                    "seconds": best,
                    "all_seconds": ts,
                    "mp_per_s": megapixels(h, w) / best,
                    "gflop_per_s": per_tile * n / best / 1e9,
                    "gflop_per_mp": per_tile / (th * tw) * 1e6 / 1e9,
                }
            )
    return rows


def _grid(h: int, w: int, tile: int, overlap: float) -> tuple[int, int, int]:
    ov = overlap_pixels(tile, overlap)
    (th, ys), (tw, xs) = layout(h, tile, ov), layout(w, tile, ov)
    return th, tw, len(ys) * len(xs)


# --------------------------------------------------------------------------- (2) ratio

RATIO = [
    ("model", "model"),
    ("tiled_s", "tiled s"),
    ("untiled_s", "untiled s"),
    ("ratio", "ratio"),
    ("work", "tile work"),
    ("agreement", "label agreement"),
    ("target_met", "<= 1.15"),
]


def untiled_labels(
    model: LoadedModel, image: np.ndarray, device: torch.device, dtype: torch.dtype
) -> np.ndarray:
    """One forward of the whole image: normalise, channels_last, autocast, argmax to uint8."""
    norm = model.meta.normalization
    x = normalize(to_grey(image), *intensity_range(image, norm), norm)
    net = model.net.to(device).eval()
    if device.type != "mps":
        net = net.to(memory_format=torch.channels_last)
    h, w = x.shape
    ph, pw = -h % 16, -w % 16
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw)), mode="reflect")
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device)
    if device.type != "mps":
        t = t.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, dtype):
        logits = net(t)
    return logits[0, :, :h, :w].argmax(0).to(torch.uint8).cpu().numpy()


def tiling_ratio(models, image, device, precision, repeat) -> list[dict]:
    """Tiled ``predict`` (defaults) over one untiled forward, same image, same precision."""
    dtype = resolve_precision(precision, device)
    h, w = image.shape
    th, tw, n = _grid(h, w, default_tile(device), DEFAULT_OVERLAP)
    rows = []
    for label, model, _ in models:
        out = {}

        def tiled(model=model, out=out):
            out["tiled"] = predict(image, model, device=device, precision=precision).labels

        def untiled(model=model, out=out):
            out["untiled"] = untiled_labels(model, image, device, dtype)
            sync(device)

        times = interleaved({"tiled": tiled, "untiled": untiled}, repeat)
        t, u = min(times["tiled"]), min(times["untiled"])
        rows.append(
            {
                "model": label,
                "tiled_s": t,
                "untiled_s": u,
                "all_tiled_s": times["tiled"],
                "all_untiled_s": times["untiled"],
                "ratio": t / u,
                "work": n * th * tw / (h * w),
                "tile_px": f"{th}x{tw}",
                "n_tiles": n,
                "agreement": float((out["tiled"] == out["untiled"]).mean()),
                "target_met": "yes" if t / u <= 1.15 else "no",
            }
        )
    return rows


# --------------------------------------------------------------------------- (5) CUDA

CUDA = [
    ("model", "model"),
    ("case", "case"),
    ("batch", "batch"),
    ("mp_per_s", "MP/s"),
    ("tflop_per_s", "TFLOP/s"),
    ("peak_fraction", "of peak"),
    ("note", "note"),
]


def accelerator_figures(
    model: LoadedModel,
    label: str,
    device: torch.device,
    *,
    tile: int,
    batches: list[int],
    peak_tflops: float,
    iters: int,
    size: int,
    compile_mode: str | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> list[dict]:
    """Forward-only and end-to-end MP/s and achieved TFLOP/s on ``device``.

    FLOPs are counted once per tile shape (2 x multiply-adds). Runs on any device, so the
    tests exercise it on the CPU; the figures mean something on a GPU.
    """
    flops_tile = count_flops(model.net, (1, 1, tile, tile))
    base = copy.deepcopy(model.net).to(device).eval().to(memory_format=torch.channels_last)
    nets = {"forward, autocast": (base, dtype, None)}
    nets["forward, bf16 weights"] = (copy.deepcopy(base).to(dtype), None, dtype)
    if compile_mode is not None:
        nets[f"forward, compile({compile_mode})"] = (
            torch.compile(copy.deepcopy(base), mode=compile_mode),
            dtype,
            None,
        )
    rows = []

    def row(case, b, seconds, mp, flops, note=""):
        tflops = flops / seconds / 1e12
        return {
            "model": label,
            "case": case,
            "batch": b,
            "seconds": seconds,
            "mp_per_s": mp / seconds,
            "tflop_per_s": tflops,
            "peak_fraction": tflops / peak_tflops,
            "note": note,
        }

    for case, (net, autocast_dtype, input_dtype) in nets.items():
        for b in batches:
            try:
                x = torch.randn(b, 1, tile, tile, device=device, dtype=input_dtype)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), autocast(device, autocast_dtype or torch.float32):
                    for _ in range(3 if "compile" in case else 2):
                        net(x)
                    sync(device)
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        net(x)
                    sync(device)
                seconds = (time.perf_counter() - t0) / iters
                rows.append(row(case, b, seconds, megapixels(b, tile, tile), b * flops_tile))
            except torch.OutOfMemoryError:
                rows.append({"model": label, "case": case, "batch": b, "note": "out of memory"})
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    # End to end: uint8 image in host memory -> uint8 labels in host memory.
    image = synthetic_image(size, size)
    th, tw, n = _grid(size, size, tile, DEFAULT_OVERLAP)
    flops = count_flops(model.net, (1, 1, th, tw)) * n
    b = max(batches)
    e2e = LoadedModel(base, model.meta)
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
    try:
        go = functools.partial(
            predict, image, e2e, tile=tile, batch_size=b, device=device, precision=precision
        )
        go()
        sync(device)
        times = interleaved({"e2e": lambda: (go(), sync(device))}, 2)
        rows.append(
            row(
                f"predict() {size}x{size} end to end",
                b,
                min(times["e2e"]),
                megapixels(size, size),
                flops,
                note=f"{n} tiles of {th}x{tw}",
            )
        )
    except torch.OutOfMemoryError:
        rows.append({"model": label, "case": "predict() end to end", "note": "out of memory"})
    return rows


# --------------------------------------------------------------------------- helpers


def _cuda(models, args):
    """Section (5): CUDA figures, or why there are none."""
    if torch.cuda.is_available():
        cuda_rows = []
        for label, model, _ in models:
            cuda_rows += accelerator_figures(
                model,
                label,
                torch.device("cuda"),
                tile=args.cuda_tile,
                batches=args.cuda_batches,
                peak_tflops=args.peak_tflops,
                iters=args.cuda_iters,
                size=args.cuda_size,
                compile_mode=args.compile_mode if args.compile else None,
            )
        _show(
            f"(5) CUDA, bf16, tile {args.cuda_tile}, peak {args.peak_tflops:g} TFLOP/s",
            cuda_rows,
            CUDA,
        )
        return {"peak_tflops": args.peak_tflops, "rows": cuda_rows}
    else:
        print("\nCUDA: not available on this machine — figures pending")
        return "not available on this machine - figures pending"


def _backends(model, image, device, args) -> list[dict]:
    from _backends import BACKENDS, backend_rows, real_images

    real = real_images(args.real or (REAL_QUICK if args.quick else REAL))
    rows = backend_rows(model, image, real, device, max(args.repeat or 3, 1))
    _show(
        f"(4) backends, {args.size}x{args.size} predict, default tile, {len(real)} real images "
        f"for agreement, {torch.get_num_threads()} threads",
        rows,
        BACKENDS,
    )
    return rows


def _warm_up(model: LoadedModel, device: torch.device, precision: str) -> None:
    """One small forward so one-time start-up costs stay out of the first timing."""
    predict(synthetic_image(64, 64), model, tile=64, device=device, precision=precision)


def _show(title: str, rows: list[dict], columns) -> None:
    print(f"\n{title}")
    print(table(rows, columns))
    for r in rows:
        if r.get("note") and not any(k == "note" for k, _ in columns):
            print(f"  {r.get('variant', r.get('model'))}: {r['note']}")


if __name__ == "__main__":
    sys.exit(main())
