"""GPU figures: forward throughput, peak memory and fp16/bf16 label agreement on CUDA.

    python benchmarks/gpu.py [--model PATH|default] [--tiles 512,1024,1536,2048]
        [--batches 1,2,4,8,16] [--iters 5] [--quick]

For every tile side and batch: MP/s of the network forward as ``predict`` runs it
(``inference.device.forward``: channels_last, autocast, softmax back on the host) in fp32, bf16
and fp16; peak GPU memory (``torch.cuda.max_memory_allocated``); and the share of pixels whose
class under bf16/fp16 equals fp32's on the same tiles (cut from a synthetic SEM-like image).
A case that runs out of memory is reported as such. Without CUDA the
script prints one line and exits 0. Results: benchmarks/results/gpu.json.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
from _common import (
    describe_machine,
    int_list,
    load_model,
    machine_info,
    save_results,
    script_parser,
    synthetic_image,
    table,
)

from napari_poregrain.inference.device import forward
from napari_poregrain.preprocess import intensity_range, normalize

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COLUMNS = [("tile", "tile"), ("batch", "batch"), ("precision", "precision"),
           ("mp_per_s", "MP/s"), ("peak_gb", "peak GB"), ("agree", "agree vs fp32")]  # fmt: skip


def tiles(model, side: int, batch: int) -> torch.Tensor:
    """A (batch, 1, side, side) normalised input cut from a synthetic SEM-like image."""
    image = synthetic_image(side * 2, side * 2)
    norm = model.meta.normalization
    x = normalize(image, *intensity_range(image, norm), norm)
    rng = np.random.default_rng(side + batch)
    out = []
    for _ in range(batch):
        y0, x0 = rng.integers(0, side, size=2)
        out.append(x[y0 : y0 + side, x0 : x0 + side])
    return torch.from_numpy(np.stack(out))[:, None]


class Case:
    """One tile side and batch: times each precision and compares its labels with fp32."""

    def __init__(self, net, x: torch.Tensor, iters: int) -> None:
        self.net, self.x, self.iters = net, x, iters
        self.dev = torch.device("cuda")

    def run(self, name: str) -> tuple[dict, torch.Tensor | None]:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            probs = forward(self.net, self.x, self.dev, DTYPES[name])  # warm-up
            times = []
            for _ in range(self.iters):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                forward(self.net, self.x, self.dev, DTYPES[name])
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        except torch.cuda.OutOfMemoryError:
            return {"precision": name, "note": "out of memory"}, None
        mp = self.x.shape[0] * self.x.shape[-1] * self.x.shape[-2] / 1e6
        peak = torch.cuda.max_memory_allocated() / 2**30
        row = {"precision": name, "mp_per_s": mp / statistics.median(times), "peak_gb": peak}
        row["all_seconds"] = times
        return row, probs.argmax(1)


def main(argv: list[str] | None = None) -> int:
    p = script_parser(__doc__)
    p.add_argument("--tiles", type=int_list, help="tile sides (512,1024,1536,2048)")
    p.add_argument("--batches", type=int_list, help="batch sizes (1,2,4,8,16)")
    p.add_argument("--iters", type=int, help="timed forwards per case (5)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU on this machine, so no GPU figure was taken")
        return 0
    sides = args.tiles or ([64, 128] if args.quick else [512, 1024, 1536, 2048])
    batches = args.batches or ([1, 2] if args.quick else [1, 2, 4, 8, 16])
    iters = args.iters or (1 if args.quick else 5)
    print(describe_machine(machine_info("cuda")))
    model, desc = load_model(args.model)
    net = model.net.to("cuda").eval().to(memory_format=torch.channels_last)
    rows = []
    for side in sides:
        for batch in batches:
            case = Case(net, tiles(model, side, batch), iters)
            ref = None
            for name in DTYPES:
                row, labels = case.run(name)
                ref = labels if name == "fp32" else ref
                if labels is not None and ref is not None:
                    row["agree"] = float((labels == ref).float().mean())
                rows.append({"tile": side, "batch": batch, **row})
    print(table(rows, COLUMNS))
    save_results("gpu", {"model": desc, "rows": rows}, args, argv, script=__file__, device="cuda")
    return 0


if __name__ == "__main__":
    sys.exit(main())
