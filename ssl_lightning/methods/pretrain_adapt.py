"""Pretrain a classifier on batches of the base classes, then adapt per episode: the base of Baseline, Baseline++,
RFS, SimpleShot, TIM and per-episode fine-tuning (Chen et al. 2019, "A Closer Look at Few-shot Classification")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_lightning.data.contract import BaseClassData, attached_data, require_data
from ssl_lightning.methods.episode_adaptation import cosine_head_logits
from ssl_lightning.methods.episodic import Episodes, EpisodicModule, check_episodes, with_autograd
from ssl_lightning.nets.head import pooled_features

log = logging.getLogger(__name__)

HeadType = Literal["linear", "cosine"]
BATCHES_REMEDY = "Set --data.init_args.train_mode batches (EpisodicDataModule)."


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode (batch norm on its running statistics, which stay unchanged; no
    dropout), then give every submodule back the mode it had."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


class CosineClassifier(nn.Module):
    """Baseline++'s classifier (Chen et al. 2019, ``distLinear``): ``scale * cos(f, v_c) * g_c``.

    Class weights are weight-normalised (``w_c = g_c v_c / |v_c|``, as ``torch.nn.utils.weight_norm``
    in Chen et al.'s code); ``direction`` starts like ``nn.Linear``'s weight and ``gain`` at its row
    norms. ``scale`` is fixed, not learnt. Shapes: ``float[B, D] -> float[B, num_classes]``.

    Args:
        num_features: D.
        num_classes: outputs.
        scale: the fixed temperature applied to the cosines.
    """

    def __init__(self, num_features: int, num_classes: int, scale: float) -> None:
        super().__init__()
        direction = nn.Linear(num_features, num_classes, bias=False).weight.detach()
        self.direction = nn.Parameter(direction.clone())
        self.gain = nn.Parameter(direction.norm(dim=1))
        self.scale = scale

    def forward(self, features: Tensor) -> Tensor:
        return cosine_head_logits(features[None], self.direction[None], self.gain[None], self.scale)[0]


class PretrainThenAdapt(EpisodicModule):
    """Train a classifier on plain batches of the base classes; evaluate on episodes by adapting on frozen features.

    **Pretraining**: batches ``(x: float[B, C, H, W], y: long[B])`` over the base (training) classes,
    cross-entropy of ``head(pooled_features(backbone, x))``; logs ``train/loss``, ``train/acc`` per
    epoch. The backbone is a feature extractor (give it ``num_classes: 0``); this module owns the head
    over the ``num_base_classes`` classes (``"linear"``, or ``"cosine"``: :class:`CosineClassifier`). It
    is built in ``__init__`` when ``num_base_classes`` is given, else in ``setup`` from the attached data
    (:class:`~ssl_lightning.data.contract.BaseClassData`, e.g. ``EpisodicDataModule(train_mode="batches")``)
    and written into the hyperparameters, so checkpoints reload with it.

    **Evaluation** (val/test episodes ``support_x: float[T, N*K, C, H, W]``, ``query_x: float[T, N*Q, C, H,
    W]``): support and queries are embedded once (backbone in eval mode, no gradients) into ``support:
    float[T, N*K, D]`` and ``query: float[T, N*Q, D]``, and :meth:`episode_logits` (what a subclass
    implements, with ``methods/episode_adaptation.py``) adapts on each episode's support set and returns
    ``float[T, N*Q, N]``. The base-class head is not used. Logged as for every episodic method:
    ``{stage}/loss``, ``{stage}/acc`` and ``{stage}/acc_ci95`` over the episodes. A transductive subclass
    (:attr:`transductive`, TIM) also reads the other queries of an episode; it logs ``{stage}/transductive``
    1 and says so at the start of evaluation; inductive methods classify each query on its own.

    Example config (a subclass; any of them takes these arguments)::

        model:
          class_path: ssl_lightning.methods.RFS
          init_args:
            backbone: {class_path: ssl_lightning.nets.resnet12.ResNet12, init_args: {num_classes: 0}}
            head: linear
            optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.05, momentum: 0.9, weight_decay: 0.0005}}

    Args:
        backbone: feature extractor (timm contract, ``num_classes: 0``), used through ``pooled_features``.
        num_base_classes: classes of the pretraining head; ``None``: read from the data at ``setup``.
        head: ``"linear"`` (``nn.Linear``) or ``"cosine"`` (Chen et al.'s weight-normalised cosine classifier).
        cosine_scale: fixed (not learnt) scale of the cosine head's logits, and of the cosine logits of the
            subclasses that adapt with one (Baseline++, EpisodeFineTune).
        label_smoothing: cross-entropy label smoothing of pretraining (TIM pretrains with 0.1).
        **episodic_args: ``optimizer``, ``lr_scheduler`` and ``backbone_checkpoint`` of
            :class:`~ssl_lightning.methods.episodic.EpisodicModule`, documented there; LightningCLI reads the
            ``super().__init__`` call and types and checks them as this class's own.
    """

    #: Whether :meth:`episode_logits` reads the other queries of an episode (reported apart from the inductive ones).
    transductive: ClassVar[bool] = False

    def __init__(
        self,
        backbone: nn.Module,
        num_base_classes: int | None = None,
        head: HeadType = "linear",
        cosine_scale: float = 10.0,
        label_smoothing: float = 0.0,
        **episodic_args: Any,
    ) -> None:
        super().__init__(backbone, **episodic_args)
        if head not in ("linear", "cosine"):
            raise ValueError(f"head must be 'linear' or 'cosine', got {head!r}")
        if cosine_scale <= 0 or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"need cosine_scale > 0, 0 <= label_smoothing < 1; got {cosine_scale}, {label_smoothing}")
        if not isinstance(getattr(backbone, "num_features", None), int):
            raise ValueError(f"{type(self).__name__} needs a backbone with num_features (the timm contract).")
        self.head_type: HeadType = head
        self.cosine_scale = cosine_scale
        self.label_smoothing = label_smoothing
        self.head: nn.Module | None = None
        self._announced: set[str] = set()
        if num_base_classes is not None:
            self.build_head(num_base_classes)

    def build_head(self, num_classes: int) -> None:
        """A fresh head over ``num_classes`` base classes, recorded in the hyperparameters."""
        if num_classes < 1:
            raise ValueError(f"num_base_classes must be >= 1, got {num_classes}")
        dim = self.backbone.num_features
        linear = self.head_type == "linear"
        head = nn.Linear(dim, num_classes) if linear else CosineClassifier(dim, num_classes, self.cosine_scale)
        self.head = head.to(self.device)
        self.hparams["num_base_classes"] = num_classes

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        data = attached_data(self)
        if isinstance(data, BaseClassData) and data.train_mode != "batches":
            raise ValueError(
                f"{type(self).__name__} pretrains on plain batches of the base classes, but the data's "
                f"train_mode is {data.train_mode!r}. {BATCHES_REMEDY}"
            )
        if self.head is None:
            remedy = f"{BATCHES_REMEDY} Or set --model.init_args.num_base_classes."
            self.build_head(require_data(self, BaseClassData, f"{type(self).__name__}'s head", remedy).num_base_classes)
        elif isinstance(data, BaseClassData) and data.num_base_classes != self.hparams["num_base_classes"]:
            raise ValueError(
                f"The data has {data.num_base_classes} base classes but num_base_classes is "
                f"{self.hparams['num_base_classes']}. Set --model.init_args.num_base_classes {data.num_base_classes}."
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A test run from a config without num_base_classes (--ckpt_path): build the head the weights have.
        num_classes = checkpoint.get("hyper_parameters", {}).get("num_base_classes")
        if self.head is None and num_classes is not None:
            self.build_head(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> embeddings float[B, D] (a raw timm model's feature maps are pooled)."""
        return pooled_features(self.backbone, x)

    # ---- what subclasses implement --------------------------------------------------
    def episode_logits(self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int) -> Tensor:
        """Adapt on each episode's support features and classify its queries.

        Args:
            support: float[T, N*K, D] frozen features.
            support_y: long[T, N*K] in ``0..n_way-1``.
            query: float[T, N*Q, D].
            n_way: N.

        Returns:
            float[T, N*Q, N] query logits (no gradient needed).
        """
        raise NotImplementedError(f"{type(self).__name__} must define episode_logits")

    # ---- pretraining ------------------------------------------------------------------
    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        if stage != "train":
            if self.transductive:
                self.log(f"{stage}/transductive", 1.0, on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
            return self._episodes_step(check_episodes(batch), stage)
        if len(batch) == 4 and getattr(batch[0], "ndim", 0) == 5:
            raise ValueError(
                f"{type(self).__name__} trains on plain (x, y) batches of the base classes, but got a training batch "
                f"of episodes (support_x {list(batch[0].shape)}, ...). {BATCHES_REMEDY}"
            )
        x, y = batch
        if self.head is None:
            raise ValueError(f"{type(self).__name__} has no head: pass num_base_classes, or fit it with a Trainer.")
        logits = self.head(self(x))
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return self.record_step("train", loss, (logits.detach().argmax(1) == y).float())

    # ---- evaluation -------------------------------------------------------------------
    def batch_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """Images of ``T`` episodes -> query logits ``float[T, N*Q, N]``: embed once, then :meth:`episode_logits`."""
        tasks, shots = support_y.shape
        with torch.no_grad(), eval_mode(self.backbone):
            # the per-episode fits (L-BFGS, Adam, SGD on a few points) get float32 features whatever the precision
            features = self(torch.cat([support_x.flatten(0, 1), query_x.flatten(0, 1)])).float()
        support = features[: tasks * shots].unflatten(0, (tasks, shots))
        query = features[tasks * shots :].unflatten(0, (tasks, -1))
        if self.adapts_at_evaluation():  # a head fitted by gradients, L-BFGS, TIM's descent
            return with_autograd(lambda *f: self.episode_logits(*f, n_way), support, support_y, query)
        return self.episode_logits(support, support_y, query, n_way)

    def task_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """One episode (see :class:`EpisodicModule`): float[N*K, C, H, W], ... -> float[N*Q, N]."""
        return self.batch_logits(support_x[None], support_y[None], query_x[None], n_way)[0]

    def meta_loss(self, batch: Episodes, task_by_task: bool = False) -> tuple[Tensor, Tensor]:
        """Query cross-entropy over the ``T`` episodes of an evaluation batch and each episode's accuracy."""
        support_x, support_y, query_x, query_y = batch
        logits = self.batch_logits(support_x, support_y, query_x, int(support_y.max()) + 1)
        loss = F.cross_entropy(logits.flatten(0, 1), query_y.flatten())
        return loss, (logits.argmax(-1) == query_y).float().mean(-1)

    def _announce(self, stage: str) -> None:
        if self.transductive and stage not in self._announced:
            self._announced.add(stage)
            log.info(
                "%s is transductive: it adapts on the query set of each %s episode as well as its support set; "
                "report it apart from inductive methods.",
                type(self).__name__,
                stage,
            )

    def on_validation_start(self) -> None:
        self._announce("val")

    def on_test_start(self) -> None:
        self._announce("test")
