"""napari-poregrain: segment pores and silt grains in SEM images of shale."""

try:
    from importlib.metadata import version as _v

    __version__ = _v("napari-poregrain")
except Exception:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
