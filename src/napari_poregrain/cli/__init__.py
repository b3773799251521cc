"""poregrain: find pores and grains in SEM images of rocks, measure them and train the model.

Run 'poregrain COMMAND --help' for the options of one command.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

# sub-command -> module in napari_poregrain.cli with add_arguments(parser) and run(args) -> int
COMMANDS = {
    "predict": "Segment SEM images: one class map per image (0 matrix, 1 grain, 2 pore).",
    "demo": "Open napari with a synthetic shale image and the Segment panel.",
    "measure": "Porosity, pore- and grain-size tables (CSV + JSON) of class maps.",
    "evaluate": "Score class maps (or a model) against hand-made reference maps (IoU).",
    "train": "Train or fine-tune the model on labelled images.",
}


class CliError(Exception):
    """A problem to report as one line on stderr with a non-zero exit (2: bad input or use;
    1: the work failed, e.g. a save the disk refused)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_RANGE = re.compile(r"argument (--[\w-]+): must be")
_OPTION = re.compile(r"argument (--[\w-]+):")


class CommandParser(argparse.ArgumentParser):
    """A sub-command's parser that imports its module (and adds its options) on first use.

    ``poregrain --help`` therefore imports no command module, so neither torch nor napari.
    """

    def __init__(self, *args, command: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.command = command
        self.check = None  # the module's check_args(args): option combinations, at parse time
        self.argv: list[str] = []

    def load(self) -> CommandParser:
        """Import the command's module once: its options, its ``run`` and its ``check_args``."""
        if self.command is not None:
            module = importlib.import_module(f"{__name__}.{self.command}")
            self.command = None
            module.add_arguments(self)
            self.set_defaults(_run=module.run)
            self.check = getattr(module, "check_args", None)
        return self

    def parse_known_args(self, args=None, namespace=None):
        self.load()
        self.argv = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(args, namespace)
        if self.check is not None:
            try:
                self.check(parsed)  # e.g. --tile 16 --overlap 0.99: no step between tiles
            except (ValueError, argparse.ArgumentTypeError) as exc:
                self.error(str(exc))
        return parsed, extras

    def format_help(self) -> str:
        self.load()
        return super().format_help()

    def error(self, message: str):
        """argparse's usage + one line; a range check reads ``--batch must be ≥ 1, not 0``."""
        message = _RANGE.sub(r"\1 must be", message)
        message = _OPTION.sub(r"\1:", message)  # "argument --tile: ..." -> "--tile: ..."
        return super().error(message + _hint(message, self.argv, self._option_string_actions))

    def format_usage(self) -> str:
        self.load()
        return super().format_usage()


def _hint(message: str, argv: list[str], options) -> str:
    """How to write it when a value starting with ``-`` was read as an option."""
    if "expected one argument" in message:
        option = message.split(":", 1)[0].strip()
        if option in argv[:-1]:
            value = argv[argv.index(option) + 1]
            if value.startswith("-"):
                return f" ({value} reads as an option: write {option}={value})"
    if "unrecognized arguments:" in message:
        tokens = message.split("unrecognized arguments:", 1)[1].split()
    elif "arguments are required" in message:
        tokens = [a for a in argv if a.split("=")[0] not in options]
    else:
        return ""
    stray = [t for t in tokens if t.startswith("-") and _looks_like_a_file(t)]
    if stray:
        return (
            f" ({stray[0]} reads as an option: a file name starting with '-' goes after --, "
            f"e.g. -- {stray[0]})"
        )
    return ""


def _looks_like_a_file(token: str) -> bool:
    """``-x.tif``, ``-scan``, ``--a/b.png``: a name, not a misspelt ``--option``."""
    return not token.startswith("--") or "." in token or "/" in token


def build_parser() -> argparse.ArgumentParser:
    """The ``poregrain`` parser; a command's module is imported only when that command runs."""
    parser = CommandParser(
        prog="poregrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, command=name)
    return parser


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, CommandParser]:
    """Every sub-command's parser of ``parser``, loaded (imports every command module)."""
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: p.load() for name, p in action.choices.items()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CliError as exc:
        print(f"poregrain {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"poregrain {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
