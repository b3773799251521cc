"""Test-time flips: a network wrapper that averages class probabilities over mirrored inputs.

``FlipAveraged(net)`` returns the log of the mean softmax over the input and its left-right and
up-down mirrors (each mirrored back), so ``softmax`` of its output is that mean. It costs one
forward pass per view (3x by default). Engine module: no Qt, no napari.
"""

from __future__ import annotations

import torch

DEFAULT_FLIPS: tuple[tuple[int, ...], ...] = ((-1,), (-2,))
"""Mirrors averaged with the input: left-right, then up-down."""


class FlipAveraged(torch.nn.Module):
    """``net`` with its class probabilities averaged over the input and its ``flips``."""

    def __init__(self, net: torch.nn.Module, flips=DEFAULT_FLIPS) -> None:
        super().__init__()
        self.net = net
        self.flips = tuple(tuple(d) for d in flips)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.net(x).float(), dim=1)
        for dims in self.flips:
            probs = probs + torch.softmax(self.net(x.flip(dims)).float(), dim=1).flip(dims)
        return torch.log(probs / (1 + len(self.flips)))
