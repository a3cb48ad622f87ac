"""Exporting a pretrained encoder, or a backbone with its adapters merged, without ever overwriting a file."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

from ssl_lightning.nets.peft_backbone import PeftBackbone

log = logging.getLogger(__name__)


def refuse_existing(path: str | Path, option: str) -> Path:
    """Raise if ``path`` exists: results of earlier runs are never overwritten."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(
            f"{option} {path} already exists (an earlier run's result?); refusing to overwrite it. "
            f"Pass a new path, e.g. --model.init_args.{option.split('.')[-1]} {path.with_stem(path.stem + '-2')}, "
            f"or null to skip the export (the encoder is also inside every checkpoint)."
        )
    return path


def save_encoder_state(encoder: nn.Module, path: str | Path) -> Path:
    """Write ``encoder``'s state dict (CPU tensors) for ``Classifier(backbone_checkpoint=path)``."""
    path = refuse_existing(path, "encoder_path")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: value.detach().cpu() for key, value in encoder.state_dict().items()}, path)
    return path


def save_merged_backbone(module: nn.Module, path: str | Path) -> Path:
    """Fold a :class:`~ssl_lightning.nets.peft_backbone.PeftBackbone`'s adapters into its base weights
    (:meth:`~ssl_lightning.nets.peft_backbone.PeftBackbone.merge`) and write the plain backbone's state dict.

    The file has the keys of the backbone before it was wrapped (e.g. an ``HFEncoder``'s ``encoder.*`` and
    ``head.*``), so inference needs neither peft nor adapters: build that backbone as in the training config
    and load it, e.g. ``Classifier(backbone=HFEncoder(..., num_classes=K), backbone_checkpoint=path)`` or
    ``--model.init_args.backbone_checkpoint path``. Its outputs equal the adapted model's up to float rounding.
    ``scripts/export_merged.py`` does this for a Lightning checkpoint.

    Args:
        module: a PeftBackbone, or a module with one as ``backbone`` (a Classifier, SetFitClassifier, FixMatch).
        path: the file to write; an existing file is never overwritten.
    """
    backbone = getattr(module, "backbone", module)
    if not isinstance(backbone, PeftBackbone):
        raise TypeError(f"nothing to merge: {type(backbone).__name__} is not a PeftBackbone (it has no adapters).")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite it. Pass a new path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: value.detach().cpu() for key, value in backbone.merge().state_dict().items()}, path)
    return path


class EncoderExport(pl.LightningModule):
    """Adds ``encoder_path`` export to a pretraining module that has an ``encoder``.

    Checked before training starts (so a clash costs nothing) and written at the end of fit by
    rank 0 only.
    """

    encoder: nn.Module
    encoder_path: str | None

    def save_encoder(self, path: str | Path) -> Path:
        return save_encoder_state(self.encoder, path)

    def on_fit_start(self) -> None:
        if self.encoder_path is not None and self.trainer.is_global_zero:
            refuse_existing(self.encoder_path, "encoder_path")

    def on_fit_end(self) -> None:
        if self.encoder_path is not None and self.trainer.is_global_zero:
            log.info("%s: encoder saved to %s", type(self).__name__, self.save_encoder(self.encoder_path))
