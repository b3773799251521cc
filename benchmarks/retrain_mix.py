"""Continue the shipped model on a recipe, then interpolate its weights towards the start.

    python benchmarks/retrain_mix.py RECIPE [--mix 0.3,0.5,0.7] [--out build/continued]

The same lever as the fine-tune's ``mix`` (``training.averaging``, WiSE-FT), for the default
model itself: train from the shipped model with the recipe's data and settings to the last step
(no early stop), then score the start, the last weights and their interpolations on the recipe's
held-out images (per source, ``poregrain evaluate --config``'s figures) and save each
interpolation as ``OUT-mix<S>.safetensors`` (fp16), the last weights as ``OUT-last``.
Results: ``benchmarks/results/retrain-mix.json``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from _common import DEFAULT_MODEL_PATH, write_results

from napari_poregrain.model import LoadedModel, load_checkpoint, save_checkpoint
from napari_poregrain.training import TrainConfig, Trainer
from napari_poregrain.training.averaging import interpolate
from napari_poregrain.training.recipe import load_recipe, load_split, validation_report


def _figures(split, model: LoadedModel) -> dict:
    report = validation_report(split, model)
    return {src: rows["model"]["per_class_iou"] for src, rows in report.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--mix", default="0.3,0.5,0.7")
    p.add_argument("--out", default="build/continued")
    p.add_argument("--steps", type=int, help="overrides the recipe's steps")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = p.parse_args(argv)
    recipe = load_recipe(args.recipe)
    split = load_split(recipe)
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe.train.items()}
    if args.steps:
        settings["steps"] = args.steps
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(**settings, patience=None)
    start = load_checkpoint(DEFAULT_MODEL_PATH)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        split.samples("train"), cfg, start, out.with_suffix(".safetensors"),
        val_samples=split.samples("val"), name="default",
    )  # fmt: skip
    result = trainer.fit()
    rows = {"start": _figures(split, start), "history": result.history}
    last = trainer.kept
    for share in (float(s) for s in args.mix.split(",")):
        net = interpolate(start.net.state_dict(), last, share).eval()
        model = replace(start, net=net)
        rows[f"mix {share:g}"] = _figures(split, model)
        save_checkpoint(model, f"{out}-mix{share:g}.safetensors", half=True, overwrite=True)
    rows["last"] = _figures(split, replace(start, net=last.eval()))
    save_checkpoint(replace(start, net=last), f"{out}-last.safetensors", half=True, overwrite=True)
    for name, figures in rows.items():
        if name != "history":
            print(name, {s: [round(v, 3) if v is not None else None for v in f.values()]
                         for s, f in figures.items()})  # fmt: skip
    name = f"retrain-mix-{Path(args.out).name}"
    write_results(name, rows, script=__file__, argv=argv, quick=False, device="cpu")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
