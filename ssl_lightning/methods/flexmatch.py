"""FlexMatch: FixMatch with class-wise thresholds from curriculum pseudo-labelling (Zhang et al. 2021)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.data.contract import UnlabelledPoolData, attached_data, require_data
from ssl_lightning.methods.distributed import gather_rows
from ssl_lightning.methods.fixmatch import FixMatch

NEEDS_INDICES = (
    "Set data.init_args.unlabelled_indices: true (images: SemiSupervisedDataModule) or "
    "data.init_args.unlabelled.indices: true (text: TextClassificationDataModule's unlabelled pool) so that "
    "unlabelled batches carry each sample's index in the pool."
)


def learning_effects(selected: Tensor, num_classes: int, previous: Tensor, warmup: bool = True) -> Tensor:
    """FlexMatch's estimated learning effect ``beta_c`` of each class (Zhang et al. 2021, Eq. 4-5, 11).

    ``sigma_c`` counts the unlabelled samples whose last confident prediction is ``c`` (Eq. 4).
    With ``warmup`` ``beta_c = sigma_c / max(max_c sigma_c, N_unused)`` (Eq. 11: while most samples
    are unused, every class's effect stays low), else ``sigma_c / max_c sigma_c`` (Eq. 5). As in
    USB's ``FlexMatchThresholdingHook``, ``previous`` is kept while one value (``-1`` or a class)
    holds every sample, e.g. before the first confident prediction.

    Shapes: ``selected: long[N]`` (class, or ``-1`` for unused), ``previous: float[C]`` -> ``float[C]``.
    """
    counts = torch.bincount(selected + 1, minlength=num_classes + 1).to(previous.dtype)  # counts[0]: unused
    unused, sigma = counts[0], counts[1:]
    if counts.max() >= len(selected):
        return previous
    largest = torch.maximum(sigma.max(), unused) if warmup else sigma.max()
    return sigma / largest


def convex_mapping(beta: Tensor) -> Tensor:
    """``M(x) = x / (2 - x)``, FlexMatch's non-linear mapping of learning effects (Eq. 7; USB's ``convex``)."""
    return beta / (2.0 - beta)


class FlexMatch(FixMatch):
    """FlexMatch: FixMatch whose threshold is lower for classes the model has not learnt yet (Zhang et al. 2021).

    Curriculum pseudo-labelling: the model keeps each unlabelled sample's last confident
    (``>= threshold``) predicted class, ``-1`` until it has one (``selected_label: long[N]``). From
    those, a class's learning effect ``beta_c`` (:func:`learning_effects`, with the threshold
    warm-up of Eq. 11) sets its threshold ``T_c = M(beta_c) * threshold`` with the convex mapping
    ``M(x) = x / (2 - x)`` (:func:`convex_mapping`); a sample counts where its confidence is
    ``>= T_{argmax}``. Each step weights the batch with the thresholds of the previous steps, then
    records the batch's confident predictions and recomputes ``beta``, as USB's
    ``FlexMatchThresholdingHook`` does. At the start every ``beta_c`` is 0, so every pseudo-label
    counts until the thresholds rise.

    The data must give each unlabelled sample's index in the pool
    (``SemiSupervisedDataModule(unlabelled_indices=True)``; the pool size comes from it at
    ``setup``; trained on plain dataloaders, call :meth:`track_pool` first). Under DDP the
    indices and predictions of all ranks update every rank's ``selected_label``, so the ranks
    keep equal state. Both buffers are in ``state_dict`` (checkpoints resume exactly). Logs
    ``train/threshold`` (the mean of ``T_c`` after the step's update) besides FixMatch's metrics.

    Example config::

        model:
          class_path: ssl_lightning.methods.FlexMatch
          init_args:
            backbone: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 10}}
            threshold: 0.95
        data:
          class_path: ssl_lightning.data.semisup.SemiSupervisedDataModule
          init_args: {source: ..., unlabelled_indices: true}

    Args:
        backbone: the network (timm contract).
        threshold_warmup: Eq. 11's warm-up (unused samples count in the normaliser of ``beta``).
        **fixmatch_args: :class:`~ssl_lightning.methods.fixmatch.FixMatch`'s arguments (``threshold``:
            the upper threshold ``tau``, reached by a class that is fully learnt; ``lambda_u``, ...).
    """

    extra_stat_names = ("threshold",)

    def __init__(self, backbone: nn.Module, *, threshold_warmup: bool = True, **fixmatch_args: Any) -> None:
        super().__init__(backbone, **fixmatch_args)
        self.threshold_warmup = threshold_warmup
        self.register_buffer("selected_label", torch.full((0,), -1, dtype=torch.long))  # sized at setup
        self.register_buffer("learning_effect", torch.zeros(self.num_classes))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and not (attached_data(self) is None and len(self.selected_label) > 0):
            # (without a DataModule, a pool sized by track_pool or a checkpoint is used as it is)
            data = require_data(self, UnlabelledPoolData, "FlexMatch's per-sample pseudo-labels", NEEDS_INDICES)
            if not data.unlabelled_indices:
                raise ValueError(f"FlexMatch needs the unlabelled samples' indices. {NEEDS_INDICES}")
            self.track_pool(data.num_unlabelled)

    def track_pool(self, num_unlabelled: int) -> None:
        """Size ``selected_label`` for a pool of ``num_unlabelled`` samples (kept if already that size)."""
        if len(self.selected_label) == num_unlabelled:
            return
        if len(self.selected_label) > 0:
            raise ValueError(
                f"FlexMatch tracks {len(self.selected_label)} unlabelled samples (from a checkpoint), "
                f"but the data's pool has {num_unlabelled}"
            )
        self.selected_label = torch.full((num_unlabelled,), -1, dtype=torch.long, device=self.learning_effect.device)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # a checkpoint's pool size is known before setup (load_from_checkpoint): take its shape
        saved = state_dict.get(f"{prefix}selected_label")
        if saved is not None and len(self.selected_label) == 0:
            self.selected_label = torch.full_like(saved, -1, device=self.learning_effect.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def class_thresholds(self) -> Tensor:
        """``T_c = M(beta_c) * threshold``: ``float[C]``."""
        return convex_mapping(self.learning_effect) * self.threshold

    @torch.no_grad()
    def unlabelled_weights(self, probs_weak: Tensor, indices: Tensor | None) -> Tensor:
        if indices is None:
            raise ValueError(f"FlexMatch needs each unlabelled sample's index in the batch. {NEEDS_INDICES}")
        if len(self.selected_label) == 0:
            raise ValueError("FlexMatch does not know the pool size: train it with a Trainer, or call track_pool(N)")
        confidence, classes = probs_weak.max(dim=1)
        weights = (confidence >= self.class_thresholds()[classes]).to(probs_weak.dtype)
        # record the confident predictions of the global batch (all ranks), then recompute beta
        chosen = torch.where(confidence >= self.threshold, classes, -1)
        rows = gather_rows(torch.stack([indices.to(chosen.device, torch.long), chosen], dim=1))
        confident = rows[rows[:, 1] >= 0]
        # amax: a sample on two ranks (DDP sampler padding) gets the same class on every rank
        self.selected_label.scatter_reduce_(0, confident[:, 0], confident[:, 1], reduce="amax", include_self=False)
        effects = learning_effects(self.selected_label, self.num_classes, self.learning_effect, self.threshold_warmup)
        self.learning_effect.copy_(effects)
        return weights

    def weighting_stats(self) -> dict[str, Tensor]:
        return {"threshold": self.class_thresholds().mean()}
