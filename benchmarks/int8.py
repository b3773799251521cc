"""int8 on ONNX Runtime: static QDQ quantisation with sensitive layers kept in float.

    python benchmarks/int8.py [--model default] [--calib 12] [--method minmax] [--quick]

The model's fp32 export (the backend's cache) is quantised statically (QDQ, per-channel int8
weights, uint8 activations; --method calibration, MinMax by default) on --calib images of the
shared data (Duvernay tiles 0000-0011, crops of Zeiss train_1-3), once per choice of layers
kept in float: none, the first convolution, the refinement head and classifier, both, and both
plus the decoder. Each variant's labels are compared with ONNX Runtime fp32 on images it was
not calibrated on (Zeiss train_4 above its data bar, Duvernay tiles 0056-0069), whole images
in one forward; speed is the median of --repeat forwards of a 768 x 768 tile. int8 is offered
only if a variant agrees >= 99.5% on every image. Results: benchmarks/results/int8-METHOD.json.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import describe_machine, load_model, machine_info, script_parser, table, write_results

from napari_poregrain.inference import onnx
from napari_poregrain.io.images import read_sample
from napari_poregrain.preprocess import intensity_range, normalize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIRST = ["/encoder/conv1/Conv"]
METHODS = {
    "minmax": lambda c: c.MinMax,
    "percentile": lambda c: c.Percentile,
    "entropy": lambda c: c.Entropy,
}
COLUMNS = [("variant", "kept in float"), ("ms_per_tile", "ms / 768² tile")]
COLUMNS += [("speedup", "x fp32"), ("agree_min", "agree min"), ("agree_mean", "agree mean")]


def network_input(path: Path, norm) -> np.ndarray:
    """The normalised content of an image (above its data bar), padded to a multiple of 16."""
    sample = read_sample(path)
    pixels = np.asarray(sample.content(), np.float32)
    x = normalize(pixels, *intensity_range(pixels, norm), norm)
    h, w = (-(-n // 16) * 16 for n in x.shape)
    return np.pad(x, ((0, h - x.shape[0]), (0, w - x.shape[1])), mode="reflect")[None, None]


def image_sets(norm, n_calib: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration inputs, evaluation inputs) from the shared data."""
    duv = sorted((DATA / "duvernay-grains" / "images").glob("*.tif"))
    zeiss = sorted((DATA / "zeiss-shale-pores" / "images").glob("*.tif"))
    calib = [network_input(p, norm) for p in duv[: n_calib // 2]]
    for p in zeiss[:3]:
        x = network_input(p, norm)
        calib += [x[..., :512, i : i + 512] for i in (0, 512)]
    evaluate = [network_input(p, norm) for p in zeiss[3:4] + duv[56:70]]
    return calib[:n_calib], evaluate


class Reader:
    """onnxruntime's CalibrationDataReader over a list of inputs."""

    def __init__(self, inputs: list[np.ndarray]) -> None:
        self.items = iter(inputs)

    def get_next(self):
        x = next(self.items, None)
        return None if x is None else {"image": x}


def quantise(src: Path, dst: Path, calib, keep: list[str], method: str = "minmax") -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src), str(dst), Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=METHODS[method](CalibrationMethod), nodes_to_exclude=keep,
    )  # fmt: skip


def variants(graph: Path) -> dict[str, list[str]]:
    import onnx as onnx_lib

    convs = [n.name for n in onnx_lib.load(str(graph)).graph.node if n.op_type == "Conv"]
    head = [c for c in convs if c.startswith(("/refine", "/segmentation_head"))]
    decoder = [c for c in convs if c.startswith("/decoder")]
    return {
        "nothing (all int8)": [],
        "first conv": FIRST,
        "refine head + classifier": head,
        "first conv + head + classifier": FIRST + head,
        "first conv + head + classifier + decoder": FIRST + head + decoder,
    }


def measure(session, fp32_labels, evaluate, repeat: int) -> dict:
    tile = np.ascontiguousarray(evaluate[0][..., :768, :768])
    session.run(None, {"image": tile})
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        session.run(None, {"image": tile})
        times.append(time.perf_counter() - t0)
    agree = [
        float((session.run(None, {"image": x})[0].argmax(1) == ref).mean())
        for x, ref in zip(evaluate, fp32_labels)
    ]
    return {"ms_per_tile": 1000 * statistics.median(times), "agree_min": min(agree),
            "agree_mean": float(np.mean(agree)), "agree": agree}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = script_parser(__doc__)
    p.add_argument("--calib", type=int, default=12, help="calibration images (12)")
    p.add_argument("--repeat", type=int, default=5, help="timed forwards per variant (5)")
    p.add_argument("--method", choices=list(METHODS), default="minmax", help="calibration")
    p.add_argument("--only", help="run only the variants whose name contains this text")
    args = p.parse_args(argv)
    print(describe_machine(machine_info("cpu")))
    model, desc = load_model(args.model)
    calib, evaluate = image_sets(model.meta.normalization, 2 if args.quick else args.calib)
    evaluate = evaluate[:2] if args.quick else evaluate
    fp32 = onnx.onnx_net(model.net.eval(), torch.get_num_threads())
    graph = onnx.cache_dir() / f"{fp32.key}.onnx"
    fp32_labels = [fp32.session.run(None, {"image": x})[0].argmax(1) for x in evaluate]
    rows = [
        {
            "variant": "fp32 (reference)",
            **measure(fp32.session, fp32_labels, evaluate, args.repeat),
        }
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, keep in variants(graph).items():
            if args.only and args.only not in name:
                continue
            out = Path(tmp) / "q.onnx"
            quantise(graph, out, calib, keep, args.method)
            session = onnx._session(out, torch.get_num_threads())
            row = measure(session, fp32_labels, evaluate, args.repeat)
            rows.append({"variant": name, **row})
            print(f"{name}: {rows[-1]['agree_min']:.4f} min agreement", flush=True)
    for row in rows:
        row["speedup"] = rows[0]["ms_per_tile"] / row["ms_per_tile"]
    offer = any(r["agree_min"] >= 0.995 for r in rows[1:])
    print(table(rows, COLUMNS))
    print(f"int8 {'meets' if offer else 'misses'} the 99.5% bar on every image")
    path = write_results(f"int8-{args.method}", {"model": desc, "rows": rows, "offer_int8": offer},
                         script=__file__, argv=argv, out_dir=args.out, quick=args.quick,
                         device="cpu")  # fmt: skip
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
