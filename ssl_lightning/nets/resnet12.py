"""ResNet-12, the backbone of MetaOptNet (Lee et al. 2019), RFS (Tian et al. 2020) and Meta-Baseline
(Chen et al. 2021): four residual stages of 64-160-320-640 channels, each halving the side."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018): zero ``block_size x block_size`` squares of a feature map while training.

    Our own rather than torchvision's ``DropBlock2d``, which only accepts odd block sizes (RFS uses 2 on
    32x32 CIFAR-FS/FC100 images, and a block clipped to a 4x4 map becomes even). The rate of block centres
    is Ghiasi et al.'s eq. 1 so that about ``drop_rate`` of the units are dropped; the kept ones are
    rescaled like dropout.

    Shapes: ``float[B, C, H, W]`` -> the same.

    Args:
        drop_rate: the fraction of units to drop.
        block_size: side of the dropped squares (clipped to the map).
    """

    def __init__(self, drop_rate: float, block_size: int) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.drop_rate = drop_rate
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_rate == 0:
            return x
        height, width = x.shape[-2:]
        size = min(self.block_size, height, width)
        free_h, free_w = height - size + 1, width - size + 1
        gamma = self.drop_rate / size**2 * height * width / (free_h * free_w)
        centres = torch.bernoulli(torch.full((*x.shape[:2], free_h, free_w), min(gamma, 1.0), device=x.device))
        # every centre (a block's top-left corner) zeroes the size x size square it starts
        blocks = F.max_pool2d(F.pad(centres, (size - 1,) * 4), kernel_size=size, stride=1)
        keep = (1 - blocks).to(x.dtype)
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))


def conv3x3(in_chans: int, out_chans: int) -> nn.Conv2d:
    return nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False)


class ResidualStage(nn.Module):
    """Three conv3x3-BN-LeakyReLU(0.1) layers with a 1x1-conv shortcut, then maxpool 2 and regularisation.

    As in RFS's ``BasicBlock``: the shortcut is added before the last activation; DropBlock (Ghiasi et al.
    2018) replaces dropout in the stages that use it.

    Shapes: ``float[B, in_chans, H, W]`` -> ``float[B, out_chans, H // 2, W // 2]``.
    """

    def __init__(self, in_chans: int, out_chans: int, drop_rate: float, drop_block: bool, block_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(in_chans, out_chans),
            nn.BatchNorm2d(out_chans),
            nn.LeakyReLU(0.1),
            conv3x3(out_chans, out_chans),
            nn.BatchNorm2d(out_chans),
            nn.LeakyReLU(0.1),
            conv3x3(out_chans, out_chans),
            nn.BatchNorm2d(out_chans),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, bias=False), nn.BatchNorm2d(out_chans))
        self.activation = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(2)
        regulariser: nn.Module = nn.Identity()
        if drop_rate > 0:
            regulariser = DropBlock(drop_rate, block_size) if drop_block else nn.Dropout(drop_rate)
        self.drop = regulariser

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.pool(self.activation(self.body(x) + self.shortcut(x))))


class ResNet12(nn.Module):
    """ResNet-12 with global average pooling and a linear head (timm contract).

    With the default widths (64, 160, 320, 640) it has 12.4M parameters without a head, and 84x84
    inputs leave 5x5x640 maps that are averaged into 640 features. Regularisation follows RFS: dropout
    ``drop_rate`` in the first two stages, DropBlock (:class:`DropBlock`, a fixed rate
    rather than RFS's linear ramp) of ``block_size`` in the last two (RFS: 5 at 84x84, 2 at 32x32).

    Shapes: ``x: float[B, in_chans, H, W]`` (H, W >= 16) -> ``forward_features``: ``float[B, num_features]``
    -> ``forward``: ``float[B, num_classes]``.

    Example config (pretraining on miniImageNet's 64 base classes)::

        backbone:
          class_path: ssl_lightning.nets.resnet12.ResNet12
          init_args: {num_classes: 64, in_chans: 3, drop_rate: 0.1}

    Args:
        num_classes: output classes of the head; 0 for no head (features only).
        in_chans: input channels.
        widths: channels of the four stages.
        drop_rate: dropout / DropBlock rate (0 turns both off).
        block_size: DropBlock's block side in the last two stages (5 in RFS for 84x84 inputs).
    """

    def __init__(
        self,
        num_classes: int = 64,
        in_chans: int = 3,
        widths: tuple[int, int, int, int] = (64, 160, 320, 640),
        drop_rate: float = 0.1,
        block_size: int = 5,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be four positive channel counts, got {widths}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        channels = (in_chans, *widths)
        self.features = nn.Sequential(
            *(ResidualStage(channels[i], channels[i + 1], drop_rate, i >= 2, block_size) for i in range(4)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.in_chans = in_chans
        self.num_features = widths[-1]
        self.num_classes = num_classes
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh ``Linear(num_features, num_classes)`` (identity if 0)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> pooled float[B, num_features]."""
        if x.shape[-1] < 16 or x.shape[-2] < 16:
            raise ValueError(
                f"ResNet12 halves its input 4 times and needs at least 16x16 pixels; got {x.shape[-2]}x{x.shape[-1]}."
            )
        return self.features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """float[B, num_features] -> float[B, num_classes]."""
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def resnet12(num_classes: int = 64, in_chans: int = 3, drop_rate: float = 0.1) -> ResNet12:
    """The standard ResNet-12 (64-160-320-640)."""
    return ResNet12(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
