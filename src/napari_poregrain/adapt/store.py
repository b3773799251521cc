"""A head inside a checkpoint: its tensors under ``head.`` and a JSON document, never pickled.

The document names the feature set (and its signature) and the network the head was fitted on
(:func:`network_hash`); a head for another network or feature set is refused on load.
"""

from __future__ import annotations

import hashlib

import torch

from .features import FeatureSet
from .head import HeadNet, PixelHead

PREFIX = "pixel_head."
KIND = "mlp-residual"


def network_hash(net: torch.nn.Module) -> str:
    """A short hash of a network's weights (float tensors rounded to float16 first, so a
    checkpoint saved with ``half`` is the same network)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu()
        t = t.to(torch.float16) if t.is_floating_point() else t
        h.update(name.encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def head_document(head: PixelHead) -> dict:
    """The JSON part of a stored head."""
    return {
        "kind": KIND,
        "features": head.features.to_dict(),
        "signature": head.features.signature,
        "network": head.network,
        "inputs": int(head.net.mean.numel()),
        "hidden": int(head.net.mlp[0].out_features),
    }


def head_tensors(head: PixelHead) -> dict[str, torch.Tensor]:
    """The head's tensors, float32, under :data:`PREFIX`."""
    state = head.net.state_dict()
    return {PREFIX + k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def head_from_checkpoint(doc: object, tensors: dict, network: str) -> PixelHead:
    """Rebuild a stored head; ValueError (one clause) if it does not fit this network or file."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ValueError("its head is not a known kind of pixel head")
    try:
        features = FeatureSet.from_dict(doc["features"])
        net = HeadNet(int(doc["inputs"]), int(doc["hidden"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"its head's description is invalid ({exc})") from None
    if features.signature != doc.get("signature") or len(features.names) != net.mean.numel():
        raise ValueError("its head was fitted on another feature set than it names")
    if doc.get("network") not in (None, network):
        raise ValueError("its head was fitted for another network than the one it holds")
    state = {k[len(PREFIX) :]: v for k, v in tensors.items()}
    expected = net.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in state):
        raise ValueError("its head's tensors do not match its description")
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise ValueError("its head holds non-finite weights")
    net.load_state_dict(state)
    return PixelHead(net, features, doc.get("network"))


def attach_head(model, meta: dict, tensors: dict) -> None:
    """Add ``model.head`` to a checkpoint's metadata and tensors (ValueError: not this net's)."""
    if model.head.network not in (None, network_hash(model.net)):
        raise ValueError("the pixel head was fitted for another network than the model's")
    meta["head"] = head_document(model.head)
    tensors.update(head_tensors(model.head))


def read_head(path, doc: object, tensors: dict, net: torch.nn.Module) -> PixelHead | None:
    """The head stored in a checkpoint, None without one; CheckpointError in one sentence."""
    from ..model import CheckpointError

    if doc is None:
        if tensors:
            raise CheckpointError(f"{path} holds pixel-head tensors but no head description")
        return None
    try:
        return head_from_checkpoint(doc, tensors, network_hash(net))
    except ValueError as exc:
        raise CheckpointError(f"{path} cannot be used: {exc}") from None
