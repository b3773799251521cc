"""``poregrain evaluate``: per-class IoU of predictions against reference label maps.

Three ways to give the pairs (files matched by stem):

* ``--pred DIR --truth DIR``: existing 0/1/2 class maps against reference maps;
* ``--images DIR --truth DIR [--model M]``: predict each image (above its data bar), then compare;
* ``--data-dir D [--split test]``: the seed's layout, ``D/JPEGImages/<stem>.*`` predicted and
  compared with ``D/SegmentationClassRaw/<stem>.png`` for the stems in ``D/ImageSets/<split>.txt``;
* ``--config RECIPE``: the held-out images of each source of a training recipe, with the model
  and with two baselines (Otsu threshold for pores, the majority class).

Every file must have its partner; the first missing, unreadable or mis-sized file stops the run
with one line naming it (exit 2). ``--json`` prints one JSON object on stdout and nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ..analysis.metrics import ConfusionMatrix, format_table
from . import CliError
from ._files import files_by_stem
from ._seed import seed_split


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .predict import add_model_arguments

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pred", type=Path, metavar="DIR", help="predicted class maps (0/1/2)")
    src.add_argument("--images", type=Path, metavar="DIR", help="images to predict, then score")
    src.add_argument(
        "--data-dir",
        type=Path,
        metavar="D",
        help="seed layout: JPEGImages/, SegmentationClassRaw/",
    )
    src.add_argument(
        "--config",
        type=Path,
        metavar="RECIPE",
        help="a training recipe (TOML): score its held-out images per source, with baselines",
    )
    p.add_argument("--truth", type=Path, metavar="DIR", help="reference label maps (0/1/2/255)")
    p.add_argument("--split", default="test", help="with --data-dir: ImageSets/<SPLIT>.txt")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_model_arguments(p)


def _match(left: dict[str, Path], right: dict[str, Path], right_what: str) -> list[tuple]:
    """Pairs by stem; any file without a partner is an error naming it."""
    for stem, path in left.items():
        if stem not in right:
            raise CliError(f"{path}: no {right_what} file named {stem}.* found")
    for stem, path in right.items():
        if stem not in left:
            raise CliError(f"{path}: has no partner (nothing named {stem}.* on the other side)")
    return [(stem, left[stem], right[stem]) for stem in sorted(left)]


def _pairs(args: argparse.Namespace) -> list[tuple[str, Path, Path]]:
    from ..io.images import IMAGE_SUFFIXES, LABEL_SUFFIXES

    if args.data_dir is not None:
        if args.truth is not None:
            raise CliError("--truth is not used with --data-dir (it reads SegmentationClassRaw/)")
        return seed_split(args.data_dir, args.split)
    if args.truth is None:
        raise CliError("--truth DIR is required with --pred or --images")
    truth = files_by_stem(args.truth, LABEL_SUFFIXES, "reference label")
    if args.pred is not None:
        return _match(files_by_stem(args.pred, LABEL_SUFFIXES, "prediction"), truth, "reference")
    return _match(files_by_stem(args.images, IMAGE_SUFFIXES, "image"), truth, "reference")


def _scored(args: argparse.Namespace, pairs: list) -> Iterator[tuple[Path, object, object]]:
    """Yield (file, truth, prediction) arrays, one pair in memory at a time."""
    from ..io.images import ImageReadError, read_labels, read_sample

    predicting = args.pred is None
    model = None
    if predicting:
        from ..inference.predict import predict
        from ._progress import TileBar
        from .predict import load_model

        model = load_model(args)
    # options that the shared model arguments may add (e.g. --precision)
    extra = {"precision": args.precision} if getattr(args, "precision", None) else {}
    for _stem, source, truth_path in tqdm(
        pairs, desc="evaluate", unit="image", file=sys.stderr, leave=False, disable=None
    ):
        try:
            truth = read_labels(truth_path)
            if not predicting:
                pred = read_labels(source)
            else:
                img = read_sample(source)
                size = img.pixels.shape[:2] if img.rgb else img.pixels.shape[-2:]
                if img.pixels.ndim != (3 if img.rgb else 2):
                    raise CliError(f"{source}: expected a 2-D image, got shape {img.pixels.shape}")
                if tuple(size) != truth.shape:
                    raise CliError(
                        f"{source}: image is {size[0]}x{size[1]} but its reference "
                        f"{truth_path} is {truth.shape[0]}x{truth.shape[1]}"
                    )
                with TileBar(source.name) as bar:
                    pred = predict(
                        img.pixels, model, tile=args.tile, overlap=args.overlap,
                        batch_size=args.batch, device=args.device,
                        content_rows=img.data_bar_row, progress=bar.update_to, **extra,
                    ).labels  # fmt: skip
        except ImageReadError as exc:
            raise CliError(str(exc)) from None
        except (ValueError, OSError) as exc:
            raise CliError(f"{source}: {exc}") from None
        if pred.shape != truth.shape:
            raise CliError(
                f"{source}: prediction is {pred.shape[0]}x{pred.shape[1]} but its reference "
                f"{truth_path} is {truth.shape[0]}x{truth.shape[1]}"
            )
        yield source, truth, pred


def evaluate(args: argparse.Namespace) -> ConfusionMatrix:
    """The summed confusion matrix of all pairs the arguments name."""
    cm = ConfusionMatrix()
    for source, truth, pred in _scored(args, _pairs(args)):
        try:
            cm.update(truth, pred)
        except ValueError as exc:
            raise CliError(f"{source}: {exc}") from None
    return cm


def _recipe_report(args: argparse.Namespace) -> dict:
    from ..training.recipe import load_recipe, load_split, validation_report
    from .predict import load_model

    try:
        split = load_split(load_recipe(args.config))
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    model = load_model(args)
    bar = tqdm(desc="evaluate", unit="image", file=sys.stderr, leave=False, disable=None)
    with bar:
        return validation_report(
            split, model, progress=lambda *_: bar.update(), tile=args.tile,
            overlap=args.overlap, batch_size=args.batch, device=args.device,
            precision=args.precision,
        )  # fmt: skip


def _print_recipe_report(report: dict) -> None:
    for source, rows in report.items():
        print(f"{source} ({len(rows['images'])} held-out images)")
        print(f"  {'':10s} {'matrix':>8s} {'grain':>8s} {'pore':>8s} {'mean':>8s}")
        for kind in ("model", "otsu", "majority"):
            ious = rows[kind]["per_class_iou"]
            cells = [ious[c] for c in ("matrix", "grain", "pore")] + [rows[kind]["mean_iou"]]
            text = " ".join(f"{'-' if v is None else f'{v:.4f}':>8s}" for v in cells)
            print(f"  {kind:10s} {text}")


def run(args: argparse.Namespace) -> int:
    if args.config is not None:
        report = _recipe_report(args)
        if args.json:
            print(json.dumps(report))
        else:
            _print_recipe_report(report)
        return 0
    cm = evaluate(args)
    if args.json:
        print(json.dumps(cm.to_dict()))
    else:
        print(format_table(cm))
    return 0
