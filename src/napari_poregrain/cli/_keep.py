"""Keeping a trained model when saving it under ``--out`` failed (a short name, said where)."""

from __future__ import annotations

from pathlib import Path


def keep_model(trainer) -> Path | None:
    """Where the best model so far is after a failed save: the file saved at an earlier epoch,
    or a short name beside ``--out`` (else the temporary folder); None when nothing is kept."""
    from ..io.outputs import keep_elsewhere

    if trainer is None or trainer.kept is None:
        return None
    if trainer.result.path is not None and trainer.result.path.is_file():
        return trainer.result.path
    return keep_elsewhere(trainer.out_path, _SaveAs(trainer))


class _SaveAs:
    """Save a trainer's best weights under another name (for :func:`keep_elsewhere`)."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def __call__(self, path: Path) -> Path:
        from ..training.config import log_path_for

        trainer = self.trainer
        trainer.out_path, trainer.log_path = path, log_path_for(path)
        trainer.result.log_path = trainer.log_path
        return trainer.save_best()
