"""SimpleShot (Wang, Chao, Weinberger & van der Maaten 2019, "SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning")."""

from __future__ import annotations

import itertools
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ssl_lightning.data.contract import BaseClassData, attached_data
from ssl_lightning.methods.episode_adaptation import nearest_centroid_logits, simpleshot_logits
from ssl_lightning.methods.pretrain_adapt import PretrainThenAdapt, eval_mode

Normalisation = Literal["CL2N", "L2N", "UN"]


def weights_version(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Changes whenever a parameter or buffer of ``module`` is written in place (optimizer steps, batch-norm
    statistics, ``load_state_dict``) or replaced: each tensor's storage and autograd version counter."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    return tuple((t.data_ptr(), t._version) for t in tensors)


class SimpleShot(PretrainThenAdapt):
    """Pretrain a linear classifier on the base classes; classify queries by the nearest class centroid of
    centred, L2-normalised features.

    Wang et al. 2019: pretraining is cross-entropy over the base classes (:class:`PretrainThenAdapt`);
    at evaluation the frozen features ``float[T, N*K, D]``, ``float[T, N*Q, D]`` are transformed by
    ``normalisation`` and each query gets the negative euclidean distances to the ``N`` support class
    means, ``float[T, N*Q, N]`` (:func:`~ssl_lightning.methods.episode_adaptation.simpleshot_logits`).
    Inductive. ``"CL2N"`` (the paper's best, the default) subtracts the base classes' mean feature
    ``base_mean`` before normalising.

    ``base_mean`` (a buffer ``float[D]``, saved in checkpoints) is the mean embedding of every base-class
    training image, computed from the data's ``labelled_features`` at the start of validation and test
    when the data provides it (:class:`~ssl_lightning.data.contract.BaseClassData`), and again whenever
    the weights have changed since (after each training epoch, after loading other weights). Tested on
    data without base classes (e.g. ``OmniglotOneShotRunsDataModule``), the checkpoint's mean is used;
    with neither, CL2N is an error.

    Example config (Wang et al. train e.g. a WRN-28-10 or ResNet-18 with SGD for 90 epochs)::

        model:
          class_path: ssl_lightning.methods.SimpleShot
          init_args:
            normalisation: CL2N
            backbone:
              class_path: ssl_lightning.nets.resnet12.ResNet12
              init_args: {num_classes: 0}
            optimizer:
              class_path: torch.optim.SGD
              init_args: {lr: 0.1, momentum: 0.9, weight_decay: 0.0001}

    Args:
        backbone: feature extractor (``num_classes: 0``).
        normalisation: ``"CL2N"`` (centre on the base mean, then L2-normalise), ``"L2N"`` (L2-normalise)
            or ``"UN"`` (unnormalised features).
        **pretrain_args: :class:`~ssl_lightning.methods.pretrain_adapt.PretrainThenAdapt`'s arguments
            (``num_base_classes``, ``head``, ``optimizer``, ...), documented there.
    """

    def __init__(self, backbone: nn.Module, *, normalisation: Normalisation = "CL2N", **pretrain_args: Any) -> None:
        super().__init__(backbone, **pretrain_args)
        if normalisation not in ("CL2N", "L2N", "UN"):
            raise ValueError(f"normalisation must be 'CL2N', 'L2N' or 'UN', got {normalisation!r}")
        self.normalisation: Normalisation = normalisation
        # NaN: not computed yet (a checkpoint written before any evaluation, or a fresh model).
        self.register_buffer("base_mean", torch.full((backbone.num_features,), float("nan")))
        self._base_mean_version: tuple | None = None  # weights the buffer was computed with (this process only)

    def refresh_base_mean(self) -> None:
        """Compute ``base_mean`` from the attached data's base classes, unless the weights are those it was
        computed with; without such data keep the buffer (from the checkpoint). Only for ``"CL2N"``."""
        data = attached_data(self)
        if self.normalisation != "CL2N" or not isinstance(data, BaseClassData):
            return
        if self._base_mean_version == weights_version(self.backbone):
            return
        with eval_mode(self.backbone), torch.inference_mode(False), torch.no_grad():
            features, _ = data.labelled_features(self, self.device)
            self.base_mean.copy_(features.mean(0))
        self._base_mean_version = weights_version(self.backbone)

    def on_validation_start(self) -> None:
        super().on_validation_start()
        self.refresh_base_mean()

    def on_test_start(self) -> None:
        super().on_test_start()
        self.refresh_base_mean()

    def episode_logits(self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int) -> Tensor:
        if self.normalisation == "UN":
            return nearest_centroid_logits(support, support_y, query, n_way)
        if self.normalisation == "L2N":
            return simpleshot_logits(support, support_y, query, n_way)
        if bool(self.base_mean.isnan().any()):
            raise ValueError(
                "SimpleShot's CL2N centres features on the base classes' mean, which this model has not computed: "
                "evaluate with data that provides the base classes (ssl_lightning.data.contract.BaseClassData, e.g. "
                "EpisodicDataModule), load a checkpoint of a SimpleShot evaluated so, or set normalisation L2N."
            )
        return simpleshot_logits(support, support_y, query, n_way, self.base_mean)
