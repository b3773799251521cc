"""``poregrain train --run-dir RUN`` and ``--resume RUN``: a resumable run's folder.

``--run-dir`` records the run in ``RUN/run.json`` (every option, paths made absolute, the
recipe's text and the resolved settings) and keeps its latest state in ``RUN/state.safetensors``
(:mod:`..training.resume`). ``--resume RUN`` takes no other option: it re-reads the recorded
ones, refuses a recipe that changed since, and continues from the last state.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import sys
from pathlib import Path

from . import CliError

PATH_OPTIONS = ("images", "data_dir", "config", "labels", "val_images", "val_labels", "out",
                "run_dir")  # fmt: skip
_NOT_OPTIONS = ("_run", "resume", "command")


def resumed(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` itself, or with ``--resume RUN`` the options recorded in ``RUN/run.json``."""
    if args.resume is None:
        return args
    from ..training.resume import read_run

    given = [k for k, v in vars(args).items() if k not in _NOT_OPTIONS and v not in (None, False)]
    if given:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        raise CliError(f"--resume takes the run's recorded options; give no others ({names})")
    try:
        record = read_run(args.resume)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    options = dict(record["options"])
    for key in PATH_OPTIONS:
        if options.get(key) is not None:
            options[key] = Path(options[key])
    # today's defaults first: an option added since the run started keeps its default
    out = argparse.Namespace(**{**vars(args), **options})
    out.resume = out.run_dir = Path(args.resume)
    if out.config is not None and _read(out.config) != record.get("recipe_text"):
        raise CliError(
            f"{out.config} changed since the run started; restore it to resume "
            f"({Path(args.resume) / 'run.json'} holds the text it had)"
        )
    return out


def start(args: argparse.Namespace, job) -> object | None:
    """The run's :class:`~..training.resume.RunState` (None without ``--run-dir``); a new run's
    folder gets its ``run.json``."""
    if args.run_dir is None:
        return None
    from ..training.resume import DEFAULT_EVERY, RunState, write_run

    if os.environ.get("WORLD_SIZE", "1") != "1":
        raise CliError("--run-dir and --resume run in one process (not under torchrun)")
    try:
        state = RunState(args.run_dir, args.checkpoint_every or DEFAULT_EVERY)
        if args.resume is None:
            write_run(args.run_dir, _record(args, job))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.resume is not None and not state.resuming:
        print(f"note: {args.run_dir} holds no state yet; starting at step 0", file=sys.stderr)
    return state


def _record(args: argparse.Namespace, job) -> dict:
    options = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS}
    for key in PATH_OPTIONS:
        if options.get(key) is not None:
            options[key] = str(Path(options[key]).resolve())
    if options.get("init") and Path(options["init"]).is_file():
        options["init"] = str(Path(options["init"]).resolve())
    return {
        "command": "poregrain " + " ".join(sys.argv[1:]),
        "cwd": os.getcwd(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": options,
        "recipe_text": _read(args.config) if args.config is not None else None,
        "settings": dataclasses.asdict(job.cfg),
    }


def _read(path: Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None
