"""``poregrain predict IMAGE... --out DIR``: one 0/1/2 class-map PNG per image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..inference.predict import CPU_TILE, DEFAULT_OVERLAP, DEFAULT_TILE, PRECISIONS, predict
from ..model import CheckpointError, load_checkpoint, resolve_model
from . import CliError
from ._progress import TileBar


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    add_model_arguments(p)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --device, --tile, --overlap: shared by every command that predicts."""
    p.add_argument("--model", default="default", help="checkpoint file or model name")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help=f"nominal tile side (default: {DEFAULT_TILE} on a GPU, {CPU_TILE} on the CPU)",
    )
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP)
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="tiles per forward pass (default: 8 on CUDA, else 1)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: bf16 on CUDA and on CPUs with native bf16, else fp32",
    )


def load_model(args: argparse.Namespace):
    try:
        return load_checkpoint(resolve_model(args.model))
    except CheckpointError as exc:
        raise CliError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from ..io.images import ImageReadError, read_sample, write_labels

    model = load_model(args)
    failures = 0
    for path in args.images:
        try:
            sample = read_sample(path)
            with TileBar(path.name) as bar:
                result = predict(
                    sample,
                    model,
                    tile=args.tile,
                    overlap=args.overlap,
                    batch_size=args.batch,
                    device=args.device,
                    precision=args.precision,
                    progress=bar.update_to,
                )
            write_labels(args.out / f"{path.stem}.png", result.labels)
        except (ImageReadError, ValueError, OSError) as exc:
            failures += 1
            print(f"poregrain predict: {path}: {exc}", file=sys.stderr)
    return 1 if failures else 0
