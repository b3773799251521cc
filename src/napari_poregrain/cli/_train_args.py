"""The options of ``poregrain train`` (in words a geologist understands) and their checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import (
    Number,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
)
from ._options import share as share_type

ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101")

# TrainConfig fields settable from the command line: option dest -> field name.
_SAME = "steps epochs steps_per_epoch crop batch lr weight_decay warmup device seed val_fraction"
_LEVERS = "focus focus_weight encoder_lr freeze_encoder mix distill"
CONFIG_OPTIONS = {
    n: n for n in f"{_SAME} {_LEVERS} patience scale_range class_balance freeze_bn".split()
}
CONFIG_OPTIONS["workers"] = "num_workers"
_val_share = Number(float, 0.0, 0.9)
_workers = Number(int, 0, 64)  # as many processes, each holding a copy of the data


def add_arguments(p: argparse.ArgumentParser) -> None:
    _data_arguments(p)
    _model_arguments(p)
    _schedule_arguments(p)
    _sampling_arguments(p)
    p.add_argument(
        "--half",
        action="store_true",
        help="store the model at half precision (half the file size)",
    )
    p.add_argument("--name", help="the model's name as shown in napari (default: the file's name)")
    p.add_argument(
        "--out",
        type=Path,
        metavar="MODEL.safetensors",
        help="the new model file (never overwritten; its training log goes beside it as .csv)",
    )
    _resume_arguments(p)
    from ._two_stage import add_arguments as two_stage_arguments

    two_stage_arguments(p)


def _resume_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        type=Path,
        metavar="RUN",
        help="a new folder where a long run records itself and saves its state, so that "
        "--resume RUN continues it after an interruption",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        metavar="N",
        help="with --run-dir: save the state every N steps (default 50, and after every scoring)",
    )


_PATHS = (  # (option, metavar, help, in the one-of group) of the input folders and files
    ("--images", "DIR", "folder of the images to learn from", True),
    ("--data-dir", "D", "a folder in the seed data set's layout", True),
    ("--config", "RECIPE", "a training recipe file (TOML)", True),
    ("--resume", "RUN", "continue the run of --run-dir RUN from its last saved state", True),
    (
        "--labels",
        "DIR",
        "folder of the label maps (0 matrix, 1 grain, 2 pore, 255 unlabelled), one per image "
        "with the same file name",
        False,
    ),
    ("--val-images", "DIR", "images kept aside to score the model", False),
    ("--val-labels", "DIR", "the label maps of --val-images", False),
)


def _data_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    for option, metavar, text, one_of in _PATHS:
        (src if one_of else p).add_argument(option, type=Path, metavar=metavar, help=text)
    p.add_argument(
        "--val-fraction",
        type=_val_share,
        metavar="F",
        help="without validation images: share of each image's labelled pixels held out "
        "(a contiguous block; default 0.2)",
    )


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--init",
        default=None,
        metavar="default|scratch|PATH",
        help="starting model: the shipped default (default), scratch, or a checkpoint file or "
        "model name (with --config: scratch unless given)",
    )
    p.add_argument(
        "--encoder",
        default=None,
        help=f"network size for --init scratch ({', '.join(ENCODERS)}, ...; larger is slower)",
    )


_SCHEDULE = (  # (option, type, help) of the plain numeric options, in --help order
    (
        "--steps-per-epoch",
        positive_int,
        "learning steps between two scorings on the kept-aside pixels (default: enough to see "
        "the labelled area once, at least 10)",
    ),
    ("--crop", positive_int, "side in pixels of the image patches learnt from (default 256)"),
    ("--batch", positive_int, "patches per learning step (default 4)"),
    ("--lr", positive_float, "learning rate: how far each step moves the model (default 1e-3)"),
    ("--weight-decay", non_negative_float, "pull of the weights towards zero (default 1e-4)"),
    ("--warmup", non_negative_int, "steps of gently rising learning rate at the start"),
    (
        "--patience",
        non_negative_int,
        "stop after N scorings without improvement (default 10; 0: never stop early)",
    ),
    (
        "--focus",
        share_type,
        "when starting from a model: share of patches centred where your labels differ from "
        "its prediction, i.e. on your corrections",
    ),
    (
        "--focus-weight",
        positive_float,
        "when starting from a model: how much more a corrected pixel counts than others",
    ),
    (
        "--encoder-lr",
        share_type,
        "learning rate of the model's first (feature-finding) part as a share of --lr",
    ),
    (
        "--freeze-encoder",
        non_negative_int,
        "steps at the start during which the model's first part is left unchanged",
    ),
    (
        "--mix",
        share_type,
        "when starting from a model: share of the learnt change kept in the saved model, the "
        "rest stays the starting model's (default 0.7: forgets less of what it knew; 1: all)",
    ),
    (
        "--distill",
        non_negative_float,
        "when starting from a model: how strongly it is held to its own earlier predictions "
        "(learning without forgetting; default 0: off)",
    ),
)


def _schedule_arguments(p: argparse.ArgumentParser) -> None:
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=positive_int,
        metavar="N",
        help="learning steps (default: the fine-tune settings from a starting model, 300 from "
        "scratch)",
    )
    length.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help="train for N rounds of --steps-per-epoch steps instead",
    )
    for option, kind, text in _SCHEDULE:
        p.add_argument(option, type=kind, metavar="N" if kind.kind is int else "F", help=text)


def _sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale-range",
        type=positive_float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="random zoom of the patches, as if imaged at other magnifications (default 0.8 1.25)",
    )
    p.add_argument(
        "--class-balance",
        type=share_type,
        metavar="F",
        help="share of patches centred on a randomly chosen class, so rare pores are seen as "
        "often as matrix (default 0.75)",
    )
    p.add_argument(
        "--freeze-bn",
        action="store_true",
        default=None,
        help="keep the model's learnt brightness statistics fixed (steadier with small batches)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        default=None,
        help="where to compute: auto picks a GPU when there is one",
    )
    p.add_argument(
        "--seed",
        type=seed,
        metavar="N",
        help="random seed, 0 to 4294967295: the same seed repeats a run exactly",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="extra processes preparing patches, 0 to 64 (default 0: none)",
    )


def check_settings(args: argparse.Namespace) -> None:
    """ValueError naming the first unusable combination of the settings given as options
    (``--scale-range 2 1``, ``--crop 100``, ``--mix 0``), checked on the defaults at parse time."""
    from ..training.config import TrainConfig

    cfg = TrainConfig()
    for dest, name in CONFIG_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is not None:
            setattr(cfg, name, tuple(value) if dest == "scale_range" else value)
    if cfg.patience == 0:
        cfg.patience = None  # --patience 0: never stop early
    cfg.validate()
