"""Conv-4, the standard few-shot backbone (Vinyals et al. 2016; Snell et al. 2017; Finn et al. 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from ssl_lightning.nets.head import ClassifierHeadMixin


def conv_block(in_chans: int, out_chans: int) -> nn.Sequential:
    """conv3x3 (padding 1) -> BatchNorm -> ReLU -> maxpool2: halves height and width."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(ClassifierHeadMixin, nn.Module):
    """Four blocks of ``[conv3x3-hidden, BatchNorm, ReLU, maxpool2]``, flattened, and a linear head.

    Each block halves the side (floor), so 28x28 Omniglot leaves 1x1x64 (64 features) and
    84x84 miniImageNet leaves 5x5x64 (1600 features), the sizes in the papers.
    Follows the backbone contract (:mod:`ssl_lightning.nets.head`): ``num_features``,
    ``forward_features``, ``forward_head``, ``reset_classifier``; the head lives in ``self.head``
    (identity when ``num_classes=0``, e.g. for ProtoNet, which compares features).

    Shapes: ``x: float[B, in_chans, input_size, input_size]`` -> ``forward_features``:
    ``float[B, num_features]`` -> ``forward``: ``float[B, num_classes]``.

    Example config::

        backbone:
          class_path: ssl_lightning.nets.conv4.Conv4
          init_args: {num_classes: 5, in_chans: 1, input_size: 28}

    Args:
        num_classes: output classes of the head (N for N-way MAML); 0 for no head.
        in_chans: input channels (1 grey, 3 colour).
        input_size: height and width of the (square) input; fixes ``num_features``.
        hidden: channels of every convolution (64 in the papers).
    """

    def __init__(self, num_classes: int = 5, in_chans: int = 1, input_size: int = 28, hidden: int = 64) -> None:
        super().__init__()
        side = input_size
        for _ in range(4):
            side //= 2
        if side < 1:
            raise ValueError(
                f"Conv4 halves the input 4 times, so it needs inputs of at least 16x16 pixels; got "
                f"{input_size}x{input_size}. Resize the images (e.g. --data.init_args.image_size 28)."
            )
        self.in_chans = in_chans
        self.input_size = input_size
        self.num_features = hidden * side * side
        self.features = nn.Sequential(
            conv_block(in_chans, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            nn.Flatten(),
        )
        self.reset_classifier(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> float[B, num_features]."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"Conv4 was built for {self.input_size}x{self.input_size} inputs but got "
                f"{x.shape[-2]}x{x.shape[-1]}; set the backbone's input_size to the data's image size."
            )
        return self.features(x)


def conv4(num_classes: int = 5, in_chans: int = 1, input_size: int = 28) -> Conv4:
    """The papers' Conv-4 with 64 channels per layer."""
    return Conv4(num_classes=num_classes, in_chans=in_chans, input_size=input_size, hidden=64)
