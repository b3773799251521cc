"""``poregrain predict IMAGE... --out DIR``: one 0/1/2 class map per image.

PNG for ordinary images; a tiled, compressed TIFF or an OME-Zarr (image + ``labels/``) for large
ones, streamed: tiles are read lazily and label blocks written as they are final, so memory does
not grow with the image (``--format``; ``auto`` streams to TIFF above ``STREAM_ABOVE`` pixels).

Everything that can be checked before the compute is: option ranges (at parse time), output
names (two images never share one; an existing file is replaced only with ``--overwrite``), the
output folder (created, writable) and a rough disk-space estimate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..inference.options import BACKENDS, CPU_TILE, DEFAULT_OVERLAP, DEFAULT_TILE, PRECISIONS
from . import CliError
from ._options import add_inputs_and_out, add_output_arguments, fraction, positive_int, tile_side
from ._progress import ImageBar, TileBar

FORMATS = ("auto", "png", "tiff", "zarr")
SUFFIX = {"png": ".png", "tiff": ".tif", "zarr": ".zarr"}
STREAM_ABOVE = 1 << 26  # pixels (64 MP, about 8k x 8k): above this ``auto`` streams to TIFF


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inputs_and_out(
        p, "images", "IMAGE",
        "SEM images to segment (TIFF, PNG, JPEG, BMP, OME-Zarr); a data bar is found, left out",
        "folder for the class maps, one <image name>.png (or .tif/.zarr, see --format) each "
        "(0 matrix, 1 grain, 2 pore); created if missing",
    )  # fmt: skip
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="class map file: png (held in memory), tiff (tiled, compressed, streamed: memory "
        "stays flat at any size), zarr (OME-Zarr of the image with a labels/ group, streamed); "
        "auto: png, or tiff when an image has more than 64 megapixels",
    )
    add_output_arguments(p, "class maps")
    add_model_arguments(p)
    from ._cluster import add_cluster_arguments

    add_cluster_arguments(p)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --device, --tile, --overlap, --batch, --precision: every command that predicts."""
    p.add_argument(
        "--model",
        default="default",
        help="the trained model: a .safetensors file or the name of an installed model "
        "(default: the shipped model)",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where to compute: a graphics card (cuda, mps) or the processor (cpu); "
        "auto takes a graphics card when there is one",
    )
    p.add_argument(
        "--tile",
        type=tile_side,
        default=None,
        metavar="PIXELS",
        help="large images are segmented in square pieces of this many pixels a side "
        f"(a multiple of 16; default {DEFAULT_TILE} on a graphics card, {CPU_TILE} on the "
        "processor); smaller pieces need less memory",
    )
    p.add_argument(
        "--overlap",
        type=fraction,
        default=DEFAULT_OVERLAP,
        metavar="FRACTION",
        help="how much neighbouring pieces overlap, as a share of their side, in [0, 1) "
        f"(default {DEFAULT_OVERLAP}); more overlap hides seams but takes longer",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        metavar="N",
        help="pieces computed together, at least 1 (default: 8 on a graphics card, else 1); "
        "more is faster but needs more memory",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="number precision of the compute: fp32 is exact, bf16/fp16 faster on recent "
        "hardware; auto takes fp32 on the processor (the same labels whatever the threads or "
        "batch) and bf16/fp16 on a graphics card",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="what runs the network: torch, or onnxruntime (processor only, fp32; about twice "
        "as fast as torch fp32 with the same labels); auto takes onnxruntime on the processor "
        "when its labels match torch, torch on a graphics card",
    )


def check_backend(args: argparse.Namespace) -> None:
    """Refuse a device, precision and backend that cannot go together, before any compute."""
    from ..inference.backend import resolve_backend
    from ..inference.device import resolve_device

    try:
        resolve_backend(args.backend, resolve_device(args.device), args.precision)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def check_args(args: argparse.Namespace) -> None:
    """Option combinations refused at parse time (a tile and overlap leaving no step)."""
    from ._options import check_tiling

    check_tiling(args)


def load_model(args: argparse.Namespace):
    """The model of ``--model``: its cached ONNX Runtime export alone when that is what runs
    (no torch network built: a quick start), else the checkpoint loaded and checked."""
    from ..inference.backend import cached_model
    from ..registry import CheckpointError, resolve_model
    from ._files import check_model_file

    try:
        path = check_model_file(resolve_model(args.model))
        fast = cached_model(path, args.backend, args.device)
        if fast is not None:
            return fast
        from ..model import load_checkpoint

        return load_checkpoint(path)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None


def remember_export(model, args: argparse.Namespace) -> None:
    """After a run on ONNX Runtime, note the checkpoint's export for the next quick start."""
    from ..inference.backend import OnnxModel, resolve_backend
    from ..inference.device import resolve_device
    from ..inference.onnx import remember_file

    if isinstance(model, OnnxModel) or model.path is None or getattr(model, "head", None):
        return
    engine = resolve_backend(args.backend, resolve_device(args.device), args.precision)
    if engine.name == "onnxruntime":
        remember_file(model.path, model.net)


def plan(args: argparse.Namespace) -> list[Path]:
    """The output file of each image, checked before any compute; problems are a CliError.

    Outputs never replace an input (the images, the model file); names are proven writable.
    """
    from ..io.outputs import (
        OutputError,
        check_folder,
        check_names,
        check_space,
        image_shape,
        label_bytes,
        plan_outputs,
    )

    shapes = [image_shape(p) for p in args.images]
    each = [SUFFIX[resolve_format(args.format, [shape])] for shape in shapes]
    try:
        planned = plan_outputs(
            args.images, args.out, (), overwrite=args.overwrite, by_folder=args.unique_names,
            each=each, protect=[Path(args.model)],
        )  # fmt: skip
        outputs = [paths[0] for paths in planned]
        check_folder(args.out)
        check_names(outputs)
        check_space(args.out, label_bytes(shapes))
    except OutputError as exc:
        raise CliError(str(exc)) from None
    return outputs


def resolve_format(fmt: str, shapes) -> str:
    """``auto`` -> png, or tiff when an image is larger than ``STREAM_ABOVE`` pixels (decided per
    file: pass one file's shape)."""
    if fmt != "auto":
        return fmt
    big = any(s is not None and s[0] * s[1] > STREAM_ABOVE for s in shapes)
    return "tiff" if big else "png"


def _stream(path: Path, target: Path, model, args: argparse.Namespace):
    """Lazy tiles in, label blocks out to ``target``; None or (one-sentence error, fatal)."""
    from ..inference.predict import predict_to_file
    from ..io.lazy import open_sample
    from ..io.outputs import is_fatal, save_error

    sample = open_sample(path, lazy=True)
    try:
        with TileBar(path.name) as bar:
            predict_to_file(
                sample, target, model, tile=args.tile, overlap=args.overlap,
                batch_size=args.batch, device=args.device, precision=args.precision,
                backend=args.backend, progress=bar.update_to,
            )  # fmt: skip
    except OSError as exc:
        return save_error(target, exc), is_fatal(exc)
    return None


def _segment(path: Path, model, args: argparse.Namespace):
    """The class map of one image; an unreadable image raises (the caller names it)."""
    from ..inference.predict import predict
    from ..io.lazy import open_sample

    sample = open_sample(path, lazy=False)
    with TileBar(path.name) as bar:
        return predict(
            sample, model, tile=args.tile, overlap=args.overlap, batch_size=args.batch,
            device=args.device, precision=args.precision, backend=args.backend,
            progress=bar.update_to,
        ).labels  # fmt: skip


def _save(target: Path, labels) -> tuple[str, bool] | None:
    """Write one class map; None, or (one-sentence error, whether further saves fail too)."""
    from ..io.images import write_labels
    from ..io.outputs import is_fatal, keep_elsewhere, save_error

    try:
        write_labels(target, labels)
    except OSError as exc:
        kept = keep_elsewhere(target, _LabelWriter(labels))  # finished work is never lost
        where = f"; the class map is kept as {kept}" if kept else ""
        return save_error(target, exc) + where, is_fatal(exc)
    return None


class _LabelWriter:
    """``write_labels(path, labels)`` as a one-argument call (for :func:`keep_elsewhere`)."""

    def __init__(self, labels) -> None:
        self.labels = labels

    def __call__(self, path: Path) -> Path:
        from ..io.images import write_labels

        return write_labels(path, self.labels)


def run(args: argparse.Namespace) -> int:
    check_backend(args)
    outputs = plan(args)  # names, overwrites, writable folder and space: before any compute
    if args.cluster:
        from ._cluster import run_on_cluster

        return run_on_cluster(args, outputs)
    model = load_model(args)
    code = _run_all(args, outputs, model)
    remember_export(model, args)
    return code


def _run_all(args: argparse.Namespace, outputs: list[Path], model) -> int:
    failures = 0
    with ImageBar(len(outputs)) as images:
        for i, (path, target) in enumerate(zip(args.images, outputs)):
            stop = _one(args, path, target, model, len(outputs) - i - 1)
            images.update()
            failures += stop is not None
            if stop:
                return 1
    return 1 if failures else 0


def _one(args, path: Path, target: Path, model, left: int) -> bool | None:
    """Segment and save one image: None when done, else whether the whole run must stop (the
    failure is said on stderr)."""
    from ..io.images import ImageReadError

    try:
        if target.suffix == SUFFIX["png"]:
            problem = _save(target, _segment(path, model, args))
        else:
            problem = _stream(path, target, model, args)
    except (ImageReadError, ValueError, OSError) as exc:
        problem = (str(exc) if str(path) in str(exc) else f"{path}: {exc}"), False
    if problem is None:
        return None
    message, fatal = problem
    if fatal and left:
        message += f"; stopped, {left} image(s) not done"
    ImageBar.write(f"poregrain predict: {message}", file=sys.stderr)  # above the bars
    return fatal
