"""``poregrain evaluate``: per-class IoU of predictions against reference label maps.

Four ways to give the pairs (files matched by stem):

* ``--pred DIR --truth DIR``: existing 0/1/2 class maps against reference maps;
* ``--images DIR --truth DIR [--model M]``: predict each image (above its data bar), then compare;
* ``--data-dir D [--split test]``: the seed's layout, ``D/JPEGImages/<stem>.*`` predicted and
  compared with ``D/SegmentationClassRaw/<stem>.png`` for the stems in ``D/ImageSets/<split>.txt``;
* ``--config RECIPE``: the held-out images of each source of a training recipe, with the model
  and with two baselines (Otsu threshold for pores, the majority class).

Every file must have its partner; the first missing, unreadable or mis-sized file stops the run
with one line naming it (exit 2), and so does a reference holding values other than 0, 1, 2 and
255 (unless ``--ignore-values`` lists them). ``--json`` prints one JSON object on stdout and
nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from ..analysis.metrics import ConfusionMatrix, format_table
from . import CliError
from ._files import files_by_stem, pair_by_stem
from ._seed import seed_split

if TYPE_CHECKING:
    import numpy as np

    from ..sample import Sample


# the ways to name the pairs (exactly one): option, metavar, help
_SOURCES = (
    (
        "--pred",
        "DIR",
        "folder of class maps already made (0 matrix, 1 grain, 2 pore), e.g. by "
        "poregrain predict; matched to --truth by file name",
    ),
    ("--images", "DIR", "folder of SEM images: segment each with --model, then score"),
    (
        "--data-dir",
        "D",
        "a data set in the seed's layout: images in JPEGImages/, hand-made class maps in "
        "SegmentationClassRaw/, image lists in ImageSets/",
    ),
    (
        "--config",
        "RECIPE",
        "a training recipe (TOML): score its held-out images per source, next to two simple "
        "baselines (Otsu threshold for pores, everything one class)",
    ),
)
KNOWN_VALUES = (0, 1, 2, 255)
"""Values a reference map may hold: the three classes and 255 (not scored)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._options import label_value
    from .predict import add_model_arguments

    src = p.add_mutually_exclusive_group(required=True)
    for flag, metavar, help_text in _SOURCES:
        src.add_argument(flag, type=Path, metavar=metavar, help=help_text)
    p.add_argument(
        "--truth",
        type=Path,
        metavar="DIR",
        help="folder of hand-made reference class maps (0 matrix, 1 grain, 2 pore, 255 not "
        "scored), one per image, same file name",
    )
    p.add_argument(
        "--split",
        default="test",
        help="with --data-dir: which image list to score, ImageSets/<SPLIT>.txt (default test)",
    )
    p.add_argument(
        "--ignore-values",
        type=label_value,
        nargs="+",
        default=[],
        metavar="VALUE",
        help="values of the reference maps left unscored like 255: other values (without it, a "
        "reference with a value other than 0, 1, 2 or 255 stops the run) or classes (2: "
        "score matrix and grain only)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the scores as one JSON object (for scripts) instead of a table",
    )
    add_model_arguments(p)


def check_args(args: argparse.Namespace) -> None:
    """Option combinations refused at parse time (a tile and overlap leaving no step)."""
    from ._options import check_tiling

    check_tiling(args)


def check_truth_values(labels: np.ndarray, path: Path, allowed: tuple[int, ...] = ()) -> None:
    """CliError naming ``path`` and its values when a reference holds values not in 0/1/2/255."""
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=np.uint8).ravel(), minlength=256)
    ok = set(KNOWN_VALUES) | set(allowed)
    stray = [v for v in np.flatnonzero(counts).tolist() if v not in ok]
    if stray:
        shown = ", ".join(map(str, stray[:8])) + (", ..." if len(stray) > 8 else "")
        n = int(counts[stray].sum())
        raise CliError(
            f"{path}: {n} reference pixels hold values other than 0, 1, 2 and 255 ({shown}); "
            f"fix the map, or pass --ignore-values {' '.join(map(str, stray))} to leave those "
            "pixels unscored"
        )


def scored_truth(truth: Sample, path: Path, ignore_values) -> Sample:
    """``truth`` with the ``--ignore-values`` pixels set to 255 (not scored; 0, 1 and 2 too:
    ``--ignore-values 2`` leaves the pores out), after :func:`check_truth_values`."""
    import numpy as np

    check_truth_values(truth.labels, path, tuple(ignore_values))
    if not ignore_values:
        return truth
    labels = np.asarray(truth.labels)
    return truth.with_labels(np.where(np.isin(labels, list(ignore_values)), 255, labels))


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
        pred = files_by_stem(args.pred, LABEL_SUFFIXES, "prediction")
        return pair_by_stem(pred, truth, "prediction", "reference")
    images = files_by_stem(args.images, IMAGE_SUFFIXES, "image")
    return pair_by_stem(images, truth, "image", "reference")


class _Scorer:
    """Turns a (source, reference) pair into a reference Sample and a predicted class map."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.model = args, None
        if args.pred is None:
            from .predict import load_model

            self.model = load_model(args)

    def pair(self, source: Path, truth_path: Path) -> tuple[Sample, np.ndarray]:
        """Reference Sample (bar and region of the image) and prediction; errors name the file."""
        from ..io.images import ImageReadError

        try:
            if self.model is None:
                truth, pred = self._read_pair(source, truth_path)
                truth = scored_truth(truth, truth_path, self.args.ignore_values)
            else:
                truth, pred = self._predict_pair(source, truth_path)
        except ImageReadError as exc:
            raise CliError(str(exc)) from None
        except (ValueError, OSError) as exc:
            raise CliError(f"{source}: {exc}") from None
        if pred.shape != truth.shape:
            raise CliError(
                f"{source}: prediction is {pred.shape[0]}x{pred.shape[1]} but its reference "
                f"{truth_path} is {truth.shape[0]}x{truth.shape[1]}"
            )
        return truth, pred

    @staticmethod
    def _read_pair(source: Path, truth_path: Path) -> tuple[Sample, np.ndarray]:
        from ..analysis.measure import class_map_sample
        from ..io.images import read_labels

        truth = class_map_sample(read_labels(truth_path), name=str(truth_path))
        return truth, read_labels(source)

    def _predict_pair(self, source: Path, truth_path: Path) -> tuple[Sample, np.ndarray]:
        from ..inference.predict import predict
        from ..io.images import read_sample
        from ._progress import TileBar

        sample = read_sample(source, labels=truth_path)  # a 2-D label map: a 2-D image
        args = self.args
        sample = scored_truth(sample, truth_path, args.ignore_values)  # before the compute
        # options that the shared model arguments may add (e.g. --precision)
        extra = {k: getattr(args, k) for k in ("precision", "backend") if getattr(args, k, None)}
        with TileBar(source.name) as bar:
            pred = predict(
                sample, self.model, tile=args.tile, overlap=args.overlap,
                batch_size=args.batch, device=args.device, progress=bar.update_to, **extra,
            ).labels  # fmt: skip
        return sample, pred


def evaluate(args: argparse.Namespace) -> ConfusionMatrix:
    """The summed confusion matrix of all pairs the arguments name, one pair in memory at a time.

    Each reference is a Sample: its data bar (from the image) and 255 pixels are not scored.
    """
    pairs = _pairs(args)
    scorer = _Scorer(args)
    cm = ConfusionMatrix()
    for _stem, source, truth_path in tqdm(
        pairs, desc="evaluate", unit="image", file=sys.stderr, leave=False, disable=None
    ):
        truth, pred = scorer.pair(source, truth_path)
        try:
            cm.update_sample(truth, pred)
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
            precision=args.precision, backend=args.backend,
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
