"""Shared fixtures: tiny models and the shared real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_poregrain.model import new_model, save_checkpoint

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(subset: str) -> Path:
    """Path of a shared real-data subset, or skip the test with the reason."""
    path = SHARED_DATA / subset
    if not path.is_dir():
        pytest.skip(f"real SEM data not found at {path} (../shared/data beside the repo)")
    return path


@pytest.fixture
def tiny_model():
    """A seeded, randomly initialised ResNet-18 DeepLabV3+ in eval mode."""
    torch.manual_seed(0)
    return new_model("resnet18", name="tiny")


@pytest.fixture
def tiny_checkpoint(tiny_model, tmp_path) -> Path:
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")
