"""What training minimises and how: cross-entropy + Dice, AdamW, warm-up + cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..classes import IGNORE
from .config import TrainConfig


class SegmentationLoss(nn.Module):
    """Cross-entropy + multiclass Dice (smp), both ignoring label 255."""

    def __init__(self) -> None:
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss

        self.dice = DiceLoss(mode="multiclass", ignore_index=IGNORE)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss; ``weight`` (optional, per pixel) weighs the cross-entropy term."""
        logits = logits.float()
        keep = target != IGNORE
        if weight is None:
            n = keep.sum().clamp_min(1)
            ce = nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
        else:
            weight = weight.float() * keep
            n = weight.sum().clamp_min(1)
            per_pixel = nn.functional.cross_entropy(
                logits, target, ignore_index=IGNORE, reduction="none"
            )
            ce = (per_pixel * weight).sum()
        return ce / n + self.dice(logits, target)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): warm-up, then cosine."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def encoder_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of the network's encoder (none when it has no ``encoder``)."""
    encoder = getattr(net, "encoder", None)
    return [] if encoder is None else [p for p in encoder.parameters() if p.requires_grad]


def adamw(net: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW (fused where torch has it: 2x faster on CPU); the encoder at ``lr * encoder_lr``.

    The first parameter group is the decoder and head (its ``lr`` is the one reported).
    """
    encoder = {id(p) for p in encoder_parameters(net)}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in encoder]
    groups = [{"params": rest, "lr": cfg.lr}]
    if encoder:
        enc = [p for p in net.parameters() if id(p) in encoder]
        groups.append({"params": enc, "lr": cfg.lr * cfg.encoder_lr})
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, TypeError):  # pragma: no cover - older torch
            pass
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def freeze_batchnorm(net: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (its statistics stay fixed)."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
