"""Batch prediction of many files on a dask.distributed cluster.

:func:`open_client` connects to a running scheduler (``tcp://host:8786``, with a timeout) or
starts a ``LocalCluster`` (``local:N``: N worker processes of one thread each). :func:`run_batch`
sends one task per file; each worker loads the model once (:func:`_worker_model` caches it by
path and modification time), reads the file, predicts and writes the label map under a temporary
name that is renamed when complete (:func:`~napari_poregrain.io.labels.write_labels`), so an
interrupted task never leaves a partial file under its final name. A file that cannot be read is
reported by name and the others finish; a task whose worker dies is rescheduled by dask and an
unexpected error is retried ``retries`` times. Engine code: no Qt, no napari.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a scheduler to answer."""
DEFAULT_RETRIES = 2
DEFAULT_BLOCK = 4096
"""Side in pixels of the blocks of a split image: a multiple of the output's zarr chunk (512)."""


class ClusterError(RuntimeError):
    """The cluster cannot be used; the message is one sentence."""


@dataclass(frozen=True)
class PredictOptions:
    """The ``predict`` keywords every task uses (see :func:`~..inference.predict.predict`)."""

    tile: int | None = None
    overlap: float | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"

    def keywords(self) -> dict:
        kw = {"tile": self.tile, "batch_size": self.batch_size}
        kw.update(device=self.device, precision=self.precision, backend=self.backend)
        if self.overlap is not None:
            kw["overlap"] = self.overlap
        return kw


@dataclass(frozen=True)
class SplitOptions:
    """When and how one image is split into blocks (see :mod:`.blocks`).

    ``above``: images with more pixels are split (0: every one; None: none); ``block``: the
    block side, a multiple of the zarr chunk (512).
    """

    above: int | None = None
    block: int = DEFAULT_BLOCK


@dataclass
class BatchReport:
    """What a batch did: outputs written (input -> output) and inputs that failed (-> why)."""

    done: dict[Path, Path] = field(default_factory=dict)
    failed: dict[Path, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def parse_address(spec: str) -> tuple[str, int | str]:
    """``("local", N)`` for ``local:N``, else ``("remote", address)``; ValueError when bad."""
    if spec.startswith("local:"):
        n = spec.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"--cluster {spec}: local:N needs a worker count N >= 1")
        return "local", int(n)
    if "://" not in spec and ":" not in spec:
        raise ValueError(
            f"--cluster {spec}: give a scheduler address (tcp://host:8786) or local:N"
        )
    return "remote", spec


@contextlib.contextmanager
def open_client(spec: str, timeout: float = DEFAULT_TIMEOUT) -> Iterator:
    """A dask ``Client`` for ``spec`` (``local:N`` or a scheduler address), closed afterwards.

    Raises :class:`ClusterError` when the scheduler does not answer within ``timeout`` seconds.
    """
    from distributed import Client, LocalCluster

    kind, where = parse_address(spec)
    if kind == "local":
        cluster = LocalCluster(
            n_workers=where, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with cluster, Client(cluster) as client:
            yield client
        return
    client = _connect(where, timeout)
    with client:
        yield client


class _Connect(threading.Thread):
    """Makes a Client in a daemon thread (one that may hang for ever does not block exit)."""

    def __init__(self, address: str, timeout: float) -> None:
        super().__init__(daemon=True, name="poregrain-connect")
        self.address, self.timeout = address, timeout
        self.client = self.error = None

    def run(self) -> None:
        from distributed import Client

        try:
            self.client = Client(self.address, timeout=f"{self.timeout}s")
        except Exception as exc:  # handed to the caller
            self.error = exc


def _connect(address: str, timeout: float):
    """A Client of the scheduler at ``address``, or ClusterError within about ``timeout`` s.

    A port that accepts but never answers would block dask's handshake for ever, hence the
    thread.
    """
    attempt = _Connect(address, timeout)
    attempt.start()
    attempt.join(timeout + 1)
    exc = attempt.error
    if attempt.client is not None:
        return attempt.client
    if exc is None or isinstance(exc, (OSError, TimeoutError)):
        reason = "no answer" if exc is None else _first_line(exc)
        raise ClusterError(
            f"no dask scheduler answered at {address} within {timeout:g} s ({reason})"
        )
    raise ClusterError(f"{address} did not answer as a dask scheduler ({type(exc).__name__})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, mtime_ns: int):
    from ..model import load_checkpoint

    return load_checkpoint(path)


def _worker_model(path: str):
    """The model at ``path``, loaded once per worker process (reloaded when the file changes)."""
    return _cached_model(path, os.stat(path).st_mtime_ns)


def predict_file(image: str, out: str, model_path: str, options: PredictOptions) -> str | None:
    """Run on a worker: segment ``image`` and write its label map to ``out``.

    ``out`` ending in ``.tif``/``.zarr``: streamed (lazy tiles in, label blocks out, see
    :mod:`~napari_poregrain.io.writers`); else a PNG written whole. Returns None when done, or one
    sentence when the input itself is unusable (not retried); other errors propagate, so dask
    retries the task.
    """
    from ..inference.predict import predict, predict_to_file
    from ..io.images import ImageReadError, read_sample
    from ..io.labels import write_labels
    from ..io.lazy import open_sample
    from ..io.writers import STREAMED_SUFFIXES

    model = _worker_model(model_path)
    try:
        if Path(out).suffix.lower() in STREAMED_SUFFIXES:
            predict_to_file(open_sample(image, lazy=True), out, model, **options.keywords())
            return None
        sample = read_sample(image)
        result = predict(sample, model, **options.keywords())
    except (ImageReadError, ValueError) as exc:
        return str(exc)
    write_labels(out, result.labels)
    return None


def output_path(image: Path, out_dir: Path) -> Path:
    """Where the label map of ``image`` goes (the single-process CLI's name)."""
    return out_dir / f"{image.stem}.png"


def run_batch(
    client,
    images: Sequence[Path],
    out_dir: Path,
    model_path: Path,
    options: PredictOptions | None = None,
    *,
    retries: int = DEFAULT_RETRIES,
    progress: Callable[[int, int], None] | None = None,
    outputs: Sequence[Path] | None = None,
    split: SplitOptions | None = None,
) -> BatchReport:
    """Predict every image on ``client``'s workers; the report names each failed input.

    ``outputs``: the label file of each image, as the CLI planned them (default: ``output_path``).
    ``split``: images streamed to ``.tif``/``.zarr`` above ``split.above`` pixels are split into
    blocks over the workers (:func:`.blocks.run_blocks`), one image after the other; the rest
    are one task per file.
    """
    from distributed import as_completed

    options = options or PredictOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    futures, report = {}, BatchReport()
    big = []
    for i, image in enumerate(images):
        out = output_path(Path(image), out_dir) if outputs is None else Path(outputs[i])
        if _is_split(Path(image), out, split):
            big.append((Path(image), out))
            continue
        fut = client.submit(
            predict_file, str(image), str(out), str(Path(model_path).resolve()), options,
            key=f"poregrain-predict-{i}-{Path(image).name}", retries=retries, pure=False,
        )  # fmt: skip
        futures[fut] = (Path(image), out)
    for n, (image, out) in enumerate(big, 1):
        problem = _run_split(client, image, out, model_path, options, split, retries)
        _record(report, image, out, problem)
        if progress is not None:
            progress(n, len(images))
    for n, fut in enumerate(as_completed(futures), len(big) + 1):
        _record(report, *futures[fut], _outcome(fut))
        if progress is not None:
            progress(n, len(images))
    return report


def _record(report: BatchReport, image: Path, out: Path, problem: str | None) -> None:
    if problem is None:
        report.done[image] = out
    else:
        report.failed[image] = problem


def _is_split(image: Path, out: Path, split: SplitOptions | None) -> bool:
    from ..io.writers import STREAMED_SUFFIXES

    if split is None or split.above is None or out.suffix.lower() not in STREAMED_SUFFIXES:
        return False
    from .blocks import is_big

    return is_big(image, split.above)


def _run_split(client, image, out, model_path, options, split, retries) -> str | None:
    from .blocks import run_blocks

    return run_blocks(client, image, out, model_path, options, block=split.block, retries=retries)


def _outcome(future) -> str | None:
    """None when the task wrote its output, else why it did not (one sentence)."""
    if future.status == "error":
        exc = future.exception()
        return f"failed on the cluster after retries: {_first_line(exc)}"
    if future.status == "cancelled":
        return "cancelled (its worker was lost)"
    return future.result()
