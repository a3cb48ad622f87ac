"""The backbone contract (timm's, with pooled features) and the classifier head every net shares.

Every backbone in ``nets/`` follows timm's contract (``timm/models/resnet.py``):

- ``num_features``: size of the feature vector.
- ``num_classes``: outputs of the head; ``0`` means no head (``head`` is ``nn.Identity``), the
  net is then a feature extractor (ProtoNet, SimCLR's encoder, an autoencoder's encoder).
- ``forward_features(x)`` -> **pooled** features ``float[B, num_features]``.
- ``forward_head(features)``: ``float[B, num_features]`` -> ``float[B, num_classes]`` (the
  features themselves when ``num_classes=0``).
- ``reset_classifier(num_classes)``: a fresh ``Linear(num_features, num_classes)`` head.
- ``forward(x) = forward_head(forward_features(x))``; the head lives in ``self.head``, so its
  state-dict keys are ``head.weight`` / ``head.bias`` in every net.

One difference from timm, on purpose: timm's ``forward_features`` returns the last feature
*maps* (``float[B, C, H, W]``, or tokens for a ViT) and pools inside ``forward_head``; ours
returns the pooled vector, because every method here that reads embeddings (ProtoNet, SimCLR,
SetFit, feature caches, selection) needs ``float[B, D]``. To use a raw timm model (or anything
that returns maps) with those methods, go through :func:`pooled_features`, or wrap it in
:class:`~ssl_lightning.nets.pretrained.TimmBackbone`.

:class:`ClassifierHeadMixin` writes the head half of the contract once; a net supplies
``num_features`` and ``forward_features``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn


class ClassifierHeadMixin:
    """``num_classes``, ``head``, ``reset_classifier``, ``forward_head`` and ``forward`` of the contract.

    Mix it in before ``nn.Module``; the net sets ``self.num_features`` and then calls
    ``self.reset_classifier(num_classes)`` in ``__init__`` where the head belongs in its
    state dict, and defines ``forward_features``. Shapes: ``forward_features(x)``:
    ``float[B, num_features]`` -> ``forward_head``: ``float[B, num_classes]``.

    Example::

        class Tiny(ClassifierHeadMixin, nn.Module):
            def __init__(self, num_classes: int = 10) -> None:
                super().__init__()
                self.num_features = 16
                self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(16))
                self.reset_classifier(num_classes)

            def forward_features(self, x: Tensor) -> Tensor:
                return self.body(x)
    """

    num_features: int
    num_classes: int
    head: nn.Module

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh ``Linear(num_features, num_classes)`` (identity if 0)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Any) -> Tensor:
        """Inputs -> pooled float[B, num_features]; every net defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward_features (the backbone contract).")

    def forward_head(self, features: Tensor) -> Tensor:
        """float[B, num_features] -> float[B, num_classes] (unchanged features when ``num_classes=0``)."""
        return self.head(features)

    def forward(self, x: Any) -> Tensor:
        """``forward_head(forward_features(x))``: inputs -> float[B, num_classes]."""
        return self.forward_head(self.forward_features(x))


def pooled_features(net: nn.Module, x: Any) -> Tensor:
    """Pooled features float[B, D] of any net with ``forward_features``, ours or a raw timm model.

    Our backbones already return ``float[B, num_features]``, which is passed through. A timm
    model returns maps (``float[B, C, H, W]``) or tokens (``float[B, N, D]``); its own
    ``forward_head(maps, pre_logits=True)`` pools them the way the model was trained (global
    average for CNNs, the class token for ViTs). Anything else with more than two dimensions
    is averaged over every dimension after the channels (``float[B, C, ...] -> float[B, C]``).

    Example::

        import timm
        model = timm.create_model("resnet18", num_classes=0)
        pooled_features(model, torch.rand(2, 3, 64, 64)).shape  # (2, 512)
    """
    out = net.forward_features(x)
    if not isinstance(out, Tensor) or out.ndim <= 2:
        return out
    forward_head = getattr(net, "forward_head", None)
    if callable(forward_head) and "pre_logits" in inspect.signature(forward_head).parameters:
        return forward_head(out, pre_logits=True)
    return out.flatten(2).mean(dim=2)
