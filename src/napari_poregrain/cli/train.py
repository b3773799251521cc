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
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..sample import Sample
from . import CliError
from ._files import check_model_file, files_by_stem, pair_by_stem
from ._keep import keep_model
from ._resume import resumed, start
from ._train_args import CONFIG_OPTIONS, add_arguments

__all__ = ["add_arguments", "read_pair", "run"]
from ._seed import seed_split


def check_args(args: argparse.Namespace) -> None:
    """The settings given as options, checked together at parse time (before any reading)."""
    from ._train_args import check_settings

    check_settings(args)


def _folder_pairs(images: Path, labels: Path | None, option: str) -> list[tuple[str, Path, Path]]:
    from ..io.images import IMAGE_SUFFIXES, LABEL_SUFFIXES

    if labels is None:
        raise CliError(f"{option} DIR is required (the label maps of the images)")
    ims = files_by_stem(images, IMAGE_SUFFIXES, "image")
    labs = files_by_stem(labels, LABEL_SUFFIXES, "label")
    return pair_by_stem(ims, labs, "image", "label")


def read_pair(image_path: Path, label_path: Path) -> Sample:
    """An image and its label map as a Sample (its data bar is never trained on)."""
    from ..io.images import ImageReadError, read_sample

    try:
        sample = read_sample(image_path, labels=label_path)
    except ImageReadError as exc:
        raise CliError(str(exc)) from None
    if sample.is_stack:
        raise CliError(f"{image_path}: expected a 2-D image, got shape {sample.pixels.shape}")
    return replace(sample, name=image_path.name)


def _read_all(triples: list[tuple[str, Path, Path]], desc: str) -> list[Sample]:
    """Samples of the ``(stem, image, labels)`` files, with a progress bar."""
    from tqdm import tqdm

    bar = tqdm(triples, desc=desc, unit="image", file=sys.stderr, leave=False, disable=None)
    with bar:
        return [read_pair(image, labels) for _, image, labels in bar]


def _recipe_data(args: argparse.Namespace):
    from ..training.recipe import load_recipe, load_split

    try:
        recipe = load_recipe(args.config)
        split = load_split(recipe)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    return recipe, split.samples("train"), split.samples("val")


def _recipe_init(args: argparse.Namespace) -> Path | None:
    """The recipe's starting model file (``[model] init``) when ``--init`` does not replace it."""
    from ..training.recipe import load_recipe

    if args.config is None or args.init is not None:
        return None
    try:
        init = load_recipe(args.config).model.get("init")  # the TOML only: nothing else is read
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    return None if init in (None, "default", "scratch") else Path(init)


def _config(args: argparse.Namespace, recipe_train: dict | None, fine_tune: bool = False):
    """The settings: the fine-tune defaults (``fine_tune``) or the recipe's, then the options."""
    from ..training.config import TrainConfig, finetune_config

    cfg = finetune_config() if fine_tune else TrainConfig()
    for key, value in (recipe_train or {}).items():  # keys and types checked by the schema
        if key == "scale_range":
            value = tuple(value)
        setattr(cfg, key, value)
    if args.steps is not None or args.epochs is not None:
        cfg.steps = cfg.epochs = None
    for dest, name in CONFIG_OPTIONS.items():
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
    from ..model import DEFAULT_MODEL_PATH, CheckpointError, load_checkpoint, resolve_model

    if spec == "scratch":
        return None
    if encoder is not None:
        raise CliError("--encoder applies to --init scratch only (a starting model has its own)")
    try:
        if spec == "default" and not DEFAULT_MODEL_PATH.is_file():
            raise CliError(
                "no default model is installed yet; pass --init scratch or --init "
                "MODEL.safetensors"
            )
        return load_checkpoint(check_model_file(resolve_model(spec)))
    except CheckpointError as exc:
        raise CliError(str(exc)) from None


def _add_source_report(path: Path, recipe, half: bool) -> None:
    """Store the best model's validation IoU per recipe source, with baselines, in its metadata."""
    from ..training.recipe import add_source_report

    for source, rows in add_source_report(path, recipe, half).items():
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


class _CtrlC:
    """While entered: the first Ctrl-C asks to stop after the current step, a second aborts."""

    asked = False  # set on the instance by the first Ctrl-C
    previous = None  # the handler to restore

    def __call__(self, signum, frame) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        print(
            "\nporegrain train: stopping after this step (Ctrl-C again to abort)", file=sys.stderr
        )

    def stop_requested(self) -> bool:
        return self.asked

    def __enter__(self) -> _CtrlC:
        try:
            self.previous = signal.signal(signal.SIGINT, self)
        except ValueError:  # not the main thread: no graceful Ctrl-C
            self.previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


@dataclass
class _Job:
    """What one run trains on (Samples) and from (starting model, settings)."""

    samples: list[Sample]
    val: list[Sample] | None
    model: object  # a LoadedModel, or None: from scratch
    cfg: object  # the TrainConfig
    name: str | None
    extra: dict = field(default_factory=dict)  # provenance entries
    recipe: object = None
    run: object = None  # the RunState of a resumable run (--run-dir)


def _check_args(args: argparse.Namespace) -> None:
    from ..training.config import log_path_for

    out = args.out
    if out is None:
        raise CliError("--out MODEL.safetensors is required (the new model file)")
    if out.suffix != ".safetensors":
        raise CliError(f"{out}: the model file must end in .safetensors")
    from ..io.outputs import OutputError, check_folder, check_names, check_not_inputs

    inputs = (args.init, args.config, args.images, args.labels, args.val_images, args.val_labels)
    inputs += (_recipe_init(args),)
    outputs = (out, log_path_for(out))
    try:
        check_not_inputs(outputs, [Path(p) for p in (*inputs, args.data_dir) if p is not None])
        check_folder(out.parent)  # before hours of training, not after
        check_names(outputs)  # a name too long fails here, not at the first save
        for path in outputs:
            if path.exists() and args.resume is None:  # a resumed run's own files
                raise OutputError(
                    f"{path} already exists; choose another --out (nothing is overwritten)"
                )
    except OutputError as exc:
        raise CliError(str(exc)) from None
    if (args.val_images is None) != (args.val_labels is None):
        raise CliError("--val-images and --val-labels go together")
    if args.val_images is not None and args.val_fraction is not None:
        raise CliError("give --val-images/--val-labels or --val-fraction, not both")
    if args.images is None and args.labels is not None:
        raise CliError("--labels goes with --images")
    if args.config is not None and args.val_images is not None:
        raise CliError("--val-images is not used with --config (the recipe fixes the split)")
    if args.data_dir is not None and args.val_images is not None:
        raise CliError("--val-images is not used with --data-dir (it reads val.txt)")


def _recipe_job(args: argparse.Namespace) -> _Job:
    recipe, samples, val = _recipe_data(args)
    init_spec = args.init or recipe.model.get("init", "scratch")
    encoder = args.encoder or (recipe.model.get("encoder") if init_spec == "scratch" else None)
    cfg = _config(args, recipe.train)
    model = _init_model(init_spec, None if init_spec == "scratch" else args.encoder)
    if model is None and encoder is not None:
        cfg.encoder = encoder
    if model is None and "refine" in recipe.model:
        cfg.refine = bool(recipe.model["refine"])
    extra = {"recipe_file": recipe.path.name, "sources": [s.name for s in recipe.sources]}
    if model is not None:
        extra["init"] = init_spec
    name = args.name or recipe.model.get("name")
    return _Job(samples, val or None, model, cfg, name, extra, recipe)


def _files_job(args: argparse.Namespace) -> _Job:
    if args.data_dir is not None:
        train_files = seed_split(args.data_dir, "train", required=True)
        val_files = seed_split(args.data_dir, "val", required=False)
    else:
        train_files = _folder_pairs(args.images, args.labels, "--labels")
        val_files = None
        if args.val_images is not None:
            val_files = _folder_pairs(args.val_images, args.val_labels, "--val-labels")
    init_spec = args.init or "default"
    model = _init_model(init_spec, args.encoder)  # fail fast, before reading the images
    samples = _read_all(train_files, "read images")
    val = _read_all(val_files, "read validation images") if val_files else None
    cfg = _config(args, None, fine_tune=model is not None)
    if model is None and args.encoder is not None:
        cfg.encoder = args.encoder
    extra = {"init": init_spec} if model is not None else {}
    return _Job(samples, val, model, cfg, args.name, extra)


def _train(job: _Job, args: argparse.Namespace):
    from ..training.distributed import trainer_class

    trainer_type = trainer_class(job.cfg.device)  # DistributedTrainer under torchrun
    trainer = None
    with _CtrlC() as ctrl_c:
        reporter = _Reporter()
        try:
            trainer = trainer_type(
                job.samples, job.cfg, job.model, args.out, val_samples=job.val,
                progress=reporter, should_stop=ctrl_c.stop_requested, name=job.name,
                half=args.half, provenance=job.extra, run=job.run,
            )  # fmt: skip
            return trainer.fit()
        except (ValueError, FileExistsError, FloatingPointError) as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:  # read-only folder, disk full: keep the model elsewhere, say where
            kept = keep_model(trainer)
            why = f"could not save to {args.out}: {exc.strerror or exc}"
            raise CliError(why + (f"; the model is kept as {kept}" if kept else ""), 1) from None
        finally:
            reporter.close()


def _print_result(result) -> None:
    how = "cancelled" if result.cancelled else "stopped early" if result.stopped_early else "done"
    print(f"{how}: {result.steps} of {result.total_steps} steps in {result.seconds:.0f} s")
    for note in result.notes:
        print(f"note: {note}")
    if result.path is None:
        print(result.message)
    else:
        m = result.best_metrics
        if m is not None:
            iou = m["per_class_iou"]
            print(
                f"best epoch {result.best_epoch}: validation IoU matrix {_fmt(iou['matrix'])} "
                f"grain {_fmt(iou['grain'])} pore {_fmt(iou['pore'])} mean {_fmt(m['mean_iou'])}"
            )
        print(f"model: {result.path}")
    if result.log_path.exists():  # a run that saved nothing leaves no log either
        print(f"log: {result.log_path}")


def run(args: argparse.Namespace) -> int:
    from ..training.distributed import finish, is_main_process

    args = resumed(args)  # --resume RUN: the run's recorded options
    _check_args(args)
    job = _recipe_job(args) if args.config is not None else _files_job(args)
    job.run = start(args, job)  # --run-dir: resumable
    from . import _two_stage

    if _two_stage.wanted(args, job):  # fine-tuning from files: head, then network
        return _two_stage.run(job, args)
    try:
        result = _train(job, args)
    finally:
        main = is_main_process()
        finish()  # leave the torchrun process group (no-op otherwise)
    if not main:
        return 0  # only rank 0 reports and writes
    if job.recipe is not None and result.path is not None and job.val and not result.cancelled:
        _add_source_report(result.path, job.recipe, args.half)
    _print_result(result)
    return 130 if result.cancelled else 0
