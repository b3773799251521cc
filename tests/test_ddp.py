"""DDP training under torchrun: 2 CPU processes with gloo, the loss falls, the checkpoint loads."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_poregrain.model import load_checkpoint
from napari_poregrain.preprocess import Normalization
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training.config import TrainConfig
from napari_poregrain.training.data import CropSampler, prepare_data, samples_from_pairs
from napari_poregrain.training.distributed import LaunchEnv, launch_env, rank_seed

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    from napari_poregrain.synthetic import make_sample
    from napari_poregrain.training.config import TrainConfig
    from napari_poregrain.training.data import samples_from_pairs
    from napari_poregrain.training.distributed import finish, is_main_process, trainer_class

    torch.set_num_threads(1)
    out, report = sys.argv[1], sys.argv[2]
    samples = samples_from_pairs([make_sample((128, 128), seed=s) for s in (0, 1)])
    cfg = TrainConfig(crop=64, batch=2, steps=40, steps_per_epoch=10, lr=3e-3, warmup=2,
                      device="cpu", patience=None, encoder="resnet18", refine=False)
    trainer = trainer_class("cpu")(samples, cfg, None, out)
    x, _ = next(iter(trainer.sampler))
    result = trainer.fit()
    rank = torch.distributed.get_rank()
    digest = hashlib.sha1(x.numpy().tobytes()).hexdigest()
    with open(f"{report}.{rank}", "w") as f:
        json.dump({"rank": rank, "world": torch.distributed.get_world_size(), "crop": digest,
                   "main": is_main_process(), "path": str(result.path),
                   "steps": result.steps}, f)
    finish()
    """
)


@pytest.mark.slow
def test_two_gloo_processes_train_and_rank0_writes_a_loadable_checkpoint(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "ddp.safetensors"
    report = tmp_path / "rank"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(script), str(out), str(report)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank.{r}").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["main"] for r in ranks] == [True, False]
    assert ranks[0]["crop"] != ranks[1]["crop"]  # each rank samples its own crops
    assert ranks[0]["path"] == str(out) and ranks[1]["path"] == "None"
    assert [r["steps"] for r in ranks] == [40, 40]
    with open(out.with_suffix(".csv")) as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 4 and losses[-1] < losses[0]
    model = load_checkpoint(out)
    assert model.meta.provenance["recipe"]["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if "ddp" in p.name) == [
        "ddp.csv",
        "ddp.safetensors",
        "ddp_train.py",
    ]


def test_launch_env_reads_torchrun_variables():
    assert launch_env({}) is None
    env = launch_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert env == LaunchEnv(rank=3, local_rank=1, world_size=4) and not env.is_main
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        launch_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match="integers"):
        launch_env({"WORLD_SIZE": "two", "RANK": "0"})


def test_ranks_draw_different_crops_and_rank_zero_keeps_the_seed():
    assert rank_seed(7, 0) == 7
    cfg = TrainConfig(crop=32, scale_range=(1.0, 1.0))
    samples = samples_from_pairs([make_sample((96, 96), seed=0)])
    train, _, _ = prepare_data(samples, cfg, Normalization())
    crops = []
    for rank in (0, 1):
        ranked = TrainConfig(crop=32, scale_range=(1.0, 1.0), seed=rank_seed(cfg.seed, rank))
        crops.append(next(iter(CropSampler(train, ranked, Normalization())))[0].numpy())
    assert not np.array_equal(crops[0], crops[1])


@pytest.mark.slow
def test_the_train_command_under_torchrun_writes_one_model(tmp_path):
    """`torchrun --nproc-per-node 2 -m napari_poregrain.cli train ...`: rank 0 alone writes."""
    import tifffile

    from napari_poregrain.io import write_labels

    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    for i in range(2):
        image, labels = make_sample((192, 192), seed=i)
        tifffile.imwrite(tmp_path / "images" / f"s{i}.tif", image)
        write_labels(tmp_path / "labels" / f"s{i}.png", labels)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "napari_poregrain.cli", "train", "--images", "images", "--labels", "labels",
        "--init", "scratch", "--steps", "8", "--crop", "96", "--batch", "2",
        "--out", "m.safetensors",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("model: m.safetensors") == 1  # one report, from rank 0
    assert load_checkpoint(tmp_path / "m.safetensors").meta.provenance["recipe"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "images",
        "labels",
        "m.csv",
        "m.safetensors",
    ]
