"""Where models are: the shipped default, the user's model folder, names -> files.

Importable without torch (the command line resolves ``--model`` before deciding what to load);
:mod:`napari_poregrain.model` re-exports every name.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_DIR_ENV = "NAPARI_POREGRAIN_MODEL_DIR"
DEFAULT_MODEL_PATH = Path(__file__).parent / "models" / "default.safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message is one sentence."""


def user_model_dir() -> Path:
    """Folder of the user's own (fine-tuned) models; ``$NAPARI_POREGRAIN_MODEL_DIR`` overrides."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-poregrain")) / "models"


def available_models() -> dict[str, Path]:
    """Models to choose from by name: the shipped default first, then the user's models."""
    models: dict[str, Path] = {}
    if DEFAULT_MODEL_PATH.is_file():
        models["default"] = DEFAULT_MODEL_PATH
    folder = user_model_dir()
    if folder.is_dir():
        for p in sorted(folder.glob("*.safetensors")):
            models.setdefault(p.stem, p)
    return models


def resolve_model(spec: str | os.PathLike | None) -> Path:
    """Turn ``None``/``"default"``, a registered model name or a path into a file path."""
    if spec is None or str(spec) == "default":
        if not DEFAULT_MODEL_PATH.is_file():
            raise CheckpointError(
                "no default model is installed yet; pass a checkpoint file with --model"
            )
        return DEFAULT_MODEL_PATH
    path = Path(spec)
    if path.suffix == "" and not path.exists():
        named = available_models().get(str(spec))
        if named is not None:
            return named
    return path
