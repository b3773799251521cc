"""``poregrain train``: train or fine-tune a model on labelled images.

Where the (image, labels) pairs come from, one of:

* ``--images DIR --labels DIR``: every image with the label map of the same file stem;
* ``--data-dir D``: the seed's layout, ``D/JPEGImages/<stem>.*`` with
  ``D/SegmentationClassRaw/<stem>.png`` for the stems in ``D/ImageSets/train.txt``; the stems in
  ``D/ImageSets/val.txt`` (when present) are the validation images;
* ``--config RECIPE``: a training recipe (TOML, see :mod:`..training.recipe`): its sources,
  their fixed split and its settings (options given on the command line win).

Label maps hold 0 matrix / 1 grain / 2 pore / 255 ignore. Images are read with their data bar:
only the rows above it are used. Validation: ``--val-images DIR --val-labels DIR``, or the
held-out ``--val-fraction`` of each image. The best model goes to ``--out`` (never overwritten),
its per-epoch log to the same name with ``.csv``. Ctrl-C stops after the current step and
keeps the best model so far (exit 130).
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from . import CliError
from ._files import files_by_stem
from ._seed import seed_split

ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101")

# TrainConfig fields settable from the command line: option dest -> field name.
_OPTIONS = {
    "steps": "steps",
    "epochs": "epochs",
    "steps_per_epoch": "steps_per_epoch",
    "crop": "crop",
    "batch": "batch",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "warmup": "warmup",
    "device": "device",
    "seed": "seed",
    "val_fraction": "val_fraction",
    "patience": "patience",
    "scale_range": "scale_range",
    "class_balance": "class_balance",
    "workers": "num_workers",
    "freeze_bn": "freeze_bn",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, metavar="DIR", help="training images")
    src.add_argument("--data-dir", type=Path, metavar="D", help="the seed's dataset layout")
    src.add_argument("--config", type=Path, metavar="RECIPE", help="a training recipe (TOML)")
    p.add_argument("--labels", type=Path, metavar="DIR", help="label maps matching --images")
    p.add_argument("--val-images", type=Path, metavar="DIR", help="validation images")
    p.add_argument("--val-labels", type=Path, metavar="DIR", help="their label maps")
    p.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="without validation images: share of each image's labelled pixels held out "
        "(a contiguous block; default 0.2)",
    )
    p.add_argument(
        "--init",
        default=None,
        metavar="default|scratch|PATH",
        help="starting model: the shipped default (default), scratch, or a checkpoint file or "
        "model name (with --config: scratch unless given)",
    )
    p.add_argument(
        "--encoder", default=None, help=f"encoder for --init scratch ({', '.join(ENCODERS)}, ...)"
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, metavar="N", help="optimisation steps (default 300)")
    length.add_argument(
        "--epochs", type=int, metavar="N", help="epochs of --steps-per-epoch steps"
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        metavar="N",
        help="steps between validations (default: enough crops to cover the labelled "
        "area once, at least 10)",
    )
    p.add_argument("--crop", type=int, metavar="N", help="training crop side (default 256)")
    p.add_argument("--batch", type=int, metavar="N", help="crops per step (default 4)")
    p.add_argument("--lr", type=float, metavar="F", help="peak learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, metavar="F", help="AdamW weight decay (1e-4)")
    p.add_argument(
        "--warmup", type=int, metavar="N", help="warm-up steps (default: a tenth, at most 200)"
    )
    p.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help="stop after N epochs without a better validation IoU (default 10; 0: never)",
    )
    p.add_argument(
        "--scale-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="zoom augmentation range (default 0.8 1.25)",
    )
    p.add_argument(
        "--class-balance", type=float, metavar="F", help="share of class-balanced crops (0.75)"
    )
    p.add_argument("--freeze-bn", action="store_true", default=None, help="fix BatchNorm stats")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=None)
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--workers", type=int, metavar="N", help="data-loading processes (default 0)")
    p.add_argument("--half", action="store_true", help="store fp16 weights (half the size)")
    p.add_argument("--name", help="the model's name (default: the file's stem)")
    p.add_argument("--out", required=True, type=Path, metavar="MODEL.safetensors")


# --------------------------------------------------------------------------------- data


def _folder_pairs(images: Path, labels: Path | None, option: str) -> list[tuple[Path, Path]]:
    from ..io.images import IMAGE_SUFFIXES, LABEL_SUFFIXES

    if labels is None:
        raise CliError(f"{option} DIR is required (the label maps of the images)")
    ims = files_by_stem(images, IMAGE_SUFFIXES, "image")
    labs = files_by_stem(labels, LABEL_SUFFIXES, "label")
    for stem, path in ims.items():
        if stem not in labs:
            raise CliError(f"{path}: no label file named {stem}.* in {labels}")
    for stem, path in labs.items():
        if stem not in ims:
            raise CliError(f"{path}: no image named {stem}.* in {images}")
    return [(ims[s], labs[s]) for s in sorted(ims)]


def _seed_split(data_dir: Path, split: str, required: bool) -> list[tuple[Path, Path]] | None:
    triples = seed_split(data_dir, split, required)
    return None if triples is None else [(image, label) for _, image, label in triples]


def read_pair(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image (rows above its data bar) and its label map, checked to match."""
    from ..io.images import ImageReadError, read_labels, read_sample

    try:
        img = read_sample(image_path)
        labels = read_labels(label_path)
    except ImageReadError as exc:
        raise CliError(str(exc)) from None
    data = img.pixels
    if data.ndim != (3 if img.rgb else 2):
        raise CliError(f"{image_path}: expected a 2-D image, got shape {data.shape}")
    if data.shape[:2] != labels.shape:
        raise CliError(
            f"{label_path}: labels are {labels.shape[0]}x{labels.shape[1]} but the image "
            f"{image_path.name} is {data.shape[0]}x{data.shape[1]}"
        )
    if img.data_bar_row is not None:  # the data bar is never trained on
        data, labels = img.content(), labels[: img.data_bar_row]
    return data, labels


def _read_all(pairs: list[tuple[Path, Path]], desc: str) -> tuple[list, list[str]]:
    from tqdm import tqdm

    bar = tqdm(pairs, desc=desc, unit="image", file=sys.stderr, leave=False, disable=None)
    with bar:
        arrays = [read_pair(i, lab) for i, lab in bar]
    return arrays, [p.name for p, _ in pairs]


def _recipe_data(args: argparse.Namespace):
    from ..training.recipe import load_recipe, load_split

    try:
        recipe = load_recipe(args.config)
        split = load_split(recipe)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    train = [
        (f"{src}/{stem}", im, lab) for src, items in split.train.items() for stem, im, lab in items
    ]
    val = [
        (f"{src}/{stem}", im, lab) for src, items in split.val.items() for stem, im, lab in items
    ]
    return recipe, train, val


# --------------------------------------------------------------------------------- config


def _config(args: argparse.Namespace, recipe_train: dict | None):
    from ..training.trainer import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig()
    for key, value in (recipe_train or {}).items():
        if key not in known:
            raise CliError(f"{args.config}: unknown [train] setting {key!r}")
        if key == "scale_range":
            value = tuple(value)
        setattr(cfg, key, value)
    if args.steps is not None or args.epochs is not None:
        cfg.steps = cfg.epochs = None
    for dest, name in _OPTIONS.items():
        value = getattr(args, dest)
        if value is not None:
            setattr(cfg, name, tuple(value) if dest == "scale_range" else value)
    if cfg.patience == 0:
        cfg.patience = None
    try:
        cfg.validate()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return cfg


def _init_model(spec: str, encoder: str | None):
    from ..model import CheckpointError, load_checkpoint, resolve_model

    if spec == "scratch":
        return None
    if encoder is not None:
        raise CliError("--encoder applies to --init scratch only (a starting model has its own)")
    try:
        if spec == "default":
            from ..model import DEFAULT_MODEL_PATH

            if not DEFAULT_MODEL_PATH.is_file():
                raise CliError(
                    "no default model is installed yet; pass --init scratch or --init "
                    "MODEL.safetensors"
                )
        return load_checkpoint(resolve_model(spec))
    except CheckpointError as exc:
        raise CliError(str(exc)) from None


# --------------------------------------------------------------------------------- run


def _add_source_report(path: Path, recipe, half: bool) -> None:
    """Store the best model's validation IoU per recipe source, with baselines, in its metadata."""
    from ..model import load_checkpoint, save_checkpoint
    from ..training.recipe import load_split, validation_report

    model = load_checkpoint(path)
    report = validation_report(load_split(recipe), model)
    model.meta.provenance["validation_by_source"] = report
    save_checkpoint(model, path, half=half, overwrite=True)
    for source, rows in report.items():
        cells = "  ".join(
            f"{kind} {_fmt(rows[kind]['mean_iou'])}" for kind in ("model", "otsu", "majority")
        )
        print(f"{source}: mean IoU {cells}", file=sys.stderr)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


class _Reporter:
    """tqdm progress on stderr; one line per validation."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, e) -> None:
        if e.kind == "step":
            self.bar.total = e.total_steps
            self.bar.update(e.step - self.bar.n)
            self.bar.set_postfix(loss=f"{e.loss:.3f}", epoch=e.epoch, refresh=False)
        elif e.kind == "epoch":
            iou = e.val_iou or [None, None, None]
            self.bar.write(
                f"epoch {e.epoch:3d} step {e.step:5d}  train loss {_fmt(e.train_loss)}  "
                f"val loss {_fmt(e.val_loss)}  IoU matrix {_fmt(iou[0])} grain {_fmt(iou[1])} "
                f"pore {_fmt(iou[2])} mean {_fmt(e.val_miou)}{'  * saved' if e.best else ''}",
                file=sys.stderr,
            )

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import log_path_for, train

    out = args.out
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: the model file must end in .safetensors")
    for path in (out, log_path_for(out)):
        if path.exists():
            raise CliError(f"{path} already exists; choose another --out (nothing is overwritten)")
    if (args.val_images is None) != (args.val_labels is None):
        raise CliError("--val-images and --val-labels go together")
    if args.val_images is not None and args.val_fraction is not None:
        raise CliError("give --val-images/--val-labels or --val-fraction, not both")
    if args.images is None and args.labels is not None:
        raise CliError("--labels goes with --images")

    recipe = None
    extra: dict = {}
    val_pairs = val_names = None
    if args.config is not None:
        if args.val_images is not None:
            raise CliError("--val-images is not used with --config (the recipe fixes the split)")
        recipe, train_items, val_items = _recipe_data(args)
        pairs = [(im, lab) for _, im, lab in train_items]
        names = [n for n, _, _ in train_items]
        if val_items:
            val_pairs = [(im, lab) for _, im, lab in val_items]
            val_names = [n for n, _, _ in val_items]
        extra["recipe_file"] = recipe.path.name
        extra["sources"] = [s.name for s in recipe.sources]
        init_spec = args.init or recipe.model.get("init", "scratch")
        encoder = args.encoder or (recipe.model.get("encoder") if init_spec == "scratch" else None)
        name = args.name or recipe.model.get("name")
    else:
        if args.data_dir is not None:
            if args.val_images is not None:
                raise CliError("--val-images is not used with --data-dir (it reads val.txt)")
            train_files = _seed_split(args.data_dir, "train", required=True)
            val_files = _seed_split(args.data_dir, "val", required=False)
        else:
            train_files = _folder_pairs(args.images, args.labels, "--labels")
            val_files = None
            if args.val_images is not None:
                val_files = _folder_pairs(args.val_images, args.val_labels, "--val-labels")
        init_spec, encoder, name = args.init or "default", args.encoder, args.name
        model = _init_model(init_spec, encoder)  # fail fast, before reading the images
        pairs, names = _read_all(train_files, "read images")
        if val_files:
            val_pairs, val_names = _read_all(val_files, "read validation images")
    cfg = _config(args, recipe.train if recipe is not None else None)
    if recipe is not None:
        model = _init_model(init_spec, None if init_spec == "scratch" else args.encoder)
    if model is None and encoder is not None:
        cfg.encoder = encoder
    if model is None and recipe is not None and "refine" in recipe.model:
        cfg.refine = bool(recipe.model["refine"])
    if model is not None:
        extra["init"] = init_spec

    stop = {"asked": False}

    def on_sigint(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        print(
            "\nporegrain train: stopping after this step (Ctrl-C again to abort)", file=sys.stderr
        )

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: no graceful Ctrl-C
        previous = None
    reporter = _Reporter()
    try:
        result = train(
            pairs, cfg, model, out, val_pairs=val_pairs, names=names, val_names=val_names,
            progress=reporter, should_stop=lambda: stop["asked"], name=name, half=args.half,
            provenance=extra,
        )  # fmt: skip
    except (ValueError, FileExistsError, FloatingPointError) as exc:
        raise CliError(str(exc)) from None
    finally:
        reporter.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    if recipe is not None and result.path is not None and val_pairs and not result.cancelled:
        _add_source_report(result.path, recipe, args.half)
    how = "cancelled" if result.cancelled else "stopped early" if result.stopped_early else "done"
    print(f"{how}: {result.steps} of {result.total_steps} steps in {result.seconds:.0f} s")
    if result.path is None:
        print("no model was saved (stopped before the first validation)")
    else:
        m = result.best_metrics
        if m is not None:
            iou = m["per_class_iou"]
            print(
                f"best epoch {result.best_epoch}: validation IoU matrix {_fmt(iou['matrix'])} "
                f"grain {_fmt(iou['grain'])} pore {_fmt(iou['pore'])} mean {_fmt(m['mean_iou'])}"
            )
        print(f"model: {result.path}")
    print(f"log: {result.log_path}")
    return 130 if result.cancelled else 0
