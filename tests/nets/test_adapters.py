"""nets.adapters: grey <-> RGB and resizing, the one input adapter of pretrained backbones and selection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.nets.adapters import LUMA, adapt_images, match_channels, resize_square
from ssl_lightning.selection.embeddings import adapt_images as selection_adapt_images


def test_match_channels_repeats_grey_and_takes_luma_of_rgb():
    grey = torch.rand(2, 1, 4, 4)
    rgb = match_channels(grey, 3)
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    colour = torch.rand(2, 3, 4, 4)
    expected = LUMA[0] * colour[:, 0] + LUMA[1] * colour[:, 1] + LUMA[2] * colour[:, 2]
    torch.testing.assert_close(match_channels(colour, 1)[:, 0], expected)
    assert match_channels(colour, 3) is colour
    with pytest.raises(ValueError, match="cannot turn 4-channel images into 3"):
        match_channels(torch.rand(1, 4, 2, 2), 3)


def test_resize_square_antialiases_only_when_shrinking_by_default():
    small, large = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 64, 64)
    assert torch.equal(resize_square(small, 32), F.interpolate(small, size=(32, 32), mode="bilinear"))
    shrunk = F.interpolate(large, size=(16, 16), mode="bilinear", antialias=True)
    assert torch.equal(resize_square(large, 16), shrunk)
    assert torch.equal(
        resize_square(small, 32, antialias=True),
        F.interpolate(small, size=(32, 32), mode="bilinear", antialias=True),
    )
    assert resize_square(small, 8) is small


def test_adapt_images_leaves_text_inputs_alone_and_selection_uses_it():
    ids = torch.randint(0, 9, (2, 5))
    assert adapt_images(ids, 3, 32) is ids
    x = torch.rand(2, 1, 8, 8)
    expected = F.interpolate(x.expand(-1, 3, -1, -1), size=(16, 16), mode="bilinear", antialias=True)
    assert torch.equal(selection_adapt_images(x, 16, 3), expected)
    assert adapt_images(x, 3, 16, antialias=True).shape == (2, 3, 16, 16)
