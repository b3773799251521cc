"""Fine-tuning on one corrected 1024x1024 image: how long it takes and what IoU it gains.

    python benchmarks/finetune.py [--model normal|default|PATH] [--steps 60,120,200] [--quick]

The scenario of the fine-tuning loop: a model meets images from another microscope or detector,
played by the synthetic generator's shifted style (``synthetic.SHIFTED``). One 1024x1024
shifted image with exact labels stands for the user's corrected image; a second one (another
seed) is held out. For each step budget the script times ``training.train`` on the corrected
image (wall clock, everything included: normalisation, crops, augmentation, the validations on
the held-out block and the checkpoint writes) and scores the held-out image with ``predict``
before and after (per-class IoU).

The starting model (``--model``): ``normal`` trains one on the normal synthetic style first
(``--base-steps``; not timed, cached in the temp folder), ``default`` is the shipped model (the
``normal`` base when none is installed), or a checkpoint file. Results:
benchmarks/results/finetune.json. Goal: a useful gain in under 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import (
    apply_threads,
    describe_machine,
    int_list,
    machine_info,
    script_parser,
    table,
    write_results,
)

from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.classes import CLASS_NAMES
from napari_poregrain.inference.predict import predict, resolve_device
from napari_poregrain.model import DEFAULT_MODEL_PATH, LoadedModel, load_checkpoint
from napari_poregrain.synthetic import SHIFTED, make_sample
from napari_poregrain.training import TrainConfig, train

CORRECTED_SEED, HELD_OUT_SEED = 301, 302
COLUMNS = [
    ("steps", "steps"),
    ("seconds", "time s"),
    ("steps_per_s", "steps/s"),
    ("iou_matrix", "IoU matrix"),
    ("iou_grain", "IoU grain"),
    ("iou_pore", "IoU pore"),
    ("mean_iou", "mean IoU"),
    ("gain", "gain"),
    ("best_epoch", "best epoch"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__)
    p.set_defaults(model="normal")
    p.add_argument("--steps", type=int_list, help="step budgets (default 60,120,200; quick 3)")
    p.add_argument("--size", type=int, help="side of the corrected and held-out images (1024)")
    p.add_argument("--crop", type=int, default=256, help="training crop (default 256)")
    p.add_argument("--batch", type=int, default=4, help="crops per step (default 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--base-steps", type=int, help="steps of the normal-style base model (400)")
    return p.parse_args(argv)


def score(model: LoadedModel, image, truth, device) -> dict:
    cm = ConfusionMatrix().update(truth, predict(image, model, device=device).labels)
    iou = cm.per_class_iou()
    out = {f"iou_{name}": iou[c] for c, name in enumerate(CLASS_NAMES)}
    out["mean_iou"] = cm.mean_iou()
    return out


def normal_base(steps: int, size: int, crop: int, device: str) -> tuple[LoadedModel, float]:
    """A model trained on the normal synthetic style (cached in the temp folder)."""
    cache = (
        Path(tempfile.gettempdir()) / f"poregrain-bench-normal-{steps}-{size}-{crop}.safetensors"
    )
    if cache.is_file():
        return load_checkpoint(cache), 0.0
    pairs = [make_sample((size, size), seed=100 + i) for i in range(4)]
    val = [make_sample((size // 2, size // 2), seed=200)]
    cfg = TrainConfig(crop=crop, batch=4, steps=steps, lr=2e-3, device=device, patience=None)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = train(pairs, cfg, None, Path(tmp) / "base.safetensors", val_pairs=val)
        cache.write_bytes(res.path.read_bytes())
    return load_checkpoint(cache), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    quick = args.quick
    size = args.size or (128 if quick else 1024)
    crop = 64 if quick else args.crop
    batch = 2 if quick else args.batch
    budgets = args.steps or ([3] if quick else [60, 120, 200])
    base_steps = args.base_steps or (4 if quick else 400)
    device = str(resolve_device(args.device))

    base_seconds = None
    if args.model == "default" and DEFAULT_MODEL_PATH.is_file():
        base, base_desc = load_checkpoint(DEFAULT_MODEL_PATH), "shipped default model"
    elif args.model in ("normal", "default"):
        base, base_seconds = normal_base(base_steps, 768 if not quick else 128, crop, device)
        base_desc = f"trained here on the normal synthetic style ({base_steps} steps)"
    else:
        base, base_desc = load_checkpoint(args.model), f"checkpoint {Path(args.model).name}"

    image, labels = make_sample((size, size), seed=CORRECTED_SEED, style=SHIFTED)
    held_image, held_truth = make_sample((size, size), seed=HELD_OUT_SEED, style=SHIFTED)
    before = score(base, held_image, held_truth, device)
    rows = [{"steps": 0, **before, "gain": 0.0}]
    for steps in budgets:
        cfg = TrainConfig(crop=crop, batch=batch, steps=steps, lr=args.lr, device=device)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = train([(image, labels)], cfg, base, Path(tmp) / "tuned.safetensors")
            seconds = time.perf_counter() - t0
            after = score(load_checkpoint(res.path), held_image, held_truth, device)
        rows.append(
            {
                "steps": res.steps,
                "seconds": round(seconds, 1),
                "steps_per_s": round(res.steps / seconds, 2),
                **after,
                "gain": after["mean_iou"] - before["mean_iou"],
                "best_epoch": res.best_epoch,
                "epochs": len(res.history) - 1,
                "stopped_early": res.stopped_early,
            }
        )

    info = machine_info(device)
    print(describe_machine(info))
    print(
        f"start: {base_desc}; corrected image {size}x{size} (SHIFTED style, seed "
        f"{CORRECTED_SEED}), held out: seed {HELD_OUT_SEED}; crop {crop}, batch {batch}, "
        f"lr {args.lr}"
    )
    print(table(rows, COLUMNS))
    results = {
        "base_model": base_desc,
        "base_training_seconds": base_seconds,
        "image_size": size,
        "crop": crop,
        "batch": batch,
        "lr": args.lr,
        "before": before,
        "rows": rows,
    }
    path = write_results(
        "finetune", results, script=__file__, argv=argv, out_dir=args.out, quick=quick,
        device=device,
    )  # fmt: skip
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
