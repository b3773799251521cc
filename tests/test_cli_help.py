"""``poregrain --help`` is quick (no torch, no napari) and every option explains itself."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from napari_poregrain.cli import COMMANDS, build_parser, command_parsers, main

HEAVY = ("torch", "segmentation_models_pytorch", "napari", "scipy", "skimage")
CHECK = """
import sys
from napari_poregrain.cli import build_parser
parser = build_parser()
parser.format_help()
{extra}
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _heavy_after(extra: str = "") -> str:
    code = CHECK.format(extra=extra, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_build_parser_and_help_import_no_heavy_module():
    assert _heavy_after() == ""


@pytest.mark.parametrize("command", ["demo", "predict", "evaluate", "train", "measure"])
def test_every_command_help_imports_nothing_heavy_either(command):
    # a command stays light when its own options are shown (issue 22: --help in < 0.5 s)
    code = "import sys\nfrom napari_poregrain.cli import main\ntry:\n"
    code += f"    main([{command!r}, '--help'])\n"
    code += "except SystemExit:\n    pass\n"
    code += f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and out.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_poregrain_help_runs_and_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "napari_poregrain.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for name, text in COMMANDS.items():
        assert name in out.stdout and text.split()[0] in out.stdout


def test_commands_still_parse_their_options(capsys):
    args = build_parser().parse_args(["demo", "--truth"])
    assert args.truth and args._run.__module__ == "napari_poregrain.cli.demo"
    with pytest.raises(SystemExit) as exc:
        main(["measure"])  # missing arguments: argparse's one line, exit 2
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err


def _options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    return [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if a.help in (None, "") and not isinstance(a, argparse._HelpAction)
    ]


# train's --device, --seed and --out wait for their help strings (another helper's file)
PENDING: set[str] = set()  # commands whose help is not yet complete


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason="help pending")) if n in PENDING else n
        for n in COMMANDS
    ],
)
def test_every_option_has_help(name):
    assert _options_without_help(command_parsers(build_parser())[name]) == []
