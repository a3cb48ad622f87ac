"""A convolutional decoder that maps a feature vector back to an image (for autoencoders)."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F


class ConvDecoder(nn.Module):
    """``Linear`` to a small feature map, then (upsample x2, conv3x3, BN, ReLU) blocks, then a 3x3 conv.

    The number of upsampling blocks is chosen so that the map starts at 2-4 pixels and reaches
    at least ``output_size``; a last bilinear resize gives the exact size. Channels halve at
    every block from ``channels * 2**(blocks-1)`` down to ``channels``.

    Shapes: ``z: float[B, num_features]`` -> ``float[B, out_chans, output_size, output_size]``
    (unbounded: reconstructions of standardized images, or logits for a BCE loss).

    Example config (not usually needed: ``Autoencoder`` builds it from the encoder)::

        decoder:
          class_path: ssl_lightning.nets.decoder.ConvDecoder
          init_args: {num_features: 84, out_chans: 1, output_size: 8}

    Args:
        num_features: size of the feature vector (the encoder's ``num_features``).
        out_chans: channels of the reconstructed image.
        output_size: height and width of the (square) reconstruction.
        channels: channels of the last block.
    """

    def __init__(self, num_features: int, out_chans: int = 3, output_size: int = 32, channels: int = 32) -> None:
        super().__init__()
        if output_size < 1 or num_features < 1:
            raise ValueError(f"need num_features >= 1 and output_size >= 1, got {num_features}, {output_size}")
        self.output_size = output_size
        blocks = max(1, math.ceil(math.log2(output_size / 4)))
        self.start = max(1, math.ceil(output_size / 2**blocks))
        widths = [channels * 2 ** (blocks - 1 - i) for i in range(blocks)]
        self.project = nn.Sequential(nn.Linear(num_features, widths[0] * self.start**2), nn.ReLU())
        layers: list[nn.Module] = []
        in_ch = widths[0]
        for out_ch in widths:
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(),
            ]
            in_ch = out_ch
        self.blocks = nn.Sequential(*layers)
        self.out = nn.Conv2d(in_ch, out_chans, 3, padding=1)
        self.first_width = widths[0]

    def forward(self, z: Tensor) -> Tensor:
        x = self.project(z).view(len(z), self.first_width, self.start, self.start)
        x = self.out(self.blocks(x))
        if x.shape[-1] != self.output_size:
            x = F.interpolate(x, size=(self.output_size, self.output_size), mode="bilinear", align_corners=False)
        return x
