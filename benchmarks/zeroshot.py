"""Zero-shot IoU of one or more models on held-out images, as they are and shifted.

    python benchmarks/zeroshot.py [--models default,build/a.safetensors] [--label NAME]

The starting-model protocol. A model's held-out figures on the images its epoch was chosen on
are optimistic (the best of many noisy epochs), so besides those images *as they are* every
model is also scored on the same images *shifted* the way a user's differ from ours, which no
model's selection has seen:

* ``zoom 2x``: the image and its labels enlarged twice (a higher magnification; order-1
  interpolation for the pixels, nearest for the labels);
* ``zoom 0.6x``: reduced (a lower magnification);
* ``gamma 0.6`` / ``gamma 1.6``: another detector's grey levels (``255 (p/255)^g``; a linear
  contrast change would be undone by the intensity normalisation);
* ``noise 12``: Gaussian noise of 12 grey levels (a faster scan), seeded;
* ``synthetic unseen``: ``finetune.UNSEEN`` (grains darker than the matrix, a style outside
  every training style), and ``synthetic organic 2x``: large organic-matter lenses with small
  pores, drawn at twice the usual scale.

Images: Duvernay tiles 0056-0069 and Zeiss ``train_4`` (held out of the default model's
training by ``recipes/default-model.toml``). ``mean`` is the mean of every defined per-class IoU
over all rows. Results: ``benchmarks/results/zeroshot[-LABEL].json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from _common import (
    apply_threads,
    describe_machine,
    load_model,
    machine_info,
    save_results,
    script_parser,
)
from finetune import DATA, UNSEEN, _read, score, zoomed

from napari_poregrain.inference.predict import resolve_device
from napari_poregrain.inference.scales import ScaleAveraged
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import Style, make_sample

SHIFTS = ("as is", "zoom 2x", "zoom 0.6x", "gamma 0.6", "gamma 1.6", "noise 12")


@dataclass
class Row:
    """A set of scored Samples under one name."""

    name: str
    samples: list[Sample]


def shifted(sample: Sample, shift: str) -> Sample:
    """``sample``'s usable rows under ``shift`` (one of :data:`SHIFTS`)."""
    if shift.startswith("zoom"):
        return zoomed(sample, float(shift.split()[1].rstrip("x")))
    pixels = np.asarray(sample.content(), np.float32)
    labels = np.asarray(sample.content(sample.labels))
    if shift.startswith("gamma"):
        pixels = 255 * (pixels / 255) ** float(shift.split()[1])
    elif shift.startswith("noise"):
        pixels = pixels + np.random.default_rng(0).normal(0, float(shift.split()[1]), pixels.shape)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Sample(image, labels=labels, name=sample.name, pixel_size_nm=sample.pixel_size_nm)


def real_rows(quick: bool) -> list[Row]:
    """Every shift of the held-out Duvernay tiles and of Zeiss ``train_4``."""
    folder = DATA / "duvernay-grains" / "images"
    held = sorted(p.stem for p in folder.iterdir())[-14:] if folder.is_dir() else []
    sets = {
        "duvernay": [_read("duvernay-grains", s) for s in held[: 2 if quick else 14]],
        "zeiss": [_read("zeiss-shale-pores", "train_4")],
    }
    rows = []
    for name, samples in sets.items():
        samples = [s for s in samples if s is not None]
        if quick:
            samples = [replace(s, pixels=s.pixels[:128, :128], labels=s.labels[:128, :128],
                               data_bar_row=None) for s in samples]  # fmt: skip
        for shift in SHIFTS if samples else ():
            rows.append(Row(f"{name} {shift}", [shifted(s, shift) for s in samples]))
    return rows


def synthetic_rows(quick: bool) -> list[Row]:
    size = (128, 128) if quick else (640, 640)
    organic = Style(
        organic_fraction=0.35, organic=0.24, organic_radius=80.0, organic_pore_density=2e-3,
        grain_radius=56.0, pore_radius=8.0,
    )  # fmt: skip
    out = []
    for name, style in (("synthetic unseen", UNSEEN), ("synthetic organic 2x", organic)):
        pairs = [make_sample(size, seed=seed, style=style) for seed in (501, 502)]
        out.append(Row(name, [Sample(i, labels=t, name=f"{name} {k}") for k, (i, t) in
                              enumerate(pairs)]))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = script_parser(__doc__)
    p.add_argument("--models", default="default", help="comma-separated checkpoints")
    p.add_argument("--label", help="suffix of the results file")
    p.add_argument("--scales", help="e.g. 1,0.5: also score each model with test-time scales")
    args = p.parse_args(argv)
    apply_threads(args.threads)
    device = str(resolve_device(args.device))
    rows = real_rows(args.quick) + synthetic_rows(args.quick)
    results, lines = {}, []
    specs = args.models.split(",")
    if args.scales:
        specs += [f"{spec}@{args.scales}" for spec in specs]
    for spec in specs:
        model, desc = load_model(spec.split("@")[0])
        if "@" in spec:
            scales = tuple(float(v) for v in args.scales.split(","))
            model = replace(model, net=ScaleAveraged(model.net, scales))
            desc += f", test-time scales {args.scales}"
        scores = {row.name: score(model, row.samples, device) for row in rows}
        defined = [v for iou in scores.values() for v in iou if v is not None]
        results[spec] = {"model": desc, "iou": scores, "mean": float(np.mean(defined))}
        lines.append({"model": spec, "mean": f"{np.mean(defined):.3f}"} |
                     {r: "/".join("-" if v is None else f"{v:.2f}" for v in s)
                      for r, s in scores.items()})  # fmt: skip
    print(describe_machine(machine_info(device)))
    for row in rows:
        cells = "  ".join(f"{line[row.name]:>14}" for line in lines)
        print(f"{row.name:24s} {cells}")
    print(f"{'mean':24s} " + "  ".join(f"{line['mean']:>14}" for line in lines))
    print("models: " + ", ".join(f"{i + 1}. {line['model']}" for i, line in enumerate(lines)))
    save_results("zeroshot", results, args, argv, script=__file__, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
