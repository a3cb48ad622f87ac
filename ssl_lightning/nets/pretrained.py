"""Pretrained image backbones: timm and torchvision models by name behind the project's contract.

Where the weights come from (``pretrained``: ``None``, ``"hub[:tag]"``,
``"package:efficientnet_lite0"`` or a local file) and how they are read and loaded is
:mod:`ssl_lightning.nets.weights`; the names it defines are re-exported here, so
``ssl_lightning.nets.pretrained.read_state_dict`` / ``load_weights`` keep working.

Every backbone here follows the contract of :mod:`ssl_lightning.nets.head` (``num_features``,
``forward_features`` -> pooled features, ``forward_head``, ``reset_classifier``, head in
``self.head``) and handles its input itself (:mod:`ssl_lightning.nets.adapters`): grey images
are repeated to three channels, images are resized on the device to ``input_size`` and
standardized with the weights' mean/std, so the DataModule should deliver ``[0, 1]`` images
(``normalize: false``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ssl_lightning.nets.adapters import match_channels, resize_square
from ssl_lightning.nets.head import ClassifierHeadMixin
from ssl_lightning.nets.weights import (
    BACKBONE_PREFIXES,
    PACKAGED_WEIGHTS,
    StateDict,
    load_packaged_weights,
    load_weights,
    load_weights_file,
    packaged_weights_path,
    parse_pretrained,
    read_state_dict,
)

__all__ = [
    "BACKBONE_PREFIXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PACKAGED_WEIGHTS",
    "StateDict",
    "TimmBackbone",
    "TorchvisionBackbone",
    "load_weights",
    "packaged_weights_path",
    "read_state_dict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---- input handling and head shared by both wrappers ------------------------------------
class _PretrainedBackbone(ClassifierHeadMixin, nn.Module):
    """Input handling and the head; subclasses set ``self.model`` and ``self.num_features``."""

    model: nn.Module

    def _finish_init(
        self,
        in_chans: int,
        input_size: int | None,
        normalize: bool,
        mean: Sequence,
        std: Sequence,
        channels_last: bool,
        num_classes: int,
        pretrained_head: nn.Module | None,
        own_format: StateDict | None,
        source: str,
    ) -> None:
        """Input statistics, then the head (a pretrained one of ``num_classes`` outputs is kept),
        then the weights of a file written by this class (``own_format``, ``model.*``/``head.*`` keys)."""
        self.in_chans = in_chans
        self.input_size = input_size
        self.normalize = normalize
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Not persistent: the statistics come from the config, state dicts hold only weights.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.reset_classifier(num_classes)
        if isinstance(pretrained_head, nn.Linear) and pretrained_head.out_features == num_classes:
            self.head = pretrained_head  # e.g. the ImageNet classifier when num_classes=1000
        if own_format is not None:
            load_weights(self, own_format, source, optional=("head.",))

    def prepare_input(self, x: Tensor) -> Tensor:
        """float[B, in_chans, H, W] in ``[0, 1]`` -> float[B, 3, S, S] as the weights expect."""
        if x.shape[1] != self.in_chans:
            raise ValueError(f"{type(self).__name__} expects {self.in_chans} input channels, got {x.shape[1]}.")
        x = match_channels(x, _model_channels(self.in_chans))
        if self.input_size is not None:
            x = resize_square(x, self.input_size)  # antialiased only when shrinking
        if self.normalize:
            x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _model_channels(in_chans: int) -> int:
    # Grey images are repeated to RGB so that ImageNet weights (and checkpoints) always fit.
    return 3 if in_chans == 1 else in_chans


class TimmBackbone(_PretrainedBackbone):
    """Any ``timm.create_model`` architecture behind the project's backbone contract.

    Shapes: ``x: float[B, in_chans, H, W]`` in ``[0, 1]`` -> ``forward_features``:
    ``float[B, num_features]`` (globally pooled) -> ``float[B, num_classes]``.

    Example config (offline ImageNet EfficientNet-Lite0 on CIFAR-10 resized to 128 px)::

        backbone:
          class_path: ssl_lightning.nets.pretrained.TimmBackbone
          init_args:
            model_name: tf_efficientnet_lite0
            pretrained: package:efficientnet_lite0
            num_classes: 10
            input_size: 128

    Args:
        model_name: a ``timm.create_model`` name, e.g. ``tf_efficientnet_lite0``, ``resnet18``.
        pretrained: where the weights come from (module docstring): ``None``, ``"hub[:tag]"``,
            ``"package:efficientnet_lite0"`` or a local file.
        num_classes: classes of the new head; 0 for none (feature extractor). A pretrained
            classifier with exactly this many outputs is kept.
        in_chans: channels of the input images (1 is repeated to 3).
        input_size: resize inputs to this square size on the device; ``None`` keeps their size.
        normalize: standardize with the weights' mean/std (timm's ``pretrained_cfg``).
        drop_rate: dropout before the head (timm's ``drop_rate``).
        drop_path_rate: stochastic depth (timm's ``drop_path_rate``), if the model has it.
        channels_last: keep the weights and inputs in channels-last (NHWC) memory format. Same
            results (to float rounding), faster convolutions on CPU: EfficientNet-Lite0 training
            steps at 128 px were about 1.4x faster on a 2-core x86 CPU (oneDNN).
    """

    def __init__(
        self,
        model_name: str = "tf_efficientnet_lite0",
        pretrained: str | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int | None = 224,
        normalize: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        import timm

        kind, value = parse_pretrained(pretrained)
        name = f"{model_name}.{value}" if kind == "hub" and value else model_name
        extra: dict = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
        if kind == "file" and num_classes > 0:
            extra["num_classes"] = num_classes  # so that a file's classifier of this size becomes the head
        self.model = timm.create_model(
            name, pretrained=kind == "hub", in_chans=_model_channels(in_chans), drop_rate=drop_rate, **extra
        )
        classifier = self.model.pretrained_cfg.get("classifier", "classifier")
        own_format: StateDict | None = None
        if kind == "package":
            load_packaged_weights(self.model, value, model_name)
        elif kind == "file":
            own_format = load_weights_file(self.model, value, classifier)  # ours: loaded once the head exists
        pretrained_head = self.model.get_classifier() if kind != "none" else None
        self.model.reset_classifier(0)
        self.num_features = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        cfg = self.model.pretrained_cfg
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
        self._finish_init(
            in_chans, input_size, normalize, mean, std, channels_last, num_classes, pretrained_head, own_format, value
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, in_chans, H, W] in ``[0, 1]`` -> pooled float[B, num_features]."""
        return self.model.forward_head(self.model.forward_features(self.prepare_input(x)), pre_logits=True)


class TorchvisionBackbone(_PretrainedBackbone):
    """A ``torchvision.models`` classifier by name behind the project's backbone contract.

    The model's last ``nn.Linear`` becomes ``self.head``; everything before it is the feature
    extractor. Works for the single-output classifiers (ResNet, MobileNet, EfficientNet,
    ConvNeXt, RegNet, ViT, Swin, ...), not for models with auxiliary outputs in training
    (GoogLeNet, Inception v3).

    Shapes: ``x: float[B, in_chans, H, W]`` in ``[0, 1]`` -> ``forward_features``:
    ``float[B, num_features]`` -> ``float[B, num_classes]``.

    Example config::

        backbone:
          class_path: ssl_lightning.nets.pretrained.TorchvisionBackbone
          init_args: {model_name: resnet18, pretrained: "hub:IMAGENET1K_V1", num_classes: 10, input_size: 112}

    Args:
        model_name: a ``torchvision.models.get_model`` name, e.g. ``resnet18``.
        pretrained: ``None``, ``"hub[:WEIGHTS_ENUM_MEMBER]"`` or a local file (module docstring).
        num_classes: classes of the new head; 0 for none. A pretrained head of this size is kept.
        in_chans: channels of the input images (1 is repeated to 3; the models take 3).
        input_size: resize inputs to this square size on the device; ``None`` keeps their size.
        normalize: standardize with the weights' mean/std (ImageNet's without hub weights).
        channels_last: weights and inputs in channels-last (NHWC) memory format, as in
            :class:`TimmBackbone` (same results, faster CPU convolutions).
    """

    def __init__(
        self,
        model_name: str = "resnet18",
        pretrained: str | None = None,
        num_classes: int = 10,
        in_chans: Literal[1, 3] = 3,
        input_size: int | None = 224,
        normalize: bool = True,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        from torchvision import models

        if in_chans not in (1, 3):
            raise ValueError(f"torchvision models take RGB images; in_chans must be 1 or 3, got {in_chans}.")
        kind, value = parse_pretrained(pretrained)
        if kind == "package":
            raise ValueError(f"pretrained 'package:{value}' is for TimmBackbone (model_name: tf_efficientnet_lite0).")
        weights = getattr(models.get_model_weights(model_name), value or "DEFAULT") if kind == "hub" else None
        extra = {"num_classes": num_classes} if kind == "file" and num_classes > 0 else {}
        self.model = models.get_model(model_name, weights=weights, **extra)
        layers = [(name, module) for name, module in self.model.named_modules() if isinstance(module, nn.Linear)]
        if not layers:
            raise ValueError(f"torchvision model {model_name} has no nn.Linear classifier to replace.")
        head_name, head = layers[-1]
        own_format = load_weights_file(self.model, value, head_name) if kind == "file" else None
        self.model.set_submodule(head_name, nn.Identity())
        self.num_features = head.in_features
        transforms = weights.transforms() if weights is not None else None
        mean = getattr(transforms, "mean", IMAGENET_MEAN)
        std = getattr(transforms, "std", IMAGENET_STD)
        pretrained_head = head if kind != "none" else None
        self._finish_init(
            in_chans, input_size, normalize, mean, std, channels_last, num_classes, pretrained_head, own_format, value
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, in_chans, H, W] in ``[0, 1]`` -> float[B, num_features]."""
        return self.model(self.prepare_input(x))
