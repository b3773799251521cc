"""Shared fixtures: tiny models, the real data (full set or committed crops) and test markers.

Markers (declared in pyproject.toml, ``--strict-markers``) are set here at collection:
``gui`` for tests that use ``make_napari_viewer`` or ``qtbot``, ``real_data`` for tests that call
:func:`shared_data`, ``slow`` for the tests listed in :data:`SLOW` (over ~5 s on a laptop CPU).
Select with e.g. ``pytest -m "not slow and not gui"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from napari_poregrain.model import new_model, save_checkpoint

TESTS = Path(__file__).resolve().parent
CROPS = TESTS / "data"
# The full real data set beside the repository; NAPARI_POREGRAIN_SHARED_DATA overrides the place
# (point it at a missing folder to run the real-data tests on the committed crops only).
SHARED_DATA = Path(
    os.environ.get("NAPARI_POREGRAIN_SHARED_DATA") or TESTS.parents[1] / "shared" / "data"
)

GUI_FIXTURES = {"make_napari_viewer", "qtbot"}
# Tests over ~5 s on a quiet 2-core CPU (``pytest --durations=0``), as "file::function" (all its
# parameters included). Measured: the real-data tests, test_benchmarks, test_default_model,
# test_manifest and test_synthetic; extend it (or mark in the file) for the others.
SLOW = {
    "test_benchmarks.py::test_inference_quick_run_writes_every_section",
    "test_benchmarks.py::test_memory_quick_run_measures_each_child",
    "test_cli_train.py::test_real_zeiss_image_trains_above_its_data_bar",
}


def shared_data(subset: str) -> Path:
    """Folder of a real-data subset: the full set when present, else the crops in tests/data.

    Skips the test with the reason when neither holds the subset.
    """
    for root in (SHARED_DATA, CROPS):
        if (root / subset).is_dir():
            return root / subset
    pytest.skip(f"real SEM data {subset!r} found neither in {SHARED_DATA} nor in {CROPS}")


def is_crop(path: Path) -> bool:
    """True when ``path`` lies in the committed crops (tests/data), not the full data set."""
    return Path(path).resolve().is_relative_to(CROPS)


@pytest.fixture
def real_data():
    """:func:`shared_data` as a fixture (tests using it are marked ``real_data``)."""
    return shared_data


def _calls_shared_data(item: pytest.Item) -> bool:
    code = getattr(getattr(item, "function", None), "__code__", None)
    return code is not None and "shared_data" in code.co_names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & GUI_FIXTURES:
            item.add_marker(pytest.mark.gui)
        if "real_data" in names or _calls_shared_data(item):
            item.add_marker(pytest.mark.real_data)
        if f"{item.path.name}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _onnx_cache(tmp_path_factory):
    """Networks exported for ONNX Runtime go to a folder of this run, never the user's cache
    (an exported ``$NAPARI_POREGRAIN_CACHE_DIR`` is kept, to reuse exports between runs)."""
    os.environ.setdefault("NAPARI_POREGRAIN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_model():
    """A seeded, randomly initialised ResNet-18 DeepLabV3+ in eval mode."""
    torch.manual_seed(0)
    return new_model("resnet18", name="tiny")


@pytest.fixture
def tiny_checkpoint(tiny_model, tmp_path) -> Path:
    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors")


DOCK_NAMES = {
    "SegmentWidget": "Segment pores and grains",
    "MeasureWidget": "Measure",
    "IoUReportWidget": "IoU report",
    "FinetuneWidget": "Fine-tune on corrections",
}
"""The Plugins-menu name of each dock (napari.yaml's widgets)."""


def plugin_dock(viewer, cls):
    """The dock of class ``cls`` opened as the Plugins menu opens it: napari builds it with a
    ``PublicOnlyProxy`` of the viewer, which a dock built by hand never sees."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-poregrain", DOCK_NAMES[cls.__name__])
    assert isinstance(widget, cls), type(widget)
    return widget
