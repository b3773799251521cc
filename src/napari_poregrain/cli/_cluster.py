"""``poregrain predict ... --cluster ADDR|local:N``: the batch on a dask.distributed cluster.

``cli/predict.py`` adds the options with :func:`add_cluster_arguments` and hands the run to
:func:`run_on_cluster` when ``--cluster`` is given. Images streamed to TIFF or OME-Zarr above
``STREAM_ABOVE`` pixels (``--split auto``) are split into ``--block`` blocks over the workers.
One line on stderr per failed input and exit 1; a scheduler that does not answer is one line
and exit 2 (nothing written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CliError
from ._options import Number, non_negative_int, positive_float

SPLITS = ("auto", "blocks", "files")


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """--cluster, --cluster-timeout and --retries."""
    from ..scale.batch import DEFAULT_RETRIES, DEFAULT_TIMEOUT

    p.add_argument(
        "--cluster",
        metavar="ADDR|local:N",
        help="run on dask.distributed: a scheduler address (tcp://host:8786) or local:N "
        "(a LocalCluster of N worker processes); needs the 'scale' extra",
    )
    p.add_argument(
        "--cluster-timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the scheduler (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--retries",
        type=non_negative_int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help=f"times a failed cluster task is retried (default {DEFAULT_RETRIES})",
    )
    _add_split_arguments(p)


def _add_split_arguments(p: argparse.ArgumentParser) -> None:
    from ..io.writers import ZARR_CHUNK
    from ..scale.blocks import DEFAULT_BLOCK

    p.add_argument(
        "--split",
        choices=SPLITS,
        default="auto",
        help="with --cluster and --format tiff|zarr: blocks splits each image into blocks over "
        "the workers, files sends one task per image; auto splits images above 64 megapixels",
    )
    p.add_argument(
        "--block",
        type=Number(int, low=ZARR_CHUNK, multiple=ZARR_CHUNK),
        default=DEFAULT_BLOCK,
        metavar="PIXELS",
        help=f"side of the blocks of a split image, a multiple of {ZARR_CHUNK} "
        f"(default {DEFAULT_BLOCK})",
    )


def _model_path(spec: str) -> Path:
    from ..model import CheckpointError, load_checkpoint, resolve_model

    try:
        path = resolve_model(spec)
        load_checkpoint(path)  # fail here, once, rather than on every worker
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    return path


def run_on_cluster(args: argparse.Namespace, outputs: list[Path] | None = None) -> int:
    """Predict ``args.images`` on the cluster ``args.cluster`` into ``outputs``; 1 on a failure."""
    try:
        from ..scale.batch import (
            ClusterError,
            PredictOptions,
            SplitOptions,
            open_client,
            run_batch,
        )
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise CliError(f"--cluster needs the 'scale' extra ({exc})") from None
    model_path = _model_path(args.model)
    options = PredictOptions(
        tile=args.tile, overlap=args.overlap, batch_size=args.batch, device=args.device,
        precision=args.precision, backend=args.backend,
    )  # fmt: skip
    split = SplitOptions(_split_above(args), args.block)
    try:
        with open_client(args.cluster, args.cluster_timeout) as client:
            report = run_batch(
                client, args.images, args.out, model_path, options, retries=args.retries,
                outputs=outputs, split=split,
            )  # fmt: skip
    except (ClusterError, ValueError) as exc:
        raise CliError(str(exc)) from None
    for image, why in report.failed.items():
        print(f"poregrain predict: {image}: {why}", file=sys.stderr)
    print(f"{len(report.done)} of {len(args.images)} images written to {args.out}")
    return 0 if report.ok else 1


def _split_above(args: argparse.Namespace) -> int | None:
    """Pixels above which an image is split into blocks (None: never)."""
    from .predict import STREAM_ABOVE

    return {"blocks": 0, "files": None}.get(args.split, STREAM_ABOVE)
