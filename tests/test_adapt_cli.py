"""``poregrain train`` fine-tunes from files in two stages; ``--head-only`` stops after one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_poregrain.cli import main
from napari_poregrain.io.images import write_labels
from napari_poregrain.model import load_checkpoint
from napari_poregrain.synthetic import make_sample

FAST = ["--crop", "64", "--batch", "2", "--steps", "4", "--device", "cpu"]


def _folders(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    for stem, seed in (("a", 1), ("b", 2)):
        image, truth = make_sample((96, 112), seed=seed)
        Image.fromarray(image).save(images / f"{stem}.png")
        write_labels(labels / f"{stem}.png", truth)
    return images, labels


def _train(capsys, *args):
    rc = main(["train", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_head_only_saves_the_network_with_its_head(capsys, tmp_path, tiny_checkpoint):
    images, labels = _folders(tmp_path)
    out = tmp_path / "m.safetensors"
    common = ["--images", images, "--labels", labels, "--init", tiny_checkpoint, *FAST]
    rc, stdout, err = _train(capsys, *common, "--head-only", "--out", out)
    assert rc == 0, err
    assert "saved head (validation mean IoU: zero-shot" in stdout and f"model: {out}" in stdout
    model = load_checkpoint(out)
    assert model.head is not None and model.meta.provenance["fine_tune"] == "head"


def test_two_stages_by_default_and_the_stage_is_named(capsys, tmp_path, tiny_checkpoint):
    images, labels = _folders(tmp_path)
    out = tmp_path / "m.safetensors"
    common = ["--images", images, "--labels", labels, "--init", tiny_checkpoint, *FAST]
    rc, stdout, err = _train(capsys, *common, "--out", out)
    assert rc == 0, err
    assert "network" in stdout and "saved " in stdout
    stage = load_checkpoint(out).meta.provenance["fine_tune"]
    assert stage in ("head", "network", "network+head")
    with pytest.raises(SystemExit) as stop:  # argparse refuses the pair
        _train(capsys, *common, "--head-only", "--network-only", "--out", out)
    assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err
    one = tmp_path / "one"
    one.mkdir()
    write_labels(one / "a.png", np.ones((96, 112), np.uint8))
    write_labels(one / "b.png", np.ones((96, 112), np.uint8))
    rc, _, err = _train(capsys, "--images", images, "--labels", one, "--init", tiny_checkpoint,
                        *FAST, "--head-only", "--out", tmp_path / "x.safetensors")  # fmt: skip
    assert rc == 2 and "only grain pixels" in err and len(err.strip().splitlines()) == 1
