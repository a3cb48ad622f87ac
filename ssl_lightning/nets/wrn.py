"""Wide ResNet (Zagoruyko & Komodakis 2016), in the WRN-28-10 form of the few-shot papers that use it:
SimpleShot (Wang et al. 2019), S2M2 (Mangla et al. 2020), LEO (Rusu et al. 2019), TIM (Boudiaf et al. 2020)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ssl_lightning.nets.head import ClassifierHeadMixin


class WideBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, plus the shortcut.

    As in the authors' code (``szagoruyko/wide-residual-networks``): when the channels or the stride change,
    the shortcut is a 1x1 convolution of the *activated* input, so the first BN-ReLU is shared by both paths.

    Shapes: ``float[B, in_chans, H, W]`` -> ``float[B, out_chans, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chans)
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut: nn.Module | None = None
        if in_chans != out_chans or stride != 1:
            self.shortcut = nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(activated)
        out = F.relu(self.bn2(self.conv1(activated)))
        out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + identity


class WideResNet(ClassifierHeadMixin, nn.Module):
    """WRN-depth-k: a 3x3 stem of 16 channels, three groups of ``(depth - 4) / 6`` wide basic blocks of
    ``16k``, ``32k``, ``64k`` channels (strides 1, 2, 2), a final BN-ReLU, global average pooling and a
    linear head (timm contract, :mod:`ssl_lightning.nets.head`).

    WRN-28-10 (:func:`wrn28_10`, channels 16-160-320-640) has 36,472,784 parameters without its head
    (36,479,194 with CIFAR-10's 10-class head: the 36.5M of Zagoruyko & Komodakis 2016, also the
    backbone of SimpleShot and S2M2) and 640 features at any input size:
    84x84 leaves 21x21x640 maps, 32x32 leaves 8x8x640, averaged into ``float[B, 640]``. Dropout between
    the two convolutions of each block (Zagoruyko & Komodakis: 0.3) is off by default, as in SimpleShot.
    SimpleShot's released ``Wide_ResNet`` differs in details that keep every shape: convolutions with biases
    (+10,096 parameters, 36,482,880), the stride on a block's second convolution, and shortcuts from the
    block's raw input; S2M2's (from the manifold-mixup code) is the layout here.

    Shapes: ``x: float[B, in_chans, H, W]`` -> ``forward_features``: ``float[B, num_features]``
    -> ``forward``: ``float[B, num_classes]``.

    Example config (pretraining on miniImageNet's 64 base classes)::

        backbone:
          class_path: ssl_lightning.nets.wrn.WideResNet
          init_args: {num_classes: 64, in_chans: 3, depth: 28, widen_factor: 10}

    Args:
        num_classes: output classes of the head; 0 for no head (features only).
        in_chans: input channels.
        depth: total depth; ``depth - 4`` must be divisible by 6 (28 gives 4 blocks per group).
        widen_factor: the width multiplier ``k`` (10 in WRN-28-10).
        drop_rate: dropout inside every block (0 turns it off).
    """

    def __init__(
        self, num_classes: int = 64, in_chans: int = 3, depth: int = 28, widen_factor: int = 10, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        layers: list[nn.Module] = [nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)]
        for group, stride in enumerate((1, 2, 2)):
            for i in range(blocks):
                in_width = widths[group] if i == 0 else widths[group + 1]
                layers.append(WideBasicBlock(in_width, widths[group + 1], stride if i == 0 else 1, drop_rate))
        self.features = nn.Sequential(
            *layers,
            nn.BatchNorm2d(widths[-1]),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.in_chans = in_chans
        self.depth = depth
        self.widen_factor = widen_factor
        self.num_features = widths[-1]
        self.reset_classifier(num_classes)
        # the authors' initialisation: He-normal convolutions (fan out), BN at identity
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> pooled float[B, num_features]."""
        return self.features(x)


def wrn28_10(num_classes: int = 64, in_chans: int = 3, drop_rate: float = 0.0) -> WideResNet:
    """WRN-28-10 (16-160-320-640 channels, 36.47M parameters without the head)."""
    return WideResNet(num_classes=num_classes, in_chans=in_chans, depth=28, widen_factor=10, drop_rate=drop_rate)
