"""Device choices without importing torch on the GUI thread.

A dock opens at once: its device list holds ``auto`` and ``cpu`` until :class:`TorchWarmup` has
imported torch (and the engine) in a background thread, then every device found; the tile
size follows the device unless the user changed it.
"""

from __future__ import annotations

import sys
import threading

from qtpy.QtCore import QObject, Signal

from ..inference.options import CPU_TILE

ENGINE_MODULES = ("torch", "napari_poregrain.inference.predict", "napari_poregrain.model")


class DeviceChoices:
    """Choices callable for a device ComboBox."""

    def __call__(self, _widget=None) -> list[str]:
        if "torch" not in sys.modules:
            return ["auto", "cpu"]
        from ..inference.device import available_devices

        return available_devices()


def default_tile_now() -> int:
    """The automatic device's tile side when torch is loaded, else the CPU's."""
    if "torch" not in sys.modules:
        return CPU_TILE
    from ..inference.device import default_tile, resolve_device

    return default_tile(resolve_device("auto"))


class _Relay(QObject):
    ready = Signal()


class TorchWarmup:
    """Imports the engine off the GUI thread once per process; ``on_ready`` runs on the GUI
    thread when it is loaded (at once when it already is)."""

    _lock = threading.Lock()
    _started = False

    def __init__(self, on_ready) -> None:
        self.relay = _Relay()
        self.relay.ready.connect(on_ready)
        if all(m in sys.modules for m in ENGINE_MODULES):
            self.relay.ready.emit()
            return
        threading.Thread(target=self._load, daemon=True, name="poregrain-warmup").start()

    def _load(self) -> None:
        import importlib

        with TorchWarmup._lock:
            for name in ENGINE_MODULES:
                importlib.import_module(name)
        try:
            self.relay.ready.emit()
        except RuntimeError:  # the dock was closed meanwhile
            pass
