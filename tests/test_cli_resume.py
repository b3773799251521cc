"""``poregrain train --run-dir`` / ``--resume``: a killed process resumed from its run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from napari_poregrain.cli import main
from napari_poregrain.io.images import write_labels
from napari_poregrain.model import load_checkpoint
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training import load_training_log, log_path_for

RUN = ["--crop", "64", "--batch", "2", "--steps", "8", "--steps-per-epoch", "4", "--device",
       "cpu", "--init", "scratch", "--seed", "2", "--checkpoint-every", "2"]  # fmt: skip


def _folders(root):
    (root / "images").mkdir(parents=True)
    for stem, seed in (("a", 1), ("b", 2)):
        image, labels = make_sample((96, 112), seed=seed)
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        write_labels(root / "labels" / f"{stem}.png", labels)
    return ["--images", root / "images", "--labels", root / "labels", "--val-fraction", "0.25"]


def _log(model):
    return load_training_log(log_path_for(model))


def _kill_after_first_state(cmd, state, timeout=300.0):
    """Start ``cmd``, SIGKILL it once ``state`` exists (or when it ends by itself)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    end = time.monotonic() + timeout
    while proc.poll() is None and not state.exists() and time.monotonic() < end:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_command_resumes_to_the_uninterrupted_model(tmp_path, capsys):
    data = _folders(tmp_path / "data")
    args = [str(a) for a in (*data, *RUN)]
    assert main(["train", *args, "--out", str(tmp_path / "whole.safetensors")]) == 0
    run = tmp_path / "run"
    out = tmp_path / "m.safetensors"
    cmd = [sys.executable, "-m", "napari_poregrain.cli", "train", *args, "--out", str(out),
           "--run-dir", str(run)]  # fmt: skip
    _kill_after_first_state(cmd, run / "state.safetensors")
    record = json.loads((run / "run.json").read_text())
    assert record["options"]["steps"] == 8 and record["settings"]["crop"] == 64
    del record["options"]["workers"]  # as if --workers were added after the run started
    (run / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "done: 8 of 8 steps" in printed and "note: resumed at step" in printed
    got, want = (
        load_checkpoint(p).net.state_dict() for p in (out, tmp_path / "whole.safetensors")
    )
    assert all(torch.equal(got[k], want[k]) for k in want)
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in _log(out)]
    ref = _log(tmp_path / "whole.safetensors")
    assert rows == [{k: v for k, v in r.items() if k != "seconds"} for r in ref]


def test_resume_takes_no_other_option_and_needs_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(tmp_path), "--config", "r.toml"])  # one source only
    assert main(["train", "--resume", str(tmp_path), "--steps", "3"]) == 2
    assert "give no others (--steps)" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "not a resumable run folder" in capsys.readouterr().err
