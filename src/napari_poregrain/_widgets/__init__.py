"""Dock widgets: thin faces over the engine."""

import sys

# PyTorch's CUDA wheels pull in Triton, which bundles its own LLVM. Loaded after napari has
# opened an OpenGL context on Mesa (llvmpipe, radeonsi: also LLVM), importing it crashes the
# process. The widgets never compile kernels, so inside napari PyTorch is told Triton is absent
# (unless something imported it before the viewer opened, which is safe).
if "triton" not in sys.modules:
    sys.modules["triton"] = None
