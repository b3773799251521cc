"""One huge image split into blocks over dask.distributed workers.

The client opens the image lazily, takes the whole image's intensity range once (the
``intensity_range`` that ``predict`` uses, so every block is normalised alike) and cuts it into
square blocks aligned to the output's zarr chunks (:func:`plan_blocks`). One task per block
(:func:`predict_block`): the worker opens the same file lazily and reads only the window of the
tiles of the one-process tile plan that reach into its block (its halo), blends them as
``predict`` would (so the block's classes equal one process's), crops the halo and writes the
block into one shared zarr label array. No two blocks share a chunk, so the concurrent writes
never collide. The array lives in the temporary folder of an
:class:`~..io.writers.OmeZarrLabelWriter`; when every block succeeded the client finishes it
(``.zarr``: pyramid, image, OME-NGFF metadata, rename) or streams it chunk row by chunk row
through a :class:`~..io.writers.TiffLabelWriter` (``.tif``) and removes it. A block that cannot
be read is named (rows and columns); the other blocks finish, nothing is left under the final
name. Why tasks and not ``map_overlap``: each block reads its own window from the file on its
worker, with no dask graph of the image on the client and no halo exchange between workers; a
failed block is reported as a value, not an exception that cancels the graph.
Engine code: no Qt, no napari.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..io.writers import ZARR_CHUNK, LabelWriterError, OmeZarrLabelWriter, TiffLabelWriter
from .batch import DEFAULT_BLOCK, PredictOptions, _outcome, _worker_model


class Block(NamedTuple):
    """The rows ``y0:y1`` and columns ``x0:x1`` of the image that one task writes."""

    y0: int
    y1: int
    x0: int
    x1: int

    def describe(self) -> str:
        return f"block rows {self.y0}-{self.y1}, columns {self.x0}-{self.x1}"


def check_block(side: int) -> int:
    """``side`` when it is a positive multiple of the zarr chunk, else ValueError."""
    if side < ZARR_CHUNK or side % ZARR_CHUNK:
        raise ValueError(f"the block side must be a multiple of {ZARR_CHUNK}, not {side}")
    return side


def plan_blocks(shape: tuple[int, int], side: int = DEFAULT_BLOCK) -> list[Block]:
    """Blocks of ``side`` pixels covering ``shape`` (the last ones clipped to the edges)."""
    check_block(side)
    rows, width = shape
    return [
        Block(y, min(y + side, rows), x, min(x + side, width))
        for y in range(0, rows, side)
        for x in range(0, width, side)
    ]


def is_big(path: Path, above: int) -> bool:
    """True when the image at ``path`` has more than ``above`` pixels (from its header)."""
    from ..io.files import ImageReadError
    from ..io.lazy import is_zarr, read_lazy
    from ..io.outputs import image_shape

    try:
        shape = read_lazy(path).shape if is_zarr(path) else image_shape(path)
    except ImageReadError:
        return False  # the one-task-per-file path names it
    return shape is not None and shape[0] * shape[1] > above


def predict_block(
    image: str,
    labels: str,
    block: Block,
    shape: tuple[int, int],
    model_path: str,
    options: PredictOptions,
    intensity: tuple[float, float],
) -> str | None:
    """Run on a worker: predict ``block`` of ``image`` into the zarr array at ``labels``.

    ``shape``: the image's rows above the data bar and its width. Returns None when written,
    or one sentence when the block cannot be read (not retried).
    """
    import zarr

    from ..inference.device import LentModel, resolve_device
    from ..io.files import reason
    from ..io.lazy import read_lazy

    if block.y0 >= shape[0]:
        return None  # below the data bar: class 0, the array's fill value
    model = _worker_model(model_path)
    device = resolve_device(options.device)
    with LentModel(model.net, device) as net:
        plan, (y0, x0, y1, x1) = _block_plan(net, device, options, shape, block)
        try:
            source = read_lazy(image)
            window = np.asarray(source.pixels[y0:y1, x0:x1])
        except Exception as exc:  # tifffile, zarr and the codecs raise many types
            return f"{block.describe()} cannot be read ({reason(exc)})"
        classes = _classes(window, source.rgb, plan, model.meta.normalization, intensity)
    end = min(block.y1, shape[0])
    core = classes[block.y0 - y0 : end - y0, block.x0 - x0 : block.x1 - x0]
    zarr.open_array(labels, mode="r+")[block.y0 : end, block.x0 : block.x1] = core
    return None


def _block_plan(net, device, options: PredictOptions, shape: tuple[int, int], block: Block):
    """The whole image's tile plan cut to the tiles that touch ``block``, and their window.

    Every pixel of the block then gets the same tiles, blend weights and order of sums as in
    one ``predict`` of the whole image, so the same class; the window is the block's halo.
    Returns the plan (tile starts relative to the window) and ``(y0, x0, y1, x1)``.
    """
    from ..inference.backend import resolve_backend
    from ..inference.tiling import DEFAULT_OVERLAP, make_plan

    overlap = DEFAULT_OVERLAP if options.overlap is None else options.overlap
    engine = resolve_backend(options.backend, device, options.precision)
    runner = engine.network(net)
    plan = make_plan(runner, device, engine.dtype, *shape, options.tile, overlap,
                     options.batch_size)  # fmt: skip
    end = min(block.y1, shape[0])
    ys = [y for y in plan.ys if y < end and y + plan.tile_h > block.y0]
    xs = [x for x in plan.xs if x < block.x1 and x + plan.tile_w > block.x0]
    y0, x0 = ys[0], xs[0]
    y1, x1 = min(shape[0], ys[-1] + plan.tile_h), min(shape[1], xs[-1] + plan.tile_w)
    plan.ys, plan.xs = [y - y0 for y in ys], [x - x0 for x in xs]
    return plan, (y0, x0, y1, x1)


def _classes(window: np.ndarray, rgb: bool, plan, norm, intensity) -> np.ndarray:
    """The class map of ``window`` run tile by tile as ``predict`` runs an image's slice."""
    from ..inference.predict import _SliceJob
    from ..inference.tiling import blend_tiles
    from ..sample import Sample

    part = Sample.from_array(window, rgb=rgb)
    out = np.zeros(part.shape, np.uint8)
    job = _SliceJob(part, plan, norm, out, None, intensity)
    blend_tiles(job.tile_input, part.shape, plan, job.write)
    return out


def run_blocks(
    client,
    image: Path,
    target: Path,
    model_path: Path,
    options: PredictOptions,
    *,
    block: int = DEFAULT_BLOCK,
    retries: int = 2,
) -> str | None:
    """Predict ``image`` block by block on ``client``'s workers into ``target`` (.tif or .zarr).

    Returns None when ``target`` is written, else one sentence (nothing is left under
    ``target``).
    """
    from ..io.files import ImageReadError, reason
    from ..io.lazy import read_lazy
    from ..preprocess import intensity_range

    model_path = Path(model_path).resolve()
    try:
        sample = read_lazy(image)
        norm = _worker_model(str(model_path)).meta.normalization
        intensity = intensity_range(sample.content(), norm, sample.rgb)
    except (ImageReadError, ValueError) as exc:
        return str(exc)
    except Exception as exc:  # a corrupt file: tifffile, zarr and the codecs raise many types
        return f"cannot be read ({reason(exc)})"
    try:
        staging = _staging(Path(target), sample)
        try:
            problem = _gather(_submit(client, image, staging, sample, model_path, options,
                                      intensity, block, retries))  # fmt: skip
            if problem is None:
                _finish(staging, Path(target))
        finally:
            staging.abort()  # a no-op once finished: the folder has been renamed
    except LabelWriterError as exc:
        return str(exc)
    return problem


def _staging(target: Path, sample) -> OmeZarrLabelWriter:
    """The OME-Zarr whose temporary label array the blocks go into (for a TIFF: never claimed)."""
    if target.suffix.lower() == ".zarr":
        return OmeZarrLabelWriter(target, sample.shape, sample.pixel_size_nm, sample.pixels)
    return OmeZarrLabelWriter(target.with_name(f"{target.name}.zarr"), sample.shape)


def _submit(client, image, staging, sample, model_path, options, intensity, block, retries):
    """One task per block; returns {future: block}."""
    labels = str(staging.tmp / "labels" / "classes" / "0")
    rest = ((sample.rows, sample.width), str(model_path), options, intensity)
    return {
        client.submit(
            predict_block, str(image), labels, b, *rest, key=f"poregrain-block-{uuid.uuid4().hex}",
            retries=retries, pure=False,
        ): b
        for b in plan_blocks(sample.shape, block)
    }  # fmt: skip


def _gather(futures: dict) -> str | None:
    """Wait for every block; None when all were written, else the first failure (and a count)."""
    from distributed import as_completed

    failed = []
    for fut in as_completed(futures):
        problem = _outcome(fut)
        if problem is not None:
            failed.append((futures[fut], problem))
    if not failed:
        return None
    failed.sort()
    block, problem = failed[0]
    if not problem.startswith("block "):
        problem = f"{block.describe()} {problem}"
    more = f" (and {len(failed) - 1} other blocks)" if len(failed) > 1 else ""
    return f"{problem}{more}; nothing was written"


def _finish(staging: OmeZarrLabelWriter, target: Path) -> None:
    """Claim the OME-Zarr, or stream its class map into a tiled TIFF at ``target``."""
    if staging.path == target:
        staging.finish()
        return
    level0 = staging.level0
    with TiffLabelWriter(target, level0.shape, staging.pixel_size_nm) as tiff:
        for r0 in range(0, level0.shape[0], ZARR_CHUNK):
            tiff.write(r0, 0, np.asarray(level0[r0 : r0 + ZARR_CHUNK]))


__all__ = ["DEFAULT_BLOCK", "Block", "check_block", "plan_blocks", "predict_block", "run_blocks"]
