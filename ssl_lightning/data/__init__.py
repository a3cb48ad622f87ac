"""LightningDataModules and the data tools they compose."""

from ssl_lightning.data.base import EpochSeededSampler, ImageDataModule, InMemoryImageDataset
from ssl_lightning.data.cifar10 import CIFAR10DataModule
from ssl_lightning.data.digits import DigitsDataModule

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "EpochSeededSampler",
    "ImageDataModule",
    "InMemoryImageDataset",
]
