"""Resumable training: a run folder holding the whole run and its latest state.

``RUN/run.json`` records the run (the command's options, the recipe's text, the settings); it is
written once at the start by :func:`write_run`. ``RUN/state.safetensors`` is one file written
atomically every ``every`` steps and after every validation: every tensor of the state (the
weights, the EMA weights, AdamW's moments, the fine-tune's kept weights with ``mix``, torch's
RNG states) with the scalars in its metadata as JSON (step, epoch, the schedule's state, the
log so far, the best score, the crop sampler's NumPy RNG state, Python's RNG state). No pickle:
a state file is read back by :func:`load_file` and ``json`` only.

:meth:`RunState.restore` puts all of it back into a :class:`~.trainer.Trainer` right after its
set-up, so a killed run resumed from its last state takes the same steps on the same crops as an
uninterrupted run (on the CPU with a fixed seed: identical weights, see ``tests/test_resume.py``).
Crops are then drawn in the main process only (``num_workers = 0``).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from ..io.atomic import atomic_write_bytes, write_exclusive
from .averaging import interpolate

RUN_FILE = "run.json"
STATE_FILE = "state.safetensors"
DEFAULT_EVERY = 50
"""Steps between two state files (and after every validation)."""
_TRAINER = ("step", "epoch", "losses", "best_score", "since_best", "saved", "metrics",
            "baseline", "selection_score", "bad_steps", "history")  # fmt: skip


def write_run(folder: str | Path, record: dict) -> Path:
    """Create ``folder`` (new or empty) and its ``run.json``; ValueError if it holds a run."""
    folder = Path(folder)
    if (folder / RUN_FILE).exists():
        raise ValueError(f"{folder} already holds a run; resume it with --resume {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, default=str) + "\n"
    return write_exclusive(folder / RUN_FILE, text.encode())


def read_run(folder: str | Path) -> dict:
    """The ``run.json`` of a run folder; ValueError naming the problem."""
    path = Path(folder) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder} is not a resumable run folder ({path}: {exc})") from None


class RunState:
    """A run folder's state file: written by :meth:`after_step`, read by :meth:`restore`."""

    def __init__(self, folder: str | Path, every: int = DEFAULT_EVERY) -> None:
        if every < 1:
            raise ValueError(f"the state is written every N >= 1 steps, not {every}")
        self.folder, self.every = Path(folder), every
        self.path = self.folder / STATE_FILE
        self.restored_step: int | None = None

    @property
    def resuming(self) -> bool:
        """Whether a state file is there to continue from."""
        return self.path.is_file()

    def begin(self, trainer) -> None:
        """After ``trainer``'s set-up: check the run can be resumed exactly; restore a state."""
        if trainer.config.num_workers:
            raise ValueError("a resumable run draws its crops in the main process (workers 0)")
        if self.resuming:
            self.restore(trainer)

    def after_step(self, trainer, validated: bool) -> None:
        """Write the state every ``every`` steps and after every validation (the last too: its
        weights stay readable even when the run saves no better epoch)."""
        if validated or (trainer.step % self.every == 0 and trainer.step < trainer.total_steps):
            self.save(trainer)

    def save(self, trainer) -> Path:
        """Write ``trainer``'s whole state atomically (readers see the old or the new file)."""
        tensors = _prefixed("net", trainer.net.state_dict())
        if trainer.ema is not None:
            tensors |= _prefixed("ema", trainer.ema.state_dict())
        if trainer.mixer.tuned is not None:
            tensors |= _prefixed("mix", trainer.mixer.tuned)
        optim = trainer.optimizer.state_dict()
        for index, state in optim["state"].items():
            tensors |= _prefixed(f"adamw.{index}", state)
        tensors["rng.torch"] = torch.get_rng_state()
        if trainer.device.type == "cuda":
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        scalars = {k: getattr(trainer, k) for k in _TRAINER}
        scalars |= {
            "out_path": str(trainer.out_path),
            "notes": trainer.result.notes,
            "best_epoch": trainer.result.best_epoch,
            "best_metrics": trainer.result.best_metrics,
            "mix_baseline": trainer.mixer.baseline,
            "seconds": time.perf_counter() - trainer._start,
            "param_groups": optim["param_groups"],
            "scheduler": _scheduler_state(trainer.scheduler),
            "scaler": trainer.scaler.state_dict(),
            "sampler_rng": trainer.sampler.rng.bit_generator.state,
            "python_rng": random.getstate(),
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        data = st_save(tensors, metadata={"state": json.dumps(scalars)})
        return atomic_write_bytes(self.path, data)

    def restore(self, trainer) -> None:
        """Put the saved state back into ``trainer`` (after its set-up, before its first step)."""
        tensors = load_file(self.path)
        scalars = json.loads(_metadata(self.path)["state"])
        trainer.net.load_state_dict(_part(tensors, "net"))
        if trainer.ema is not None:
            trainer.ema.load_state_dict(_part(tensors, "ema"))
        state = {}
        for key, value in tensors.items():
            if key.startswith("adamw."):
                index, name = key.removeprefix("adamw.").split(".", 1)
                state.setdefault(int(index), {})[name] = value
        groups = scalars.pop("param_groups")
        trainer.optimizer.load_state_dict({"state": state, "param_groups": groups})
        trainer.scheduler.load_state_dict(scalars.pop("scheduler"))
        trainer.scaler.load_state_dict(scalars.pop("scaler"))
        self._mixer(trainer, _part(tensors, "mix"), scalars.pop("mix_baseline"))
        self._rng(trainer, tensors, scalars)
        self._scalars(trainer, scalars)

    @staticmethod
    def _mixer(trainer, tuned: dict, baseline: float | None) -> None:
        """With ``mix``: the kept fine-tuned weights and the interpolation saved from them."""
        mixer = trainer.mixer
        mixer.baseline = baseline
        if tuned and mixer.start is not None:
            mixer.tuned = tuned
            mixer.saved = interpolate(mixer.start, _loaded(trainer.kept, tuned), mixer.mix)

    @staticmethod
    def _rng(trainer, tensors: dict, scalars: dict) -> None:
        torch.set_rng_state(tensors["rng.torch"])
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda and trainer.device.type == "cuda":
            torch.cuda.set_rng_state_all(cuda)
        trainer.sampler.resume_rng = scalars.pop("sampler_rng")
        version, internal, gauss = scalars.pop("python_rng")
        random.setstate((version, tuple(internal), gauss))

    def _scalars(self, trainer, scalars: dict) -> None:
        trainer.history[:] = scalars.pop("history")  # the list the result holds too
        for key in _TRAINER[:-1]:
            setattr(trainer, key, scalars.pop(key))
        trainer.out_path = Path(scalars.pop("out_path"))
        from .config import log_path_for

        trainer.log_path = trainer.result.log_path = log_path_for(trainer.out_path)
        result = trainer.result
        result.steps, result.notes = trainer.step, scalars.pop("notes")
        result.best_epoch, result.best_metrics = scalars.pop("best_epoch"), scalars["best_metrics"]
        if trainer.out_path.exists():  # saved after the last state file was written
            trainer.saved = True
        if trainer.saved:
            result.path = trainer.out_path
        trainer._start = time.perf_counter() - scalars.pop("seconds")
        self.restored_step = trainer.step
        trainer.result.notes.append(f"resumed at step {trainer.step} from {self.path}")


# ---------------------------------------------------------------------------------------------


def _prefixed(prefix: str, state: dict) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _part(tensors: dict, prefix: str) -> dict[str, torch.Tensor]:
    head = f"{prefix}."
    return {k.removeprefix(head): v for k, v in tensors.items() if k.startswith(head)}


def _loaded(module: torch.nn.Module, state: dict) -> torch.nn.Module:
    """A copy of ``module`` holding ``state``."""
    import copy

    out = copy.deepcopy(module)
    out.load_state_dict(state)
    return out


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata()


def _scheduler_state(scheduler) -> dict:
    """LambdaLR's state without its functions (the Trainer's own method is rebuilt)."""
    skip = ("optimizer", "lr_lambdas")
    state = {k: v for k, v in vars(scheduler).items() if k not in skip}
    state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
    return state
