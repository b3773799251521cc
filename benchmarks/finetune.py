"""Learning from one correction: zero-shot and fine-tuned IoU, and seconds, on three cases.

    python benchmarks/finetune.py [--cases zeiss,duvernay,synthetic] [--steps N] [--crop N]
        [--focus F] [--encoder-lr F] [--freeze-encoder N] [--mix F] [--distill F] [--flips]
        [--resample-nm NM]
        [--label NAME] [--quick]

The protocol (none of it uses the images kept for acceptance):

* ``zeiss``: Zeiss ``train_4`` (7.4 nm pixels, the magnification furthest from the other Zeiss
  images, held out of the default model's training): its left half is the user's correction,
  its right half is scored.
* ``duvernay``: leave-one-out over Duvernay tiles held out of the default model's training (the
  last 14 of the mosaic, see ``recipes/default-model.toml``): fine-tune on the first two, score
  the next ones. Pore-like dark pixels are left unlabelled in the correction, as in training.
* ``nankai``: Nankai mudrock (never trained on): two tiles of sample group 11 are the
  correction (side by side), the other tiles of that group are scored.
* ``synthetic``: a synthetic style the model never saw (``UNSEEN``, grains darker than the
  matrix): one corrected image, a second one scored.

``--heads``: the adaptation protocol instead (``_heads.py``: zero-shot, forests on the filter
bank with and without the network's probabilities, the shipped head, the two-stage fine-tune,
the network fine-tune; per-class IoU and seconds; the live refit time), results
``finetune-heads[-LABEL].json``.

``--also-mix S`` also scores the saved weights interpolated towards the starting ones (S of the
saved, 1 - S of the start, after the run; ``--mix`` is the Trainer's own setting).
``--flips`` scores (zero-shot and fine-tuned) with test-time flips (``inference.flips``);
``--resample-nm NM`` resamples every image with a known pixel size to NM nm per pixel first (the
fine-tune and the scoring then run at that scale; images without a pixel size are left as
they are).

Every case starts from the same model (``--model``, default the shipped one), fine-tunes with
``training.finetune_config()`` (options override single settings) and scores with ``predict``.
``seconds`` is the wall clock of the fine-tune (everything: the starting model's prediction and
validation, crops, steps, checkpoint). Results: ``benchmarks/results/finetune[-LABEL].json``.
Goal: the fine-tuned per-class IoU at least halves the distance from zero-shot to 1.0.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from _common import (
    apply_threads,
    describe_machine,
    load_model,
    machine_info,
    save_results,
    script_parser,
    table,
)
from scipy import ndimage

from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.classes import CLASS_NAMES, IGNORE
from napari_poregrain.inference.flips import FlipAveraged
from napari_poregrain.inference.predict import predict, resolve_device
from napari_poregrain.model import LoadedModel, load_checkpoint
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import SHIFTED, make_sample, restyle
from napari_poregrain.training import Trainer, finetune_config
from napari_poregrain.training.averaging import interpolate
from napari_poregrain.training.recipe import unlabelled_pores

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
UNSEEN = restyle(SHIFTED, matrix=0.62, grain=0.40, pore=0.08, rim=0.0, noise=0.11, blur=1.6)
"""A style unlike any the default model was trained on: grains darker than the matrix."""
LEVERS = (
    "steps",
    "crop",
    "batch",
    "lr",
    "focus",
    "focus_weight",
    "encoder_lr",
    "freeze_encoder",
    "mix",
    "distill",
    "seed",
)
COLUMNS = [
    ("case", "case"),
    ("seconds", "time s"),
    ("steps", "steps"),
    ("zero_shot", "zero-shot IoU m/g/p"),
    ("tuned", "fine-tuned IoU m/g/p"),
    ("halved", "halved"),
    ("mixed", "mixed IoU m/g/p"),
]


@dataclass
class Case:
    """A correction to learn from and the images (with truth) scored before and after."""

    name: str
    correction: Sample
    scored: list[Sample]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__)
    p.add_argument("--cases", default="zeiss,duvernay,synthetic", help="cases to run")
    p.add_argument("--label", help="suffix of the results file (a lever's name)")
    p.add_argument("--freeze-bn", action="store_true", help="BatchNorm statistics fixed")
    p.add_argument("--flips", action="store_true", help="score with test-time flips")
    p.add_argument("--fp32", action="store_true", help="train in fp32 (no bf16 autocast)")
    p.add_argument("--resample-nm", type=float, help="resample to this pixel size (nm) first")
    p.add_argument("--also-mix", type=float, help="also score S x saved + (1-S) x start")
    p.add_argument("--heads", action="store_true", help="the adaptation-head protocol")
    for lever in LEVERS:
        kind = int if lever in ("steps", "crop", "batch", "freeze_encoder", "seed") else float
        p.add_argument(f"--{lever.replace('_', '-')}", type=kind, help="overrides the default")
    return p.parse_args(argv)


def _read(name: str, stem: str) -> Sample | None:
    from napari_poregrain.io.images import read_sample

    folder = DATA / name
    image = next((folder / "images").glob(f"{stem}.*"), None)
    if image is None:
        return None
    return replace(read_sample(image, labels=folder / "labels" / f"{stem}.png"), name=stem)


def _without(sample: Sample, mask: np.ndarray) -> Sample:
    """The Sample with its labels set to 255 where ``mask`` (over the usable rows) is True."""
    labels = np.array(sample.labels, np.uint8)
    labels[: sample.rows][mask] = IGNORE
    return sample.with_labels(labels)


def zeiss_case(quick: bool) -> Case | None:  # noqa: ARG001 - one image, small enough
    sample = _read("zeiss-shale-pores", "train_4")
    if sample is None:
        return None
    half = np.zeros((sample.rows, sample.pixels.shape[1]), bool)
    half[:, half.shape[1] // 2 :] = True
    return Case("zeiss train_4", _without(sample, half), [_without(sample, ~half)])


def duvernay_case(quick: bool) -> Case | None:
    folder = DATA / "duvernay-grains" / "images"
    if not folder.is_dir():
        return None
    held = sorted(p.stem for p in folder.iterdir())[-14:]  # as recipes/default-model.toml
    tiles = [_read("duvernay-grains", stem) for stem in held[: 3 if quick else 8]]
    first, second = (_without(t, unlabelled_pores(t.content())) for t in tiles[:2])
    correction = _concat(first, second) if not quick else first
    return Case("duvernay held-out tiles", correction, tiles[2:] if not quick else tiles[1:2])


def nankai_case(quick: bool) -> Case | None:
    folder = DATA / "nankai-mudrock" / "images"
    if not folder.is_dir():
        return None
    stems = sorted(p.stem for p in folder.iterdir() if p.stem.startswith("11_"))
    tiles = [_read("nankai-mudrock", stem) for stem in stems[: 3 if quick else None]]
    return Case("nankai group 11", _concat(tiles[0], tiles[1]), tiles[2:])


def _concat(a: Sample, b: Sample) -> Sample:
    """Two tiles side by side (the usable rows only), as one corrected image."""
    rows = min(a.rows, b.rows)
    pixels = np.concatenate([a.content()[:rows], b.content()[:rows]], axis=1)
    labels = np.concatenate([a.content(a.labels)[:rows], b.content(b.labels)[:rows]], axis=1)
    return Sample(pixels, labels=labels, name=f"{a.name}+{b.name}", pixel_size_nm=a.pixel_size_nm)


def synthetic_case(quick: bool) -> Case:
    size = (128, 128) if quick else (768, 768)
    image, labels = make_sample(size, seed=401, style=UNSEEN)
    held, truth = make_sample(size, seed=402, style=UNSEEN)
    return Case(
        "synthetic unseen style",
        Sample(image, labels=labels, name="unseen 401"),
        [Sample(held, labels=truth, name="unseen 402")],
    )


def resampled(sample: Sample, target_nm: float) -> Sample:
    """``sample``'s usable rows zoomed to ``target_nm`` per pixel (as it is without a size)."""
    return zoomed(sample, sample.pixel_size_nm / target_nm) if sample.pixel_size_nm else sample


def zoomed(sample: Sample, f: float) -> Sample:
    """``sample``'s usable rows zoomed by ``f`` (pixels bilinear, labels nearest); the pixel
    size follows."""
    pixels = ndimage.zoom(np.asarray(sample.content(), np.float32), f, order=1)
    labels = ndimage.zoom(np.asarray(sample.content(sample.labels)), f, order=0)
    nm = sample.pixel_size_nm / f if sample.pixel_size_nm else sample.pixel_size_nm
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Sample(image, labels=labels, name=sample.name, pixel_size_nm=nm)


def score(
    model: LoadedModel, samples: list[Sample], device: str, flips: bool = False
) -> list[float | None]:
    """Per-class IoU over the scored Samples' labelled pixels (None: class not in the truth)."""
    if flips:
        model = replace(model, net=FlipAveraged(model.net))
    cm = ConfusionMatrix()
    for s in samples:
        cm.update_sample(s, predict(s, model, device=device).labels)  # rows above the bar
    present = cm.matrix.sum(axis=1) > 0
    return [v if present[c] else None for c, v in enumerate(cm.per_class_iou())]


def blended(start: LoadedModel, tuned: LoadedModel, share: float) -> LoadedModel:
    """``share`` of the fine-tuned weights plus ``1 - share`` of the starting ones (every float
    tensor, BatchNorm statistics included): weight-space interpolation (WiSE-FT)."""
    return replace(tuned, net=interpolate(start.net.state_dict(), tuned.net, share).eval())


def fine_tune(
    case: Case, start: LoadedModel, cfg, device: str, flips: bool = False, mix: float | None = None
) -> dict:
    """Fine-tune ``start`` on the case's correction; the scores before and after, the time
    (and with ``mix``, the score of the weights interpolated towards the start)."""
    before = score(start, case.scored, device, flips)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = Trainer([case.correction], cfg, start, Path(tmp) / "tuned.safetensors")
        result = trainer.fit()
        seconds = time.perf_counter() - t0
        tuned = load_checkpoint(result.path) if result.path is not None else start
        after = score(tuned, case.scored, device, flips)
        mixed = score(blended(start, tuned, mix), case.scored, device, flips) if mix else None
    return {
        "case": case.name,
        "seconds": round(seconds, 1),
        "steps": result.steps,
        "improved": result.improved,
        "message": result.message,
        "notes": result.notes,
        "best_epoch": result.best_epoch,
        "corrected_pixels": trainer.recipe.get("corrected_pixels"),
        "zero_shot_iou": dict(zip(CLASS_NAMES, before, strict=True)),
        "tuned_iou": dict(zip(CLASS_NAMES, after, strict=True)),
        "zero_shot": _cells(before),
        "tuned": _cells(after),
        "halved": _halved(before, after),
        **({"mixed": _cells(mixed), "mixed_halved": _halved(before, mixed)} if mixed else {}),
    }


def _cells(iou: list[float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.2f}" for v in iou)


def _halved(before: list[float | None], after: list[float | None]) -> bool:
    """Whether every defined class closed at least half its distance to 1.0."""
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    return all(a - b >= (1 - b) / 2 for b, a in pairs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    device = str(resolve_device(args.device))
    overrides = {k: getattr(args, k) for k in LEVERS if getattr(args, k) is not None}
    if args.quick:
        overrides = {"steps": 2, "crop": 64, "batch": 2, **overrides}
    cfg = finetune_config(device=device, freeze_bn=args.freeze_bn, amp=not args.fp32, **overrides)
    start, start_desc = load_model(args.model)
    builders = {"zeiss": zeiss_case, "duvernay": duvernay_case, "synthetic": synthetic_case,
                "nankai": nankai_case}  # fmt: skip
    if args.heads:
        return heads_main(args, argv, builders, start, start_desc, cfg, device)
    rows, skipped = [], []
    for case in built_cases(args, builders, skipped):
        if args.resample_nm:
            case = Case(
                case.name, resampled(case.correction, args.resample_nm),
                [resampled(s, args.resample_nm) for s in case.scored],
            )  # fmt: skip
        rows.append(fine_tune(case, start, cfg, device, args.flips, args.also_mix))
    print(describe_machine(machine_info(device)))
    print(f"start: {start_desc}; settings: {overrides or 'finetune_config() defaults'}")
    print(table(rows, COLUMNS))
    if skipped:
        print(f"skipped (no data in {DATA}): {', '.join(skipped)}")
    results = {"start": start_desc, "config": vars(cfg), "rows": rows, "skipped": skipped}
    results.update(flips=args.flips, resample_nm=args.resample_nm)
    save_results("finetune", results, args, argv, script=__file__, device=device)
    return 0


def built_cases(args, builders, skipped: list):
    """The cases ``--cases`` names, built one at a time; those without data go to ``skipped``."""
    for name in args.cases.split(","):
        case = builders[name](args.quick)
        if case is None:
            skipped.append(name)
        else:
            yield case


def heads_main(args, argv, builders, start, start_desc, cfg, device) -> int:
    """``--heads``: every adaptation method per case, and the live refit time."""
    import _heads

    cols = [("case", "case"), ("method", "method"), ("iou", "IoU m/g/p"), ("seconds", "s"),
            ("stage", "saved")]  # fmt: skip
    rows, skipped = [], []
    for case in built_cases(args, builders, skipped):
        net_row = lambda c: fine_tune(c, start, cfg, device)  # noqa: E731
        rows += _heads.run_case(case, start, device, net_row, cfg)
        print(table(rows[-6:], cols), flush=True)  # each case as it ends
    live = _heads.live_refit(start, device, 1 if args.quick else 3)
    print(describe_machine(machine_info(device)))
    print(table(rows, cols))
    print(f"live refit (features cached, 200k px, 1024² window): {live}")
    results = {"start": start_desc, "config": vars(cfg), "rows": rows, "live": live,
               "skipped": skipped}  # fmt: skip
    save_results("finetune-heads", results, args, argv, script=__file__, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
