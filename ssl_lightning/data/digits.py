"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, no download."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ssl_lightning.data.augment import BatchAugmentation
from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.mixing import BatchMix
from ssl_lightning.data.splits import stratified_split


class DigitsDataModule(ImageDataModule):
    """The UCI optical digits that ship with scikit-learn, as ``uint8[N, 1, 8, 8]`` images.

    The 1,797 images have no official test split, so ``test_size`` of them are held out by a
    seeded stratified split (fixed by ``split_seed``, independent of ``seed``, so every run
    sees the same test set); validation is then held out of the rest.

    Example config::

        data:
          class_path: ssl_lightning.data.DigitsDataModule
          init_args: {batch_size: 64, val_size: 300, test_size: 360, labels_per_class: 10}

    Args:
        batch_size: see :class:`ImageDataModule`.
        num_workers: see :class:`ImageDataModule`.
        val_size: validation images held out of the training part.
        test_size: test images held out of the 1,797.
        labels_per_class: see :class:`ImageDataModule`.
        train_pool: see :class:`ImageDataModule`.
        normalize: see :class:`ImageDataModule`.
        seed: see :class:`ImageDataModule`.
        split_seed: seed of the train/test split.
        augment: see :class:`ImageDataModule`.
        mix: see :class:`ImageDataModule`.
        imbalance_ratio: see :class:`ImageDataModule`.
        resample: see :class:`ImageDataModule`.
        sampler: see :class:`ImageDataModule`.
        subset_file: see :class:`ImageDataModule`.
        save_subset: see :class:`ImageDataModule`.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int = 300,
        test_size: int = 360,
        labels_per_class: int | None = None,
        train_pool: Literal["labelled", "all"] = "labelled",
        normalize: bool = True,
        seed: int = 0,
        split_seed: int = 0,
        augment: list[BatchAugmentation] | None = None,
        mix: BatchMix | None = None,
        imbalance_ratio: float | None = None,
        resample: Literal["none", "oversample", "undersample"] = "none",
        sampler: Literal["random", "weighted", "class_balanced"] = "random",
        subset_file: str | None = None,
        save_subset: str | None = None,
    ) -> None:
        super().__init__(
            batch_size,
            num_workers,
            val_size,
            labels_per_class,
            train_pool,
            normalize,
            seed,
            augment=augment,
            mix=mix,
            imbalance_ratio=imbalance_ratio,
            resample=resample,
            sampler=sampler,
            subset_file=subset_file,
            save_subset=save_subset,
        )
        self.test_size = test_size
        self.split_seed = split_seed

    def load_split(self, split: Literal["train", "test"]) -> tuple[Tensor, Tensor, list[str]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values are 0..16; scale to the uint8 range every image DataModule uses.
        images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)
        labels = torch.from_numpy(digits.target).long()
        train_idx, test_idx = stratified_split(labels, self.test_size, self.split_seed)
        idx = train_idx if split == "train" else test_idx
        return images[idx].contiguous(), labels[idx], [str(d) for d in range(10)]
