"""Semi-supervised training: FixMatch (Sohn et al. 2020) and Pseudo-Label (Lee 2013) on any backbone."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from torchmetrics import MeanMetric, Metric, MetricCollection

from ssl_lightning.methods.classifier import Classifier, persist
from ssl_lightning.methods.ema import exponential_moving_average
from ssl_lightning.methods.inputs import cat_inputs, num_rows
from ssl_lightning.methods.metrics import logs_this_step

SemiSupervisedBatch = dict[str, tuple[Tensor, ...]]


class FixMatch(Classifier):
    """FixMatch: consistency between weak-view pseudo-labels and strong-view predictions (Sohn et al. 2020).

    Training batches come from :class:`~ssl_lightning.data.semisup.SemiSupervisedDataModule`::

        {"labelled":   (x: float[B, C, H, W], y: long[B]),
         "unlabelled": (x_weak: float[M, C, H, W], x_strong: float[M, C, H, W], y_true: long[M][, index: long[M]])}

    with ``M = mu * B``, or the same with text inputs (token dicts ``{"input_ids": long[., L], ...}``
    padded to one length) from :class:`~ssl_lightning.data.text.TextClassificationDataModule` with an
    ``unlabelled`` pool (:class:`~ssl_lightning.data.text.semisup.UnlabelledTextPool`):
    the method never asks which modality it trains on (:mod:`~ssl_lightning.methods.inputs`).
    (``index``, the samples' positions in the unlabelled pool, only with the data's
    ``unlabelled_indices: true``; FlexMatch needs it). One forward pass runs over the
    concatenation ``[x; x_weak; x_strong]`` (so batch-norm statistics cover all of it, as in the
    reference code). The loss is
    ``loss_x + lambda_u * loss_u``: ``loss_x`` the cross-entropy on the labelled batch,
    ``loss_u`` the cross-entropy of the strong view against the weak view's argmax where its
    confidence is ``>= threshold`` (Eq. 2, averaged over all ``M``). ``lambda_u = 0`` is plain
    supervised training with everything else identical (same batches, augmentation, forward
    pass and EMA). ``y_true`` is used only to log ``train/pseudo_acc`` (``-1``: unknown, left out).
    The per-sample weights of ``loss_u`` (here the 0/1 confidence mask) come from one hook,
    :meth:`unlabelled_weights`, which
    the adaptive-threshold methods override (:class:`~ssl_lightning.methods.flexmatch.FlexMatch`,
    :class:`~ssl_lightning.methods.freematch.FreeMatch`, :class:`~ssl_lightning.methods.softmatch.SoftMatch`);
    :meth:`extra_unlabelled_losses` adds their extra loss terms (FreeMatch's fairness loss) and
    :meth:`weighting_stats` their thresholds to the logged metrics (names in ``extra_stat_names``).

    Evaluation (val, test, predict, ``forward`` in eval mode) uses an exponential moving
    average of the weights (``ema_decay``; ``None`` evaluates the online weights). The EMA
    lives in the module (``ema_backbone``), so checkpoints hold it, a resumed run continues it,
    and testing the best checkpoint evaluates it. (Lightning's ``EMAWeightAveraging`` callback
    does not fit here: when ``trainer.test(ckpt_path=...)`` follows ``fit`` in the same process,
    its ``on_load_checkpoint`` reloads the *online* weights into the module.)

    Logs per epoch ``train/loss``, ``train/loss_x``, ``train/loss_u``, ``train/mask_rate``
    (fraction of unlabelled samples above the threshold; with soft weights, their mean),
    ``train/pseudo_acc`` (accuracy of the pseudo-labels with a weight above 0), ``train/acc``
    (labelled batch), ``val/acc``, ``test/acc``.

    Example config::

        model:
          class_path: ssl_lightning.methods.fixmatch.FixMatch
          init_args:
            backbone: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 10}}
            threshold: 0.95
            lambda_u: 1.0
            ema_decay: 0.999
            optimizer:
              class_path: torch.optim.SGD
              init_args: {lr: 0.03, momentum: 0.9, nesterov: true, weight_decay: 0.0005}
        data:
          class_path: ssl_lightning.data.semisup.SemiSupervisedDataModule
          init_args: {source: {class_path: ssl_lightning.data.CIFAR10DataModule, init_args: {labels_per_class: 25}}}

    Args:
        backbone: the network (timm contract); its ``num_classes`` must match the data's. The
            optimizer is built from its parameters (the EMA copy is not trained).
        threshold: confidence ``tau`` above which a pseudo-label is used.
        lambda_u: weight of the unlabelled loss (0: supervised training).
        warmup_steps: ramp ``lambda_u`` linearly from 0 over this many steps (0: no ramp; Lee 2013 ramps).
        ema_decay: decay of the evaluated weight average, in ``[0, 1)``; ``None`` turns EMA off.
        **classifier_args: :class:`~ssl_lightning.methods.classifier.Classifier`'s arguments (``optimizer``,
            ``lr_scheduler``, ``label_smoothing`` of the labelled loss, ...), documented there; LightningCLI
            types and checks them as this class's own (see "Subclasses" in Classifier's docstring).
    """

    #: Names of a subclass's extra per-epoch means, logged as ``train/<name>``: the keys of
    #: :meth:`weighting_stats` and :meth:`extra_unlabelled_losses`.
    extra_stat_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        backbone: nn.Module,
        *,
        threshold: float = 0.95,
        lambda_u: float = 1.0,
        warmup_steps: int = 0,
        ema_decay: float | None = 0.999,
        **classifier_args: Any,
    ) -> None:
        super().__init__(backbone, **classifier_args)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if lambda_u < 0 or warmup_steps < 0:
            raise ValueError(f"lambda_u and warmup_steps must be >= 0, got {lambda_u}, {warmup_steps}")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or null (no EMA), got {ema_decay}")
        self.threshold = threshold
        self.lambda_u = lambda_u
        self.warmup_steps = warmup_steps
        self.ema_decay = ema_decay
        self.ema_backbone: AveragedModel | None = None
        if ema_decay is not None:
            self.ema_backbone = exponential_moving_average(self.backbone, ema_decay)
        names = ("loss_x", "loss_u", "mask_rate", *self.extra_stat_names)
        self.unlabelled_stats = nn.ModuleDict({name: MeanMetric() for name in names})
        self.pseudo_acc = MeanMetric()
        persist(*self.unlabelled_stats.values(), self.pseudo_acc)

    # ---- what PseudoLabel changes ----------------------------------------------------------
    def unlabelled_views(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """The unlabelled inputs of the forward pass: ``(x_weak, x_strong)``."""
        x_weak, x_strong = batch[:2]
        return x_weak, x_strong

    def unlabelled_loss(self, logits: list[Tensor], indices: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss_u, weights: float[M], pseudo_labels: long[M])`` from the logits of :meth:`unlabelled_views`."""
        weak, strong = logits
        return self.weighted_pseudo_label_loss(weak, strong, indices)

    # ---- the hook of the adaptive-threshold methods (FlexMatch, FreeMatch, SoftMatch) ---------
    def unlabelled_weights(self, probs_weak: Tensor, indices: Tensor | None) -> Tensor:
        """Per-sample weights ``float[M]`` of the unlabelled loss from the weak view's probabilities.

        FixMatch: ``1`` where the confidence ``max_c probs_weak[m, c] >= threshold``, else ``0`` (Eq. 2).
        Subclasses override this to weight samples their own way; it runs once per training step
        (on detached probabilities), so a method with state (EMAs of confidences, per-sample
        predictions) updates it here, before or after computing the weights as its paper says.

        Args:
            probs_weak: ``float[M, C]`` softmax of the weak view's logits (no gradient).
            indices: ``long[M]`` positions of the samples in the unlabelled pool when the data
                gives them (``SemiSupervisedDataModule(unlabelled_indices=True)``), else ``None``.
        """
        return (probs_weak.max(dim=1).values >= self.threshold).to(probs_weak.dtype)

    def extra_unlabelled_losses(self, logits: list[Tensor], weights: Tensor) -> dict[str, Tensor]:
        """Named loss terms added to ``loss_x + lambda_u * loss_u`` as they are (FreeMatch's fairness loss).

        Args:
            logits: the logits of :meth:`unlabelled_views` (``[weak, strong]``), with gradient.
            weights: ``float[M]``, this step's :meth:`unlabelled_weights`.
        """
        return {}

    def weighting_stats(self) -> dict[str, Tensor]:
        """Scalars that describe the current weighting (e.g. thresholds), logged as per-epoch means."""
        return {}

    def weighted_pseudo_label_loss(
        self, target_logits: Tensor, logits: Tensor, indices: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``mean_m w_m * CE(logits[m], argmax target_logits[m])`` with ``w = unlabelled_weights(...)``.

        Averaged over all ``M`` samples (weight-0 ones count as 0), as Eq. 2 of Sohn et al. 2020;
        with FixMatch's 0/1 weights this is :func:`~ssl_lightning.methods.losses.pseudo_label_loss`.

        Returns:
            ``(loss: scalar, weights: float[M], pseudo_labels: long[M])``.
        """
        probabilities = target_logits.detach().softmax(dim=1)
        pseudo_labels = probabilities.max(dim=1).indices
        weights = self.unlabelled_weights(probabilities, indices)
        per_sample = F.cross_entropy(logits, pseudo_labels, reduction="none")
        return (per_sample * weights).mean(), weights, pseudo_labels

    # ---- training ---------------------------------------------------------------------------
    def current_lambda_u(self) -> float:
        if self.warmup_steps == 0:
            return self.lambda_u
        return self.lambda_u * min(1.0, self.global_step / self.warmup_steps)

    def training_step(self, batch: SemiSupervisedBatch, batch_idx: int) -> Tensor:
        if not isinstance(batch, dict) or set(batch) != {"labelled", "unlabelled"}:
            raise ValueError(
                f"{type(self).__name__} needs batches {{'labelled': ..., 'unlabelled': ...}}; got "
                f"{type(batch).__name__}. Use data.class_path: ssl_lightning.data.semisup.SemiSupervisedDataModule "
                f"(images), or give the text DataModule an unlabelled pool (data.init_args.unlabelled: {{mu: 7}})."
            )
        x, y = batch["labelled"]
        unlabelled = batch["unlabelled"]
        views = self.unlabelled_views(unlabelled)
        y_true, indices = unlabelled[2], (unlabelled[3] if len(unlabelled) > 3 else None)
        # One pass over [labelled; views] so batch norm sees one batch (Sohn et al. 2020, reference code).
        logits = self.backbone(cat_inputs([x, *views]))  # images: torch.cat; text: token dicts key by key
        logits_x, *logits_u = logits.split([num_rows(x), *(num_rows(v) for v in views)])
        loss_x = self.loss(logits_x, y)
        loss_u, weights, pseudo_labels = self.unlabelled_loss(logits_u, indices)
        mask = weights > 0
        extra = self.extra_unlabelled_losses(logits_u, weights)
        loss = loss_x + self.current_lambda_u() * loss_u
        for term in extra.values():
            loss = loss + term

        hard = y.argmax(dim=1) if y.is_floating_point() else y
        self.metrics["train_"].update(logits_x, hard)
        self.mean_loss["train_"].update(loss.detach(), weight=len(y))
        stats = {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "mask_rate": weights.float().mean()}
        stats |= {name: term.detach() for name, term in extra.items()} | self.weighting_stats()
        for name, value in stats.items():
            self.unlabelled_stats[name].update(value)
            self.log(f"train/{name}", self.unlabelled_stats[name], on_step=False, on_epoch=True)
        known = mask & (y_true >= 0)  # y_true is -1 where the pool has no label (a separate unlabelled file)
        if known.any():
            correct = (pseudo_labels[known] == y_true[known]).float()
            self.pseudo_acc.update(correct.mean(), weight=len(correct))
            self.log("train/pseudo_acc", self.pseudo_acc, on_step=False, on_epoch=True)
        if logs_this_step(self):
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def train_metrics(self) -> list[Metric | MetricCollection]:
        return [*super().train_metrics(), *self.unlabelled_stats.values(), self.pseudo_acc]

    # ---- EMA of the weights -------------------------------------------------------------------
    def update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * online`` for parameters and floating-point buffers.

        Through ``torch.optim.swa_utils.AveragedModel(use_buffers=True)``
        (:func:`~ssl_lightning.methods.ema.exponential_moving_average`): batch-norm running
        statistics are averaged like the weights (as Lightning's ``WeightAveraging`` does), so the
        evaluated weights meet statistics of the same horizon; integer buffers
        (``num_batches_tracked``) are copied. Copying the online statistics instead put a Conv4's
        EMA 1-11 points of CIFAR-10 test accuracy below its online weights after 3,000 Adam steps
        (averaged: 0-3 points; README, "Semi- and self-supervised").
        """
        if self.ema_backbone is not None:
            self.ema_backbone.update_parameters(self.backbone)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step, then the EMA update of the new weights.

        Not in ``on_train_batch_end``: Lightning runs the checkpoint callbacks' ``on_train_batch_end``
        before the module's, so a checkpoint of step ``s`` would miss step ``s``'s EMA update and a
        run resumed from it would drift from an uninterrupted one.
        """
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    def evaluation_backbone(self) -> nn.Module:
        """The network that val/test/predict use: the EMA copy when there is one."""
        return self.ema_backbone if self.ema_backbone is not None else self.backbone

    def forward(self, x: Tensor) -> Tensor:
        """float[B, ...] -> logits float[B, num_classes]; the EMA weights in eval mode."""
        return self.backbone(x) if self.training else self.evaluation_backbone()(x)

    def trained_parameters(self) -> list[nn.Parameter]:
        """Classifier's parameters without the EMA copy's, which are averaged, not trained."""
        return [p for name, p in self.named_parameters() if not name.startswith("ema_backbone.")]


class PseudoLabel(FixMatch):
    """Pseudo-Label (Lee 2013): train on the network's own confident hard labels for unlabelled images.

    Same data, batches and logging as :class:`FixMatch`, but no strong view: the weak view
    makes the pseudo-label (argmax, kept above ``threshold``) and is also the view trained
    towards it. The forward pass covers ``[x; x_weak]`` (the data module's strong view is unused).
    Lee's slowly rising weight of the unlabelled loss is ``warmup_steps``.

    Example config::

        model:
          class_path: ssl_lightning.methods.fixmatch.PseudoLabel
          init_args:
            threshold: 0.95
            warmup_steps: 500
            backbone:
              class_path: ssl_lightning.nets.LeNet
              init_args: {num_classes: 10, in_chans: 1, input_size: 8, padding: 2}

    Args: as :class:`FixMatch`.
    """

    def unlabelled_views(self, batch: tuple[Tensor, ...]) -> tuple[Tensor]:
        return (batch[0],)

    def unlabelled_loss(self, logits: list[Tensor], indices: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        (weak,) = logits
        return self.weighted_pseudo_label_loss(weak, weak, indices)
