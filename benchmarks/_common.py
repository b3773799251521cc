"""Helpers shared by the benchmark scripts: machine facts, models, images, timing, tables, JSON.

The scripts import this as ``_common`` (``python benchmarks/<name>.py`` puts this folder on
``sys.path``). Results go to ``benchmarks/results/<name>.json`` (``<name>.quick.json`` for
``--quick`` runs, so a smoke run never replaces real figures).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_poregrain.io.atomic import atomic_write_bytes
from napari_poregrain.model import DEFAULT_MODEL_PATH, LoadedModel, load_checkpoint, new_model
from napari_poregrain.synthetic import make_sample

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RANDOM_NOTE = "random-init weights (throughput does not depend on weights)"


# --------------------------------------------------------------------------- arguments


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--threads``, ``--quick`` and ``--out`` for every script."""
    parser.add_argument(
        "--model",
        default="default",
        help="checkpoint file, or 'default' (the shipped model; a random-init ResNet-18 "
        "when none is installed)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="folder for the JSON (default benchmarks/results)",
    )


def script_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark script's parser: its docstring's first paragraph and the common options."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    add_common_arguments(p)
    return p


def int_list(text: str) -> list[int]:
    """Parse ``"512,1024"`` into ``[512, 1024]`` (for argparse ``type=``)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def apply_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- machine + JSON


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str | torch.device | None = None) -> dict:
    """Facts that make a timing comparable: CPU, cores, threads, torch, GPU."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    info = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16_native": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "napari_poregrain": _package_version(),
        "device": str(device) if device is not None else None,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def describe_machine(info: dict) -> str:
    """One line for the top of a printed table."""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return (
        f"{info['cpu']} ({info['cpu_cores_usable']} cores usable, torch {info['torch_threads']} "
        f"threads){gpu}; torch {info['torch']}; device {info['device']}"
    )


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, e.g. ``python benchmarks/inference.py --quick``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *args])


def write_results(
    name: str,
    results: dict,
    *,
    script: str,
    argv: Sequence[str] | None,
    out_dir: Path = RESULTS_DIR,
    quick: bool = False,
    device: str | torch.device | None = None,
) -> Path:
    """Write ``{machine, date, command, results}`` atomically; return the file's path."""
    doc = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(script, argv),
        "machine": machine_info(device),
        "quick": quick,
        "results": results,
    }
    path = Path(out_dir) / f"{name}{'.quick' if quick else ''}.json"
    atomic_write_bytes(path, (json.dumps(doc, indent=2, default=_jsonable) + "\n").encode())
    return path


def save_results(name: str, results, args, argv, *, script: str, device=None) -> Path:
    """:func:`write_results` with a script's common options (``--out``, ``--quick`` and, where
    the script has it, ``--label`` as a suffix of the name); prints the file's path."""
    label = getattr(args, "label", None)
    path = write_results(
        f"{name}-{label}" if label else name, results, script=script, argv=argv,
        out_dir=args.out, quick=args.quick, device=device,
    )  # fmt: skip
    print(f"results: {path}")
    return path


# --------------------------------------------------------------------------- models + images


def load_model(spec: str = "default", seed: int = 0) -> tuple[LoadedModel, str]:
    """The model to benchmark and a one-line description of it.

    ``default`` is the shipped checkpoint when installed, otherwise a seeded random-init
    ResNet-18 (and the description says so).
    """
    if spec == "default":
        if DEFAULT_MODEL_PATH.is_file():
            model = load_checkpoint(DEFAULT_MODEL_PATH)
            return model, f"default ({model.meta.encoder}, shipped {DEFAULT_MODEL_PATH.name})"
        return random_model("resnet18", seed), (
            f"default: no shipped model installed, so resnet18 with {RANDOM_NOTE}"
        )
    model = load_checkpoint(spec)
    return model, f"{Path(spec).name} ({model.meta.encoder})"


def random_model(encoder: str, seed: int = 0) -> LoadedModel:
    """A seeded random-init DeepLabV3+ (no download)."""
    torch.manual_seed(seed)
    return new_model(encoder, name=f"random-{encoder}")


def fill_with_patch(out: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """Fill ``out`` (any size) by repeating ``patch`` in place; no full-size temporary."""
    ph, pw = patch.shape
    for y in range(0, out.shape[0], ph):
        for x in range(0, out.shape[1], pw):
            block = out[y : y + ph, x : x + pw]
            block[...] = patch[: block.shape[0], : block.shape[1]]
    return out


def synthetic_image(height: int, width: int, seed: int = 0, patch: int = 1024) -> np.ndarray:
    """A uint8 SEM-like image: one :func:`make_sample` patch repeated to the size asked."""
    side = min(patch, max(height, width))
    sample, _ = make_sample((min(side, height), min(side, width)), seed=seed)
    return fill_with_patch(np.empty((height, width), np.uint8), sample)


def count_flops(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs (2 x multiply-adds, as FlopCounterMode counts) of one forward of ``shape``.

    Counted on a copy on the ``meta`` device: exact and free of any real compute.
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(net).to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------- timing + tables


def sync(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` so a wall-clock time covers it."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":  # pragma: no cover - Apple only
        torch.mps.synchronize()


def interleaved(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Time every run ``repeat`` times, round-robin, so load from other processes on a shared
    machine hits all of them alike. Returns the seconds of each call; use the minimum."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(max(1, repeat)):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return times


def megapixels(*shape: int) -> float:
    return float(np.prod(shape)) / 1e6


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table of ``rows`` (dicts) with ``columns`` as (key, header) pairs."""
    cells = [[h for _, h in columns]] + [[_cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0 or 0.01 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return f"{v:.2e}"
    return str(v)


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _package_version() -> str:
    from napari_poregrain import __version__

    return __version__


def _jsonable(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, (Path, torch.device, torch.dtype)):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
