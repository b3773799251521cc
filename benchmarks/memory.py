"""Peak resident memory of ``predict`` on 4k², 8k² and 16k² images, each in its own process.

    python benchmarks/memory.py [--model PATH|default] [--sizes 4096,8192,16384] [--quick]
    python benchmarks/memory.py --stream [--sizes 8192,16384,32768]

``--stream``: the child writes the image as a tiled TIFF (tile by tile, never whole), reads it
lazily (``io.lazy.read_lazy``) and streams the labels into a tiled TIFF (``io.writers``):
nothing of image size is held, so the peak should not grow with the area (goal: 32k² within
1.15x of 8k² and under 1.5 GB). Results: benchmarks/results/memory_stream.json.

Each size runs in a fresh child Python process that builds the uint8 image itself
(``np.empty`` filled by repeating a 512² synthetic patch: never a float copy) and runs
``predict`` with default settings (or --tile, --batch-size). The child's peak RSS comes from
``os.wait4`` (the kernel's ``ru_maxrss`` for that one child). A baseline child does everything
except the image and the prediction (imports, builds the model, makes the patch); both
"peak - image" and "peak - image - baseline" are reported. Target: peak <= image + 1.5 GB.
Results: benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _common import (
    apply_threads,
    describe_machine,
    int_list,
    machine_info,
    script_parser,
    table,
    write_results,
)

from napari_poregrain.inference.device import default_tile, resolve_device
from napari_poregrain.inference.tiling import DEFAULT_OVERLAP

MB = 2**20
ALLOWANCE = int(1.5 * 2**30)
STREAM_GROWTH = 1.15  # --stream: largest size's peak within this factor of the smallest's
PATCH = 512
COLUMNS = [
    ("size", "size"),
    ("image_mb", "image MB"),
    ("peak_mb", "peak RSS MB"),
    ("over_image_mb", "peak-image MB"),
    ("over_image_baseline_mb", "peak-image-baseline MB"),
    ("limit_mb", "image+1.5GB MB"),
    ("target_met", "target met"),
    ("seconds", "predict s"),
    ("mp_per_s", "MP/s"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__)
    p.add_argument("--sizes", type=int_list, help="image sides (4096,8192,16384; quick 512,1024)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per child")
    p.add_argument("--tile", type=int, help="tile size (default: predict's)")
    p.add_argument("--batch-size", type=int, help="tiles per forward (default: predict's)")
    p.add_argument(
        "--jobs", type=int, help="children run at once (1; quick: all, RSS stays per child)"
    )
    p.add_argument("--stream", action="store_true", help="lazy TIFF in, streamed TIFF out")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sizes is None:
        full = [8192, 16384, 32768] if args.stream else [4096, 8192, 16384]
        args.sizes = [512, 1024] if args.quick else full
    if args.jobs is None:
        args.jobs = len(args.sizes) + 1 if args.quick else 1
    return args


def child(size: int, args: argparse.Namespace) -> dict:
    """Runs in the child: 0 = baseline (no image, no predict), else one size x size predict."""
    import resource

    import numpy as np
    from _common import fill_with_patch, load_model

    from napari_poregrain.inference.device import resolve_precision
    from napari_poregrain.inference.predict import predict
    from napari_poregrain.synthetic import make_sample

    model, _ = load_model(args.model)
    patch, _ = make_sample((PATCH, PATCH), seed=0)
    out = {"size": size}
    if size and args.stream:
        out |= _stream_child(size, args, model, patch)
    elif size:
        image = fill_with_patch(np.empty((size, size), np.uint8), patch)
        dev = resolve_device(args.device)
        settings = {"tile": args.tile, "batch_size": args.batch_size}
        settings = {k: v for k, v in settings.items() if v is not None}
        t0 = time.perf_counter()
        labels = predict(image, model, device=dev, **settings).labels
        out["seconds"] = time.perf_counter() - t0
        out["device"] = str(dev)
        out["precision"] = str(resolve_precision("auto", dev))
        out["labels_dtype"] = str(labels.dtype)
        out["image_bytes"] = int(image.nbytes)
    out["self_maxrss_bytes"] = _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return out


def _stream_child(size: int, args: argparse.Namespace, model, patch) -> dict:
    """Tiled TIFF written tile by tile, read lazily, labels streamed to a tiled TIFF."""
    import tifffile

    from napari_poregrain.inference.device import resolve_precision
    from napari_poregrain.inference.predict import predict
    from napari_poregrain.io.lazy import read_lazy
    from napari_poregrain.io.writers import open_label_writer

    tiles = (patch for _ in range((size // PATCH) ** 2))
    dev = resolve_device(args.device)
    settings = {"tile": args.tile, "batch_size": args.batch_size}
    settings = {k: v for k, v in settings.items() if v is not None}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "image.tif"), os.path.join(tmp, "labels.tif")
        tifffile.imwrite(src, data=tiles, shape=(size, size), dtype="uint8", tile=(PATCH, PATCH))
        sample = read_lazy(src)
        t0 = time.perf_counter()
        with open_label_writer(dst, sample.shape, sample.pixel_size_nm) as writer:
            predict(sample, model, device=dev, out=writer, **settings)
        seconds = time.perf_counter() - t0
        labels_dtype = str(tifffile.TiffFile(dst).pages.first.dtype)
    return {
        "seconds": seconds,
        "device": str(dev),
        "precision": str(resolve_precision("auto", dev)),
        "labels_dtype": labels_dtype,
        "image_bytes": size * size,
    }


def run_children(sizes: list[int], args: argparse.Namespace) -> dict[int, dict]:
    """Run one child per size (``args.jobs`` at a time); return each one's report + peak RSS.

    Children are reaped with ``os.wait4``, not ``Popen.wait``: only wait4 gives the rusage of
    that one child (``RUSAGE_CHILDREN`` would be the maximum over all of them).
    """
    pending, running, reports = list(sizes), {}, {}
    deadline = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, args.jobs):
                size = pending.pop(0)
                running[size] = _start_child(size, args)
                deadline[size] = time.monotonic() + (args.timeout or float("inf"))
            for size, (proc, out, err) in list(running.items()):
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if not pid:
                    if time.monotonic() > deadline[size]:
                        raise SystemExit(
                            f"memory.py: the {size}x{size} child ran past {args.timeout} s"
                        )
                    continue
                del running[size]
                proc.returncode = os.waitstatus_to_exitcode(status)
                reports[size] = r = _finish_child(size, proc, out, err, usage)
                what = f"{size}x{size} in {r['seconds']:.1f} s" if size else "baseline"
                print(f"  {what}: {r['peak_bytes'] / MB:.0f} MB peak RSS", flush=True)
            time.sleep(0.05)
    finally:
        for proc, out, err in running.values():
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            out.close()
            err.close()
    return reports


def _start_child(size: int, args: argparse.Namespace):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(size)]
    cmd += ["--model", args.model, "--device", args.device]
    for opt in ("threads", "tile", "batch_size"):
        if getattr(args, opt) is not None:
            cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    cmd += ["--stream"] if args.stream else []
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    return subprocess.Popen(cmd, stdout=out, stderr=err, text=True), out, err


def _finish_child(size: int, proc, out, err, usage) -> dict:
    with out, err:
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-1:] or ["no error output"]
        raise SystemExit(f"memory.py: the {size}x{size} child failed: {tail[0]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    report["peak_bytes"] = _maxrss_bytes(usage.ru_maxrss)
    return report


def _maxrss_bytes(value: int) -> int:
    """``ru_maxrss`` is KiB on Linux and bytes on macOS."""
    return int(value) if sys.platform == "darwin" else int(value) * 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    if args.child is not None:
        print(json.dumps(child(args.child, args)))
        return 0
    info = machine_info(args.device)
    print(describe_machine(info))
    reports = run_children([0, *args.sizes], args)
    base = reports[0]["peak_bytes"]
    print(f"baseline child (imports, model, patch; no image, no predict): {base / MB:.0f} MB")
    rows = []
    first = reports[args.sizes[0]]["peak_bytes"]
    for size in args.sizes:
        r = reports[size]
        image, peak = r["image_bytes"], r["peak_bytes"]
        met = peak <= image + ALLOWANCE
        if args.stream:  # nothing of image size is held: peak flat and under 1.5 GB
            met = peak <= min(ALLOWANCE, STREAM_GROWTH * first)
        rows.append(
            {
                "size": f"{size}x{size}",
                "side": size,
                "image_mb": image / MB,
                "peak_mb": peak / MB,
                "over_image_mb": (peak - image) / MB,
                "over_image_baseline_mb": (peak - image - base) / MB,
                "limit_mb": (
                    min(ALLOWANCE, STREAM_GROWTH * first) if args.stream else image + ALLOWANCE
                )
                / MB,
                "target_met": "yes" if met else "no",
                "seconds": r["seconds"],
                "mp_per_s": size * size / 1e6 / r["seconds"],
                "device": r["device"],
                "precision": r["precision"],
                "labels_dtype": r["labels_dtype"],
                "image_bytes": image,
                "peak_bytes": peak,
                "child_self_maxrss_bytes": r["self_maxrss_bytes"],
            }
        )
    tile, batch = args.tile or default_tile(resolve_device(args.device)), args.batch_size or "auto"
    print(f"\npeak RSS of predict() (tile {tile}, batch {batch}), one child process per size")
    print(table(rows, COLUMNS))
    results = {
        "model": args.model,
        "predict_settings": {
            "tile": args.tile or default_tile(resolve_device(args.device)),
            "batch_size": args.batch_size or "auto",
            "overlap": DEFAULT_OVERLAP,
        },
        "baseline_bytes": base,
        "baseline_mb": base / MB,
        "allowance_bytes": ALLOWANCE,
        "rows": rows,
        "method": "os.wait4 ru_maxrss of a fresh child per size; uint8 image built in the child",
    }
    path = write_results(
        "memory_stream" if args.stream else "memory",
        results,
        script=__file__,
        argv=argv,
        out_dir=args.out,
        quick=args.quick,
        device=args.device,
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
