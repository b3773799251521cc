"""Tiled inference: the choices (``options``, light), devices and precision (``device``), the
backends (``backend``, ``onnx``: ONNX Runtime on the CPU), the tile plan and streamed blending
(``tiling``), and ``predict`` (Sample in, class map out).

Nothing is imported here, so ``inference.options`` costs no torch import: take names from the
submodules (``from napari_poregrain.inference.predict import predict``).
"""
