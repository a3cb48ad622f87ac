"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, no download."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ssl_lightning.data.base import ImageDataModule, ImageReader, Split
from ssl_lightning.data.splits import stratified_split


class DigitsReader(ImageReader):
    """Reads scikit-learn's digits and splits off a fixed stratified test set.

    Args:
        test_size: test images held out of the 1,797.
        split_seed: seed of the train/test split.
    """

    def __init__(self, test_size: int = 360, split_seed: int = 0) -> None:
        self.test_size = test_size
        self.split_seed = split_seed

    def read(self, split: Split) -> tuple[Tensor, Tensor, list[str]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values are 0..16; scale to the uint8 range every image DataModule uses.
        images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)
        labels = torch.from_numpy(digits.target).long()
        train_idx, test_idx = stratified_split(labels, self.test_size, self.split_seed)
        idx = train_idx if split == "train" else test_idx
        return images[idx].contiguous(), labels[idx], [str(d) for d in range(10)]


class DigitsDataModule(ImageDataModule):
    """The UCI optical digits that ship with scikit-learn, as ``uint8[N, 1, 8, 8]`` images.

    The 1,797 images have no official test split, so ``test_size`` of them are held out by a
    seeded stratified split (fixed by ``split_seed``, independent of ``seed``, so every run
    sees the same test set); validation is then held out of the rest. An :class:`ImageDataModule`
    reading with :class:`DigitsReader`; its default ``val_size`` is 300.

    Example config::

        data:
          class_path: ssl_lightning.data.DigitsDataModule
          init_args: {batch_size: 64, val_size: 300, test_size: 360, labels_per_class: 10}

    The other arguments are :class:`ImageDataModule`'s, declared there once. ``**kwargs`` is not a
    hidden pass-through: it goes to ``ImageDataModule.__init__`` only, whose typed parameters
    LightningCLI (jsonargparse) resolves into this signature, so a misspelt key is an error.

    Args:
        val_size: validation images held out of the training part.
        test_size: test images held out of the 1,797.
        split_seed: seed of the train/test split.
        kwargs: the other :class:`ImageDataModule` arguments.
    """

    def __init__(self, val_size: int = 300, test_size: int = 360, split_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(reader=DigitsReader(test_size, split_seed), val_size=val_size, **kwargs)
