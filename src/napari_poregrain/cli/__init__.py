"""The ``poregrain`` command line: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module in napari_poregrain.cli with add_arguments(parser) and run(args) -> int
COMMANDS = {
    "predict": "Segment images into a 0/1/2 class map PNG per image.",
    "demo": "Open napari with the sample SEM image and the segmentation widget.",
    "measure": "Porosity, pore- and grain-size tables (CSV + JSON) of class-map label files.",
    "evaluate": "Per-class IoU of predicted label maps (or a model) against reference maps.",
    "train": "Train or fine-tune a model on labelled images (best model + per-epoch CSV log).",
}


class CliError(Exception):
    """A problem to report as one line on stderr with a non-zero exit."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poregrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CliError as exc:
        print(f"poregrain {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"poregrain {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
