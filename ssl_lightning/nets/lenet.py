"""LeNet-style CNN, the seed material's CIFAR-10 baseline (LeCun et al. 1998)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ssl_lightning.nets.head import ClassifierHeadMixin


class LeNet(ClassifierHeadMixin, nn.Module):
    """conv5x5-6, maxpool, conv5x5-16, maxpool, fc-120, fc-84, fc-classes.

    Follows the backbone contract (:mod:`ssl_lightning.nets.head`): ``num_features`` (84),
    ``forward_features`` (the 84-d penultimate activations), ``forward_head`` (the last linear
    layer) and ``reset_classifier``. ``num_classes=0`` makes the head the identity (a feature extractor).

    Shapes: ``x: float[B, in_chans, input_size, input_size]`` -> ``float[B, num_classes]``.

    Example config::

        backbone:
          class_path: ssl_lightning.nets.LeNet
          init_args: {in_chans: 3, input_size: 32, num_classes: 10}

    Args:
        num_classes: output classes; 0 for no head.
        in_chans: input channels (1 grey, 3 colour).
        input_size: height and width of the (square) input.
        padding: zero padding of both convolutions; 2 lets 8x8 digits through two 5x5 convs.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, input_size: int = 32, padding: int = 0) -> None:
        super().__init__()
        side = input_size
        for _ in range(2):  # two conv5x5 + maxpool2 stages
            side = (side + 2 * padding - 4) // 2
        if side < 1:
            raise ValueError(
                f"LeNet with padding={padding} cannot take {input_size}x{input_size} inputs (feature map shrinks "
                f"to nothing). Use padding=2 for inputs smaller than 16 pixels, or resize the images."
            )
        self.in_chans = in_chans
        self.num_features = 84
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, self.num_features),
            nn.ReLU(),
        )
        self.reset_classifier(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> float[B, 84]."""
        return self.features(x)


def lenet(num_classes: int = 10, in_chans: int = 3, input_size: int = 32) -> LeNet:
    """The seed's LeNet: unpadded for 32x32 inputs, padded by 2 for smaller ones (digits)."""
    return LeNet(num_classes, in_chans, input_size, padding=0 if input_size >= 32 else 2)


@torch.no_grad()
def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
