"""Training on several processes or GPUs under ``torchrun``: DistributedDataParallel.

``torchrun --nproc-per-node N -m napari_poregrain.cli train ...`` starts N processes with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. :func:`launch_env` reads them,
:func:`init_distributed` joins the process group (NCCL on GPUs, gloo on the CPU) and
:class:`DistributedTrainer` wraps the network in ``DistributedDataParallel`` (gradients are
averaged across ranks each step), gives every rank its own crop-sampler seed, and lets only
rank 0 validate, log, report progress and write the checkpoint; the early-stop decision is
broadcast from rank 0 so every rank leaves the loop at the same step. Every rank holds all
training images (data parallelism over crops, not over images).
"""

from __future__ import annotations

import copy
import os
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .data import CropSampler
from .trainer import Trainer

_RANK_SEED_STRIDE = 1_000_003
"""Seeds of different ranks' crop samplers are this far apart (never overlapping streams)."""


class LaunchEnv(NamedTuple):
    """Where this process sits in a ``torchrun`` launch: rank, local rank, world size."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_env(environ: dict | None = None) -> LaunchEnv | None:
    """The launcher's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; None when not under torchrun."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
    if not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is outside WORLD_SIZE {world}")
    return LaunchEnv(rank, local, world)


def rank_seed(seed: int, rank: int) -> int:
    """The crop-sampler seed of ``rank`` (rank 0 keeps ``seed``: one process = plain training)."""
    return seed + rank * _RANK_SEED_STRIDE


def init_distributed(env: LaunchEnv, device: str = "auto") -> torch.device:
    """Join the process group (once) and return this rank's device.

    NCCL with one GPU per rank (``cuda:LOCAL_RANK``) when CUDA is used, gloo on the CPU.
    """
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise ValueError("--device cuda was asked for but CUDA is not available")
    dev = torch.device("cuda", env.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_cuda else "gloo", rank=env.rank, world_size=env.world_size
        )
    return dev


class DistributedTrainer(Trainer):
    """A :class:`Trainer` for one rank of a ``torchrun`` launch (same arguments, plus ``env``).

    Call :func:`init_distributed` first. Only rank 0 writes the checkpoint and the log and
    reports progress; the other ranks' :attr:`result` has no ``path``.
    """

    def __init__(self, *args, env: LaunchEnv, **kwargs) -> None:
        self.env = env
        super().__init__(*args, **kwargs)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", env.local_rank)
        cfg = copy.copy(self.config)
        cfg.seed = rank_seed(cfg.seed, env.rank)
        self.sampler = CropSampler(self.train_regions, cfg, self.norm)
        self.recipe["world_size"] = env.world_size

    def _setup(self) -> None:
        super()._setup()
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.net = DistributedDataParallel(self.net, device_ids=ids)
        # the optimiser, the EMA and ``kept`` already hold the wrapped module's parameters

    def validate(self) -> bool:
        """Rank 0 scores, logs and saves; every rank learns whether to stop early."""
        best = super().validate() if self.env.is_main else False
        state = torch.tensor([self.since_best, int(best)], dtype=torch.int64)
        dist.broadcast(state, src=0)
        self.since_best = int(state[0])
        return bool(state[1])

    def save_best(self, net=None):
        if not self.env.is_main:  # pragma: no cover - validate() runs on rank 0 only
            return None
        return super().save_best(net)

    def _conclude(self) -> None:
        if self.env.is_main:  # the others must not remove rank 0's log as "not saved here"
            super()._conclude()

    def _emit(self, event) -> None:
        if self.env.is_main:
            super()._emit(event)

    def fit(self):
        """Train, then wait for every rank (rank 0's checkpoint is complete afterwards)."""
        result = super().fit()
        dist.barrier()
        return result


def trainer_class(device: str = "auto"):
    """The Trainer to use in this process: :class:`DistributedTrainer` bound to the launch
    when started by ``torchrun`` with more than one process, else :class:`Trainer`."""
    env = launch_env()
    if env is None or env.world_size == 1:
        return Trainer
    init_distributed(env, device)
    return _Bound(env)


class _Bound:
    """``DistributedTrainer(..., env=env)`` with the launch filled in."""

    def __init__(self, env: LaunchEnv) -> None:
        self.env = env

    def __call__(self, *args, **kwargs) -> DistributedTrainer:
        return DistributedTrainer(*args, env=self.env, **kwargs)


def is_main_process() -> bool:
    """True outside torchrun and on rank 0 (the one that prints and writes)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def finish() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()
