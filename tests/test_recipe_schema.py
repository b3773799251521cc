"""Recipes are checked against one typed schema before anything they name is read (issue 26).

A misspelt key used to be ignored (``encodr``), ``steps = true`` ran one step and values of the
wrong type ended in a TypeError or AttributeError deep inside training.
"""

from __future__ import annotations

import os

import pytest

from napari_poregrain.cli import main
from napari_poregrain.training.recipe import load_recipe

SOURCE = '[[source]]\nname = "s"\nsynthetic = true\n'
GOOD = f'[model]\nencoder = "resnet18"\n[train]\nsteps = 2\n{SOURCE}'


def _recipe(tmp_path, text: str):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[model]\nencodr = "resnet34"', "[model] has an unknown key 'encodr'"),
        ("[model]\nencoder = 42", "[model] encoder = 42: expected text"),
        ('[model]\nrefine = "yes"', '[model] refine = "yes": expected true or false'),
        ("[train]\nsteps = true", "[train] steps = true: expected a whole number"),
        ('[train]\ncrop = "64"', '[train] crop = "64": expected a whole number'),
        ("[train]\nscale_range = 3", "[train] scale_range = 3: expected a list of 2 numbers"),
        ("[train]\nlr = nan", "[train] lr = NaN: expected a finite number"),
        ("[train]\nstepz = 3", "did you mean 'steps'?"),
        ("source = [1]", "source = [1]: expected [[source]] tables"),
        ('[[source]]\nname = "a"\nimages = 5', "[[source]] 1 (a) images = 5: expected a folder"),
        ("[[source]]\nname = 3\nsynthetic = true", "[[source]] 1 name = 3: expected text"),
        ("[[source]]\nsynthetic = true", "[[source]] 1 has no name"),
        ('[[source]]\nname = "a"\nval = "x"', '(a) val = "x": expected a list of texts'),
        ('[[source]]\nname = "a"\nrepeat = -2', "(a) repeat = -2: expected a whole number ≥ 0"),
        ("[sources]\nx = 1", "unknown section [sources]"),
        ('[train]\ndevice = "gpu"', '[train] device = "gpu": expected one of auto, cpu, cuda'),
        ("[train]\nnum_workers = 100000", "= 100000: expected a whole number from 0 to 64"),
        ("[train]\nseed = -1", "seed = -1: expected a whole number from 0 to 4294967295"),
    ],
)
def test_off_schema_values_are_one_sentence_naming_key_value_and_expected(tmp_path, text, words):
    alone = text.startswith(("[[source]]", "source ="))
    path = _recipe(tmp_path, text if alone else f"{text}\n{SOURCE}")
    with pytest.raises(ValueError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message


def test_a_good_recipe_still_loads(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, GOOD))
    assert recipe.model == {"encoder": "resnet18"} and recipe.train == {"steps": 2}
    assert [s.name for s in recipe.sources] == ["s"]


def test_the_shipped_recipes_fit_the_schema():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "recipes").glob("*.toml")):
        assert load_recipe(path).sources, path


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_commands_refuse_an_off_schema_recipe_in_one_line(tmp_path, capsys, command):
    path = _recipe(tmp_path, '[model]\nencodr = "x"\n' + GOOD.removeprefix("[model]\n"))
    argv = [command, "--config", str(path)]
    argv += ["--out", str(tmp_path / "m.safetensors")] if command == "train" else []
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"poregrain {command}: {path}: [model] has an unknown key 'encodr' (= \"x\"); "
                   "did you mean 'encoder'?"]  # fmt: skip
    assert not (tmp_path / "m.safetensors").exists()


def test_a_named_pipe_as_recipe_is_refused_unopened(tmp_path):
    pipe = tmp_path / "r.toml"
    os.mkfifo(pipe)
    with pytest.raises(ValueError, match="named pipe"):
        load_recipe(pipe)
