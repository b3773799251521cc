"""Resumable training: a run killed mid-way and resumed ends exactly as an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch

from napari_poregrain.model import load_checkpoint, new_model
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training import TrainConfig
from napari_poregrain.training.resume import RunState, read_run, write_run
from napari_poregrain.training.trainer import Trainer

# 8 steps, validated at steps 3, 6 and 8; augmentation on (zoom, noise: torch's RNG is used).
CFG = dict(crop=64, batch=2, steps=8, steps_per_epoch=3, device="cpu", lr=2e-3, seed=3,
           scale_range=(0.8, 1.25), noise=0.05, patience=None)  # fmt: skip


class Killed(Exception):
    """Stands for the process being killed: nothing after it runs."""


class KillAt:
    """A progress callback that kills the run once ``step`` is done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, event) -> None:
        if event.kind == "step" and event.step == self.step:
            raise Killed


def _data():
    image, labels = make_sample((96, 112), seed=3)
    val_image, val_labels = make_sample((64, 64), seed=4)
    return [Sample(image, labels=labels, name="a")], [Sample(val_image, labels=val_labels)]


def _init():
    torch.manual_seed(0)
    return new_model("resnet18", name="start")


def _trainer(out, cfg, init, run=None, progress=None) -> Trainer:
    samples, val = _data()
    return Trainer(samples, TrainConfig(**cfg), init, out, val_samples=val, run=run,
                   progress=progress)  # fmt: skip


def _rows(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize(
    "extra", [dict(ema=0.9), dict(mix=0.5)], ids=["scratch-ema", "fine-tune-mix"]
)
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, extra):
    cfg = {**CFG, **extra}
    init = _init() if "mix" in extra else None
    whole = _trainer(tmp_path / "whole.safetensors", cfg, init)
    expected = whole.fit()
    run_dir = tmp_path / "run"
    killed = _trainer(tmp_path / "m.safetensors", cfg, init, RunState(run_dir, every=2),
                      KillAt(5))  # fmt: skip
    with pytest.raises(Killed):
        killed.fit()  # the state of step 4 is on disk (written every 2 steps)
    resumed = _trainer(tmp_path / "m.safetensors", cfg, init, RunState(run_dir))
    assert resumed.run.resuming
    result = resumed.fit()
    assert resumed.run.restored_step == 4 and result.steps == expected.steps == 8
    assert f"resumed at step 4 from {run_dir / 'state.safetensors'}" in result.notes
    net, ref = resumed.net.state_dict(), whole.net.state_dict()
    assert all(torch.equal(net[k], ref[k]) for k in ref)  # identical, not merely close
    assert _rows(result.history) == _rows(expected.history)
    saved, ref_saved = (load_checkpoint(r.path).net.state_dict() for r in (result, expected))
    assert all(torch.equal(saved[k], ref_saved[k]) for k in ref_saved)
    assert result.best_epoch == expected.best_epoch


def test_state_is_one_safetensors_file_with_json_scalars(tmp_path):
    trainer = _trainer(tmp_path / "m.safetensors", {**CFG, "steps": 2}, None,
                       RunState(tmp_path / "run", every=1))  # fmt: skip
    trainer.fit()
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["state.safetensors"]  # no pickle, no temporary left
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "state.safetensors"), "pt") as f:
        state = json.loads(f.metadata()["state"])
        keys = set(f.keys())
    assert state["step"] == 2 and state["sampler_rng"]["bit_generator"] == "PCG64"
    assert "rng.torch" in keys and any(k.startswith("adamw.") for k in keys)


def test_run_record_is_written_once(tmp_path):
    write_run(tmp_path / "run", {"options": {"steps": 8}})
    assert read_run(tmp_path / "run") == {"options": {"steps": 8}}
    with pytest.raises(ValueError, match="already holds a run"):
        write_run(tmp_path / "run", {})
    with pytest.raises(ValueError, match="not a resumable run folder"):
        read_run(tmp_path / "nothing")
    with pytest.raises(ValueError, match="workers 0"):
        _trainer(tmp_path / "w.safetensors", {**CFG, "num_workers": 1}, None,
                 RunState(tmp_path / "r2")).fit()  # fmt: skip


def test_state_model_writes_the_validated_weights_of_a_state(tmp_path, monkeypatch):
    """benchmarks/state_model.py: the state's weights at a validation, as a model file."""
    from pathlib import Path

    from napari_poregrain.model import save_checkpoint

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    state_model = pytest.importorskip("state_model")
    start = save_checkpoint(_init_loaded(), tmp_path / "start.safetensors")
    trainer = _trainer(tmp_path / "m.safetensors", {**CFG, "steps": 3}, None,
                       RunState(tmp_path / "run"))  # fmt: skip
    trainer.fit()
    path = state_model.snapshot(tmp_path / "run", tmp_path / "epochs", str(start))
    assert path.name == "step-00003.safetensors"
    got, want = load_checkpoint(path).net.state_dict(), trainer.kept.state_dict()
    floats = [k for k in want if want[k].is_floating_point()]
    assert all(torch.equal(got[k].float(), want[k].half().float()) for k in floats)


def _init_loaded():
    torch.manual_seed(0)
    return new_model("resnet18", refine=True, name="start")  # as a run from scratch builds it
