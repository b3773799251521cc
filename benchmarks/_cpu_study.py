"""The CPU path study of ``benchmarks/inference.py``: each way to run the network on the CPU
against plain fp32 (speed-up and argmax agreement)."""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from _common import interleaved, megapixels, synthetic_image
from torch import nn

from napari_poregrain.inference.device import autocast, resolve_precision
from napari_poregrain.model import LoadedModel
from napari_poregrain.preprocess import intensity_range, normalize, to_grey

NOT_INSTALLED = "not tried: not installed"
PLAIN = "fp32, no_grad, NCHW (plain)"
TORCHSCRIPT = "TorchScript freeze + optimize_for_inference, fp32"
STUDY = [
    ("variant", "variant"),
    ("threads", "threads"),
    ("seconds", "s"),
    ("mp_per_s", "MP/s"),
    ("speedup", "speed-up"),
    ("agreement", "agreement"),
]


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold each BatchNorm2d registered right after a Conv2d in the same parent into the conv.

    Eval-mode only. In smp's ResNet encoders and the DeepLabV3+ ASPP/decoder blocks this
    registration order is also the data flow; the study checks the result against fp32.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = net.eval()
    for parent in list(net.modules()):
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = nn.Identity()
    return net


def _study_input(model: LoadedModel, tile: int, batch: int) -> torch.Tensor:
    """``batch`` normalised crops of a synthetic SEM image, (B, 1, tile, tile) NCHW."""
    img = synthetic_image(tile, tile * batch, seed=1)
    norm = model.meta.normalization
    x = torch.from_numpy(normalize(to_grey(img), *intensity_range(img, norm), norm))
    return torch.stack([x[:, i * tile : (i + 1) * tile] for i in range(batch)])[:, None]


class CpuRun:
    """One timed call: ``net(x)`` on the CPU under a grad mode, autocast, threads and oneDNN."""

    def __init__(
        self,
        net,
        x: torch.Tensor,
        grad: str = "inference",
        dtype: torch.dtype = torch.float32,
        n_threads: int | None = None,
        mkldnn: bool = True,
    ) -> None:
        self.net, self.x, self.grad, self.dtype = net, x, grad, dtype
        self.n_threads, self.mkldnn = n_threads, mkldnn

    def __call__(self) -> torch.Tensor:
        ctx = torch.inference_mode() if self.grad == "inference" else torch.no_grad()
        with contextlib.ExitStack() as stack:
            if self.n_threads is not None:
                stack.callback(torch.set_num_threads, torch.get_num_threads())
                torch.set_num_threads(self.n_threads)
            stack.enter_context(ctx)
            stack.enter_context(autocast(torch.device("cpu"), self.dtype))
            if not self.mkldnn:
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")  # a TF32 notice about Intel GPUs
                stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
            return self.net(self.x).float()


def cpu_study(
    model: LoadedModel,
    *,
    tile: int,
    batch: int,
    repeat: int,
    threads: list[int],
    compile_mode: str | None = None,
) -> list[dict]:
    """Each CPU inference path's speed-up and argmax agreement against plain fp32."""
    net = copy.deepcopy(model.net).to(torch.device("cpu")).eval()
    x = _study_input(model, tile, batch).contiguous()
    variants, failed = _variants(net, x, threads, compile_mode)
    outputs = _warm_up(variants, failed)
    times = interleaved({k: v[0] for k, v in variants.items()}, repeat)
    base = min(times[PLAIN])
    mp = megapixels(batch, tile, tile)
    rows = []
    for name, ts in times.items():
        best = min(ts)
        rows.append(
            {
                "variant": name,
                "threads": variants[name][1],
                "seconds": best,
                "all_seconds": ts,
                "mp_per_s": mp / best,
                "speedup": base / best,
                "agreement": float((outputs[name] == outputs[PLAIN]).float().mean()),
            }
        )
    rows.extend({"variant": name, "note": why} for name, why in failed.items())
    rows.append({"variant": "ONNX Runtime", "note": onnxruntime_status()})
    return rows


def _variants(net: nn.Module, x: torch.Tensor, threads: list[int], compile_mode: str | None):
    """``({name: (run, threads, warm-up calls)}, {name: why it could not be tried})``."""
    base_threads = torch.get_num_threads()
    cl = torch.channels_last
    x_cl = x.contiguous(memory_format=cl)
    net_cl = copy.deepcopy(net).to(memory_format=cl)
    folded = fold_batchnorm(copy.deepcopy(net)).to(memory_format=cl)
    bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    runs = {
        PLAIN: CpuRun(net, x, "no_grad"),
        "+ inference_mode": CpuRun(net, x),
        "+ channels_last": CpuRun(net_cl, x_cl),
        "+ channels_last + conv-BN folded": CpuRun(folded, x_cl),
    }
    if bf16:
        runs["+ channels_last + bf16 autocast"] = CpuRun(net_cl, x_cl, dtype=torch.bfloat16)
        runs["+ channels_last + bf16 + conv-BN folded"] = CpuRun(
            folded, x_cl, dtype=torch.bfloat16
        )
    runs["fp32 NCHW with oneDNN off (native conv)"] = CpuRun(net, x, mkldnn=False)
    variants = {name: (run, base_threads, 1) for name, run in runs.items()}
    failed = {}
    scripted = _torchscript(net_cl, x_cl)
    if callable(scripted):
        variants[TORCHSCRIPT] = (CpuRun(scripted, x_cl), base_threads, 2)
    elif scripted is not None:
        failed[TORCHSCRIPT] = scripted
    if compile_mode is not None:
        compiled = torch.compile(copy.deepcopy(net_cl), mode=compile_mode)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))[: 1 + bf16]:
            run = CpuRun(compiled, x_cl, dtype=dtype)
            variants[f"torch.compile({compile_mode}) channels_last {name}"] = (
                run,
                base_threads,
                2,
            )
    variants.update(_thread_variants(net, x, net_cl, x_cl, threads, base_threads))
    return variants, failed


def _thread_variants(net, x, net_cl, x_cl, threads: list[int], base_threads: int) -> dict:
    """Plain fp32 and the ``predict`` path at each other thread count."""
    dtype = resolve_precision("auto", torch.device("cpu"))
    path = "predict() path: channels_last" + (" + bf16" if dtype == torch.bfloat16 else " fp32")
    variants = {}
    for t in threads:
        if t == base_threads:
            continue
        variants[f"plain fp32 @ {t} thread(s)"] = (CpuRun(net, x, "no_grad", n_threads=t), t, 1)
        variants[f"{path} @ {t} thread(s)"] = (
            CpuRun(net_cl, x_cl, dtype=dtype, n_threads=t),
            t,
            1,
        )
    return variants


def _warm_up(variants: dict, failed: dict) -> dict:
    """Run each variant's warm-up calls; drop (into ``failed``) those that raise."""
    outputs = {}
    for name, (run, _, warm) in list(variants.items()):
        try:
            for _ in range(warm):
                outputs[name] = run().argmax(1)
        except Exception as exc:  # noqa: BLE001 - a path that fails is a result too
            failed[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            del variants[name]
    return outputs


def _torchscript(net: nn.Module, x: torch.Tensor):
    """A frozen, inference-optimised TorchScript trace of ``net``, or why it failed."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(copy.deepcopy(net), x)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception as exc:  # noqa: BLE001
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def onnxruntime_status() -> str:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return NOT_INSTALLED
    return "measured in the backends section"
