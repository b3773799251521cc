"""``poregrain train`` fine-tuning from files in two stages (:mod:`..adapt.two_stage`).

The default for a starting model with ``--images/--labels`` (or ``--data-dir``): the pixel
head in seconds, then the network; the best of zero-shot, head, network and network + head on
a held-out block of the labels is saved and named. ``--head-only`` stops after the head;
``--network-only`` runs the network fine-tune alone (the Trainer, as before).
"""

from __future__ import annotations

import argparse

from . import CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--head-only",
        action="store_true",
        help="fine-tuning: fit only the fast pixel head over the starting network (seconds)",
    )
    how.add_argument(
        "--network-only",
        action="store_true",
        help="fine-tuning: train only the network (no pixel head, no two stages)",
    )


def wanted(args: argparse.Namespace, job) -> bool:
    """Two stages: fine-tuning from files, without a recipe, validation images or a run folder."""
    plain = job.model is not None and job.recipe is None and job.run is None and not job.val
    if args.head_only and not plain:
        raise CliError(
            "--head-only fine-tunes a starting model on --images/--labels (no recipe, "
            "validation images or run folder)"
        )
    return plain and not args.network_only and getattr(args, "resume", None) is None


def run(job, args: argparse.Namespace) -> int:
    """Fit, choose, save under ``--out`` (claimed exclusively) and say which stage was saved."""
    from dataclasses import replace

    from ..adapt.two_stage import two_stage
    from ..model import save_checkpoint

    try:
        result = two_stage(
            job.samples, job.model, config=job.cfg, head_only=args.head_only,
            device=job.cfg.device, seed=job.cfg.seed,
        )  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for note in result.notes:
        print(f"note: {note}")
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"{result.message}; {secs}")
    if result.stage == "zero-shot":
        print("nothing saved: no stage beat the starting model on the held-out labels")
        return 0
    meta = replace(result.model.meta, name=job.name or args.out.stem)
    meta.provenance = {**meta.provenance, **job.extra, "fine_tune": result.stage}
    model = replace(result.model, meta=meta)
    try:
        path = save_checkpoint(model, args.out, half=args.half, exclusive=True)
    except OSError as exc:
        raise CliError(f"could not save to {args.out}: {exc.strerror or exc}", 1) from None
    print(f"model: {path}")
    return 0
