"""ONNX Runtime on the CPU: a network exported once per checkpoint, cached, run tile by tile.

:func:`onnx_net` turns a torch network into an :class:`OnnxNet` (called like the network: a
(B, 1, H, W) float32 tensor in, logits out). The export (``torch.onnx.export``, opset
:data:`OPSET`) is written atomically to ``<user cache dir>/napari-poregrain/onnx/<key>.onnx``
(``$NAPARI_POREGRAIN_CACHE_DIR`` overrides the folder), where ``key`` hashes the network's
weights and module types with the torch, onnxruntime and format versions. A file is only ever
loaded from that folder, under the name its key gives, and only when the key stored inside it
matches: a corrupt, truncated or foreign file is exported again. The :data:`KEEP` most
recently used exports are kept. At export the ONNX labels are
compared with torch fp32 on a probe image and the verdict (``exact``) is stored in the file.

ONNX Runtime's CPU kernels give bit-identical logits whatever the thread count, and each tile
is run on its own, so the labels do not depend on the batch either. Engine module: no Qt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch

OPSET = 17
FORMAT = "napari-poregrain/onnx-1"
CACHE_ENV = "NAPARI_POREGRAIN_CACHE_DIR"
KEY_PROP, EXACT_PROP = "poregrain_key", "poregrain_exact"
PROBE = 256
"""Side of the synthetic probe image on which ONNX and torch fp32 labels are compared."""
KEEP = 8
"""Exports kept in the cache (the most recently used); older ones are removed."""


class ExportError(ValueError):
    """The network cannot be exported to ONNX; the message is one sentence."""


def available() -> bool:
    """True when onnxruntime can be imported."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def cache_dir() -> Path:
    """Folder of the exported networks (``$NAPARI_POREGRAIN_CACHE_DIR`` overrides it)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env) / "onnx"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-poregrain")) / "onnx"


def network_key(net: torch.nn.Module) -> str:
    """Hex SHA-256 of ``net``'s weights, module types and the software that exports and runs it."""
    import onnxruntime

    h = hashlib.sha256(f"{FORMAT} {OPSET} {torch.__version__} {onnxruntime.__version__}".encode())
    h.update(" ".join(type(m).__qualname__ for m in net.modules()).encode())
    for name, t in net.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


class OnnxNet:
    """A network run by ONNX Runtime on the CPU; ``exact``: its labels matched torch fp32."""

    def __init__(self, session, exact: bool, key: str) -> None:
        self.session, self.exact, self.key = session, exact, key
        self.input = session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a (B, 1, H, W) batch, each tile run on its own (batch-independent)."""
        x = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        out = [self.session.run(None, {self.input: x[i : i + 1]})[0] for i in range(len(x))]
        return torch.from_numpy(np.concatenate(out))


class _Cache:
    """Sessions by (key, threads), and each live network's key (recomputed when its weights
    change: a parameter's storage or in-place version counter moves)."""

    def __init__(self) -> None:
        self.keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.nets: dict[tuple[str, int], OnnxNet] = {}
        self.failed: dict[str, str] = {}  # key -> why its export failed (not retried)
        self.lock = threading.Lock()

    def key(self, net: torch.nn.Module) -> str:
        stamp = _stamp(net)
        known = self.keys.get(net)
        if known is None or known[0] != stamp:
            known = (stamp, network_key(net))
            self.keys[net] = known
        return known[1]

    def get(self, net: torch.nn.Module, threads: int) -> OnnxNet:
        with self.lock:
            key = self.key(net)
            found = self.nets.get((key, threads))
            if key in self.failed:
                raise ExportError(self.failed[key])
            if found is None:
                try:
                    found = _load_or_export(net, key, threads)
                except ExportError as exc:
                    self.failed[key] = str(exc)
                    raise
                if len(self.nets) >= 4:
                    self.nets.pop(next(iter(self.nets)))
                self.nets[(key, threads)] = found
            return found


def _stamp(net: torch.nn.Module) -> tuple:
    out = []
    for t in net.state_dict().values():
        try:
            out.append((t.data_ptr(), t._version, tuple(t.shape)))
        except RuntimeError:  # an inference tensor has no version counter
            out.append((t.data_ptr(), -1, tuple(t.shape)))
    return tuple(out)


_CACHE = _Cache()


def onnx_net(net: torch.nn.Module, threads: int | None = None) -> OnnxNet:
    """``net`` as an :class:`OnnxNet` on ``threads`` CPU threads (default: torch's count).

    ``net`` should be in eval mode (``predict`` lends it so); the first call per checkpoint
    exports it (a few seconds), later calls and processes load the cached file.
    """
    return _CACHE.get(net, threads or torch.get_num_threads())


def file_digest(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def remember_file(path, net: torch.nn.Module) -> None:
    """Note that the checkpoint file at ``path`` holds ``net``'s weights, so a later process
    can run its cached export without building the torch network (:func:`cached_for_file`).

    Call it only for a network loaded from ``path`` and not changed since.
    """
    from ..io.atomic import atomic_write_bytes

    alias = cache_dir() / "by-file" / f"{file_digest(path)}.key"
    key = _CACHE.key(net)
    try:
        if not (alias.is_file() and alias.read_text() == key):
            atomic_write_bytes(alias, key.encode())
    except OSError:  # only a shortcut for the next run
        pass


def cached_for_file(path, threads: int | None = None) -> OnnxNet | None:
    """The cached export of the checkpoint file at ``path``, or None when there is none yet
    (see :func:`remember_file`) or it is missing, corrupt or holds another network."""
    alias = cache_dir() / "by-file" / f"{file_digest(path)}.key"
    try:
        key = alias.read_text().strip()
    except OSError:
        return None
    if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
        return None
    threads = threads or torch.get_num_threads()
    with _CACHE.lock:
        found = _CACHE.nets.get((key, threads)) or _load(cache_dir() / f"{key}.onnx", key, threads)
        if found is not None:
            _CACHE.nets[(key, threads)] = found
    return found


def _load_or_export(net: torch.nn.Module, key: str, threads: int) -> OnnxNet:
    path = cache_dir() / f"{key}.onnx"
    found = _load(path, key, threads)
    if found is not None:
        return found
    from ..io.atomic import atomic_write_bytes

    try:
        data, exact = _export(net, key)
    except Exception as exc:  # the tracer and exporter raise many types
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ExportError(f"this network cannot be exported to ONNX ({why})") from None
    try:
        atomic_write_bytes(path, data)
        prune(path.parent)
    except OSError:  # a read-only or full cache: run from memory, export again next time
        return OnnxNet(_session(data, threads), exact, key)
    return OnnxNet(_session(path, threads), exact, key)


def prune(folder: Path, keep: int = KEEP) -> None:
    """Remove all but the ``keep`` most recently used exports in ``folder``."""
    files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)


def _load(path: Path, key: str, threads: int) -> OnnxNet | None:
    """The cached network at ``path``, or None when missing, unreadable or not ``key``'s."""
    if not path.is_file():
        return None
    try:
        session = _session(path, threads)
        props = session.get_modelmeta().custom_metadata_map
    except Exception:  # onnxruntime raises its own types for corrupt or truncated files
        return None
    if props.get(KEY_PROP) != key:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # most recently used: kept by prune
    return OnnxNet(session, props.get(EXACT_PROP) == "1", key)


def _session(source, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # no pooled activations kept: ~70 MB less, same speed
    options.log_severity_level = 3
    src = str(source) if isinstance(source, Path) else source
    return ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])


def _export(net: torch.nn.Module, key: str) -> tuple[bytes, bool]:
    """The ONNX file of ``net`` holding ``key`` and whether its labels equal torch fp32's."""
    import onnx

    buf = io.BytesIO()
    dummy = torch.zeros(1, 1, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (dummy,), buf, opset_version=OPSET, dynamo=False, input_names=["image"],
            output_names=["logits"], dynamic_axes={"image": axes, "logits": axes},
        )  # fmt: skip
    exact = _agrees(net, buf.getvalue())
    model = onnx.load_from_string(buf.getvalue())
    for k, v in ((KEY_PROP, key), (EXACT_PROP, "1" if exact else "0")):
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString(), exact


def _agrees(net: torch.nn.Module, data: bytes) -> bool:
    """Whether ONNX Runtime and torch fp32 give the same labels on a synthetic SEM image."""
    from ..preprocess import Normalization, intensity_range, normalize
    from ..synthetic import make_sample

    image, _ = make_sample((PROBE, PROBE), seed=25)
    norm = Normalization()
    x = torch.from_numpy(normalize(image, *intensity_range(image, norm), norm))[None, None]
    with torch.inference_mode():
        ref = net(x).argmax(1).numpy()
    got = OnnxNet(_session(data, torch.get_num_threads()), True, "")(x).argmax(1).numpy()
    return bool(np.array_equal(ref, got))
