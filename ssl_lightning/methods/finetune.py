"""Per-episode fine-tuning of the backbone on the support set: the "F" of P>M>F (Hu, Li, Stühmer, Kim &
Hospedales 2022, "Pushing the Limits of Simple Pipelines for Few-Shot Learning: External Data and Fine-Tuning
Make a Difference")."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ssl_lightning.methods.episodic import with_autograd
from ssl_lightning.methods.functional import cosine_logits, prototypes
from ssl_lightning.methods.pretrain_adapt import PretrainThenAdapt, eval_mode
from ssl_lightning.nets.head import pooled_features


class _Features(nn.Module):
    """``pooled_features`` of a net as a module's ``forward``, so ``functional_call`` can run it with other weights."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return pooled_features(self.net, x)


class EpisodeFineTune(PretrainThenAdapt):
    """Per episode, fine-tune a copy of the backbone on the support set with a prototype classifier, then classify
    the queries with it.

    Hu et al. 2022, Sec. 3.3: the weights are copied (here: cloned tensors run through the backbone with
    ``torch.func.functional_call``, nothing is written into the module, so the trained weights stay
    bitwise unchanged and no state passes between episodes) and trained for ``steps`` steps on the
    support set alone: the prototypes are the class means of the support features, the pseudo-queries
    are the support images themselves (each flipped left-right with probability 1/2 per step when
    ``flip``; P>M>F uses colour and translation augmentation), classified by ``cosine_scale`` times
    their cosine to the prototypes (P>M>F's ProtoNet head), with cross-entropy. The fine-tuned copy
    then embeds support and queries and gives the same cosine-prototype logits ``float[N*Q, N]``;
    ``steps: 0`` is a cosine ProtoNet on the pretrained features. Episodes are fine-tuned one after
    the other (``float[T, ...]`` batches are looped over). Inductive.

    **Batch norm stays in eval mode** throughout (running statistics of pretraining, never updated;
    dropout off), so a handful of support images never replaces the statistics and the episode's
    result does not depend on the batch composition.

    Defaults: 50 steps as P>M>F; SGD with ``lr`` 0.01 and momentum 0.9 (P>M>F uses Adam and picks the
    learning rate per domain from {0, 1e-4, 1e-3, 1e-2} on validation episodes: set ``lr`` so).

    Example config::

        model:
          class_path: ssl_lightning.methods.EpisodeFineTune
          init_args:
            backbone: {class_path: ssl_lightning.nets.resnet12.ResNet12, init_args: {num_classes: 0}}
            backbone_checkpoint: lightning_logs/version_0/checkpoints/last.ckpt   # a pretrained backbone
            steps: 50
            lr: 0.01

    Args:
        backbone: feature extractor (``num_classes: 0``).
        steps: fine-tuning steps per episode.
        lr: SGD learning rate of the fine-tuning.
        momentum: SGD momentum.
        flip: random left-right flips of the pseudo-queries.
        seed: seed of the flips (the same in every episode, so evaluation is deterministic).
        **pretrain_args: :class:`~ssl_lightning.methods.pretrain_adapt.PretrainThenAdapt`'s arguments
            (``num_base_classes``, ``cosine_scale``, ``backbone_checkpoint``, ``optimizer``, ...).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        steps: int = 50,
        lr: float = 0.01,
        momentum: float = 0.9,
        flip: bool = True,
        seed: int = 0,
        **pretrain_args: Any,
    ) -> None:
        super().__init__(backbone, **pretrain_args)
        if steps < 0 or lr <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"need steps >= 0, lr > 0 and 0 <= momentum < 1, got {steps}, {lr}, {momentum}")
        self.steps, self.lr, self.momentum, self.flip, self.seed = steps, lr, momentum, flip, seed

    def adapts_at_evaluation(self) -> bool:
        return True

    def batch_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        def episodes(*batch: Tensor) -> Tensor:
            return torch.stack([self.fine_tuned_logits(*episode, n_way) for episode in zip(*batch, strict=True)])

        with eval_mode(self.backbone):
            return with_autograd(episodes, support_x, support_y, query_x)

    def fine_tuned_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """One episode: float[N*K, C, H, W], long[N*K], float[N*Q, C, H, W] -> float[N*Q, N]."""
        weights = {
            f"net.{name}": p.detach().clone().requires_grad_(p.requires_grad)
            for name, p in self.backbone.named_parameters()
        }
        trained = [w for w in weights.values() if w.requires_grad]
        optimizer = torch.optim.SGD(trained, lr=self.lr, momentum=self.momentum)
        generator = torch.Generator().manual_seed(self.seed)
        embed = _Features(self.backbone)  # not a submodule of self: the backbone would be in checkpoints twice

        def logits_of(images: Tensor) -> Tensor:
            features = functional_call(embed, weights, (torch.cat([support_x, images]),))
            return cosine_logits(
                features[len(support_x) :], prototypes(features[: len(support_x)], support_y, n_way), self.cosine_scale
            )

        for _ in range(self.steps):
            pseudo = support_x
            if self.flip:
                flipped = (torch.rand(len(support_x), generator=generator) < 0.5).to(support_x.device)
                pseudo = torch.where(flipped[:, None, None, None], support_x.flip(-1), support_x)
            loss = F.cross_entropy(logits_of(pseudo), support_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return logits_of(query_x)
