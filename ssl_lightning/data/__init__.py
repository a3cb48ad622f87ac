"""LightningDataModules and the data tools they compose.

Image batches are ``(x: float[B, C, H, W], y: long[B])``; episodes are
``(support_x, support_y, query_x, query_y)``; text batches are ``(inputs: dict, y: long[B])``.
"""

from ssl_lightning.data.base import EpochSeededSampler, ImageDataModule, InMemoryImageDataset
from ssl_lightning.data.cifar10 import CIFAR10DataModule
from ssl_lightning.data.class_subset import ClassSubsetDataModule
from ssl_lightning.data.digits import DigitsDataModule
from ssl_lightning.data.episodic import EpisodicDataModule
from ssl_lightning.data.fewshot_benchmarks import (
    CIFARFSDataModule,
    CUB200DataModule,
    FC100DataModule,
    MiniImageNetDataModule,
    TieredImageNetDataModule,
)
from ssl_lightning.data.folder import ImageFolderDataModule
from ssl_lightning.data.mixture import MixtureDataModule
from ssl_lightning.data.omniglot_runs import OmniglotOneShotRunsDataModule
from ssl_lightning.data.semisup import SemiSupervisedDataModule
from ssl_lightning.data.text import TextClassificationDataModule
from ssl_lightning.data.two_view import TwoViewDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFARFSDataModule",
    "CUB200DataModule",
    "ClassSubsetDataModule",
    "DigitsDataModule",
    "EpisodicDataModule",
    "EpochSeededSampler",
    "FC100DataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "InMemoryImageDataset",
    "MiniImageNetDataModule",
    "MixtureDataModule",
    "OmniglotOneShotRunsDataModule",
    "SemiSupervisedDataModule",
    "TextClassificationDataModule",
    "TieredImageNetDataModule",
    "TwoViewDataModule",
]
