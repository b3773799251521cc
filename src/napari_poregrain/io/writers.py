"""Streaming label writers: blocks in, a tiled TIFF or an OME-Zarr image out, memory bounded.

``predict(..., out=writer)`` hands each final block of classes to ``writer.write(y0, x0,
block)`` as :func:`~napari_poregrain.inference.tiling.blend_tiles` produces it; nothing holds the
whole label map. Both writers build their output under a temporary name in the target's folder
and claim the final name only in :meth:`finish`; :meth:`abort` (any exception inside a ``with``
block) removes the partial output. Rows never written (below a data bar) are class 0.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import CLASS_NAMES, LAYER_COLOURS

TIFF_TILE = 256
FORMATS = ("tiff", "zarr")
_RGBA = {"red": [255, 0, 0, 255], "green": [0, 255, 0, 255]}


class LabelWriterError(OSError):
    """Writing a label file failed; the message is one sentence naming the final path."""


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name in ``path``'s folder (the same file system, so a rename claims it),
    of a fixed length (:func:`.atomic.temporary_path`)."""
    from .atomic import temporary_path

    return temporary_path(path)


class _Writer:
    """Life cycle: ``with`` finishes on success, aborts (removes the partial output) on error."""

    path: Path
    tmp: Path

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.finish()
        else:
            self.abort()

    def finish(self) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:
        _remove(self.tmp)

    def _claim(self, claim: Any) -> None:
        """``claim(tmp, path)``; when the name refuses the finished file, it is kept under a
        short name beside it (:func:`.atomic.short_name`) and the error says where."""
        try:
            claim(self.tmp, self.path)
        except OSError as exc:
            from .atomic import short_name

            kept = short_name(self.path)
            try:
                os.replace(self.tmp, kept)
            except OSError:
                raise exc from None
            text = (exc.strerror or str(exc)).lower()
            raise LabelWriterError(
                f"Cannot write {self.path}: {text}; the class map is kept as {kept}."
            ) from None

    def _fail(self, exc: BaseException) -> LabelWriterError:
        self.abort()
        text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        return LabelWriterError(f"Cannot write {self.path}: {text}; nothing was written there.")


class TiffLabelWriter(_Writer):
    """A (Y, X) uint8 class map as a tiled, zlib-compressed TIFF, written tile row by tile row.

    Blocks may arrive in any order within a band; a tile row goes to the file once all its
    rows are complete. tifffile pulls tiles from an iterator in a writer thread, so only the
    band of unfinished rows and a few tile rows in flight are held.
    """

    def __init__(
        self, path: str | os.PathLike, shape: tuple[int, int], pixel_size_nm: float | None = None
    ) -> None:
        self.path = Path(path)
        self.height, self.width = (int(n) for n in shape)
        self.tmp = temporary_sibling(self.path)
        self.top = 0  # first row not yet sent to the file
        self.band = np.zeros((0, self.width), np.uint8)  # rows top .. top + len(band)
        self.filled = np.zeros(self.height, np.int64)  # pixels written per row
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = _tiff_kwargs(self.height, self.width, pixel_size_nm)
        self.thread = threading.Thread(target=self._run, args=(kwargs,), daemon=True)
        self.thread.start()

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        """Place a block of classes at ``(y0, x0)``; complete tile rows go to the file."""
        h, w = block.shape
        end = y0 + h - self.top
        if end > len(self.band):
            grow = np.zeros((end - len(self.band), self.width), np.uint8)
            self.band = np.concatenate([self.band, grow])
        self.band[y0 - self.top : end, x0 : x0 + w] = block
        self.filled[y0 : y0 + h] += w
        while self.top < self.height:
            stop = min(self.top + TIFF_TILE, self.height)
            if not (self.filled[self.top : stop] >= self.width).all():
                break
            self._send_row()

    def finish(self) -> Path:
        """Send the remaining rows (unwritten ones as 0), then claim the final name."""
        try:
            while self.top < self.height:
                self._send_row()
            self._put(None)
            self.thread.join()
            if self.error is not None:
                raise self.error
            self._claim(os.replace)
        except LabelWriterError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        return self.path

    def abort(self) -> None:
        if self.thread.is_alive():
            self.error = self.error or RuntimeError("aborted")
            while self.thread.is_alive():
                try:
                    self.queue.put(False, timeout=0.1)
                except queue.Full:
                    continue
            self.thread.join()
        super().abort()

    def _send_row(self) -> None:
        rows = min(TIFF_TILE, self.height - self.top)
        if len(self.band) < rows:
            pad = np.zeros((rows - len(self.band), self.width), np.uint8)
            self.band = np.concatenate([self.band, pad])
        part, self.band = self.band[:rows], self.band[rows:].copy()
        tiles = np.zeros((TIFF_TILE, -(-self.width // TIFF_TILE) * TIFF_TILE), np.uint8)
        tiles[:rows, : self.width] = part
        self._put(tiles)
        self.top += rows

    def _put(self, item: Any) -> None:
        while True:
            if item is None and self.error is None and not self.thread.is_alive():
                return  # tifffile took its last tile and closed the file before the end mark
            if self.error is not None or not self.thread.is_alive():
                raise self._fail(self.error or RuntimeError("the TIFF writer stopped"))
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _tiles(self):
        """Tiles for tifffile, in file order, as complete tile rows arrive."""
        while True:
            row = self.queue.get()
            if row is None:
                return
            if row is False:
                raise RuntimeError("aborted")
            for x in range(0, row.shape[1], TIFF_TILE):
                yield row[:, x : x + TIFF_TILE]

    def _run(self, kwargs: dict) -> None:
        import tifffile

        try:
            tifffile.imwrite(self.tmp, data=self._tiles(), **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the writing thread
            self.error = self.error or exc
            while not self.queue.empty():  # unblock a producer waiting on a full queue
                self.queue.get_nowait()


def _tiff_kwargs(height: int, width: int, pixel_size_nm: float | None) -> dict:
    kwargs: dict[str, Any] = {
        "shape": (height, width),
        "dtype": np.uint8,
        "tile": (TIFF_TILE, TIFF_TILE),
        "compression": "zlib",
        "photometric": "minisblack",
        "bigtiff": height * width > 2**31,
        "metadata": None,
    }
    if pixel_size_nm:
        per_cm = 1e7 / pixel_size_nm
        kwargs["resolution"] = (per_cm, per_cm)
        kwargs["resolutionunit"] = "CENTIMETER"
    return kwargs


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def label_colours() -> list[dict]:
    """OME-NGFF ``image-label`` colours of the foreground classes (napari's layer colours)."""
    return [{"label-value": k, "rgba": _RGBA[c]} for k, c in LAYER_COLOURS.items()]


def label_properties() -> list[dict]:
    return [{"label-value": k, "class": name} for k, name in enumerate(CLASS_NAMES)]


ZARR_CHUNK = 512
LABEL_NAME = "classes"


class OmeZarrLabelWriter(_Writer):
    """An OME-Zarr image (NGFF 0.4) with its class map under ``labels/classes``.

    Blocks of classes go straight into the chunked level-0 label array; :meth:`finish` copies
    the image's pixels (a lazy array is read a band of rows at a time), builds both pyramids by
    2x subsampling band by band, writes the multiscales and ``image-label`` metadata (class
    colours and names), and claims the final folder name.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, int],
        pixel_size_nm: float | None = None,
        image: Any = None,
    ) -> None:
        import zarr

        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.pixel_size_nm, self.image = pixel_size_nm, image
        self.tmp = temporary_sibling(self.path)
        try:
            self.root = zarr.open_group(self.tmp, mode="w", zarr_format=2)
            self.labels = self.root.require_group(f"labels/{LABEL_NAME}")
            self.level0 = _zarr_array(self.labels, "0", self.shape, np.uint8)
        except Exception as exc:
            raise self._fail(exc) from exc

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        h, w = block.shape
        try:
            self.level0[y0 : y0 + h, x0 : x0 + w] = block
        except Exception as exc:
            raise self._fail(exc) from exc

    def finish(self) -> Path:
        try:
            n = _pyramid(self.labels, self.level0)
            self.labels.attrs.update(self._multiscales(n, "nearest") | _image_label())
            self.root["labels"].attrs.update({"labels": [LABEL_NAME]})
            if self.image is not None:
                first = _zarr_array(self.root, "0", self.shape, self.image.dtype)
                _copy_rows(self.image, first)
                n = _pyramid(self.root, first)
            self.root.attrs.update(self._multiscales(n, "subsample"))
            self._claim(_claim_folder)
        except LabelWriterError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        return self.path

    def _multiscales(self, levels: int, method: str) -> dict:
        size = self.pixel_size_nm or 1.0
        axes = [{"name": a, "type": "space"} for a in ("y", "x")]
        if self.pixel_size_nm:
            axes = [a | {"unit": "nanometer"} for a in axes]
        datasets = [
            {
                "path": str(i),
                "coordinateTransformations": [{"type": "scale", "scale": [size * 2**i] * 2}],
            }
            for i in range(levels)
        ]
        entry = {"version": "0.4", "name": self.path.stem, "axes": axes, "datasets": datasets}
        return {"multiscales": [entry | {"type": method}]}


def _image_label() -> dict:
    return {
        "image-label": {
            "version": "0.4",
            "colors": label_colours(),
            "properties": label_properties(),
            "source": {"image": "../../"},
        }
    }


def _zarr_array(group: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    chunks = tuple(min(ZARR_CHUNK, n) for n in shape)
    return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


def _copy_rows(source: Any, target: Any) -> None:
    """Copy ``source`` into ``target`` a band of chunk rows at a time."""
    for r0 in range(0, target.shape[0], ZARR_CHUNK):
        target[r0 : r0 + ZARR_CHUNK] = np.asarray(source[r0 : r0 + ZARR_CHUNK])


def _pyramid(group: Any, level: Any) -> int:
    """Add 2x-subsampled levels ``1, 2, ...`` until the image fits one chunk; return the count."""
    n = 1
    while max(level.shape) > ZARR_CHUNK:
        shape = tuple(-(-s // 2) for s in level.shape)
        nxt = _zarr_array(group, str(n), shape, level.dtype)
        for r0 in range(0, shape[0], ZARR_CHUNK):
            band = np.asarray(level[2 * r0 : 2 * (r0 + ZARR_CHUNK)])
            nxt[r0 : r0 + ZARR_CHUNK] = band[::2, ::2]
        level, n = nxt, n + 1
    return n


def _claim_folder(tmp: Path, path: Path) -> None:
    """Rename the finished folder to ``path``; an existing output is replaced only after."""
    old = None
    if path.exists():
        old = temporary_sibling(path)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        _remove(old)


STREAMED_SUFFIXES = (".tif", ".tiff", ".zarr")
"""Label-file suffixes the streaming writers handle (:func:`open_label_writer`)."""


def open_label_writer(
    path: str | os.PathLike,
    shape: tuple[int, int],
    pixel_size_nm: float | None = None,
    image: Any = None,
) -> TiffLabelWriter | OmeZarrLabelWriter:
    """The writer for ``path``'s suffix: ``.zarr`` (OME-Zarr, with ``image``) or ``.tif(f)``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".zarr":
        return OmeZarrLabelWriter(path, shape, pixel_size_nm, image)
    if suffix in (".tif", ".tiff"):
        return TiffLabelWriter(path, shape, pixel_size_nm)
    raise ValueError(f"Cannot write labels {path}: streamed label maps are .tif or .zarr.")
