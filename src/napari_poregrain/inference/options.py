"""The inference choices and defaults, importable without torch (the command line reads them
to build its options, so ``poregrain predict --help`` answers at once)."""

MULTIPLE = 16
"""DeepLabV3+ (output stride 16) needs tile sides divisible by this."""
DEFAULT_TILE = 1024
"""Tile side on a GPU: big tiles keep it busy."""
CPU_TILE = 768
"""Tile side on the CPU: the same speed as 1024 at about half the working memory."""
DEFAULT_OVERLAP = 0.0625
"""Overlap of neighbouring tiles, as a fraction of the nominal tile side."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("auto", "torch", "onnxruntime")
