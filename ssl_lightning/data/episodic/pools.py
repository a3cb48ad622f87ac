"""Sources of labelled images for episodes: the :class:`LabelledPool` protocol, folder trees, DataModules.

A *pool* is every labelled image of a source as ``(images: uint8[N, C, H, W], labels: long[N] in
0..K-1, class_names[K])``. :func:`read_folder_pool` reads class folder trees (Omniglot's two
parts as one pool), :func:`pool_from_datamodule` pools an :class:`ImageDataModule`'s official
train and test splits (digits, CIFAR-10, image folders), and a :class:`LabelledPool` wraps any
other source (e.g. :class:`ssl_lightning.integrations.learn2learn.Learn2LearnPool`).
:func:`resize_images` and :func:`match_channels` bring a pool to one size and channel count
(:func:`load_source_pool` does both for a DataModule or pool source).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.memmap import as_tensor

Pool = tuple[Tensor, Tensor, list[str]]
OMNIGLOT_PARTS = ("images_background", "images_evaluation")


class LabelledPool(ABC):
    """A source of labelled images that is not an :class:`ImageDataModule` (e.g. learn2learn datasets).

    Subclasses implement :meth:`load_pool`; :meth:`prepare_data` may download.
    """

    def prepare_data(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Download or verify files (called once per node)."""

    @abstractmethod
    def load_pool(self) -> Pool:
        """Every labelled image: ``(images: uint8[N, C, H, W], labels: long[N] in 0..K-1, class_names[K])``."""

    def class_split(self) -> dict[str, list[int]] | None:
        """The source's own class split (after :meth:`load_pool`), or ``None`` to use ``class_split``/``split_file``."""
        return None


def pool_from_datamodule(source: ImageDataModule) -> Pool:
    """All images of an :class:`ImageDataModule`'s official train and test splits, one label space."""
    images, labels, names = source.load_split("train")
    test_images, test_labels, _ = source.load_split("test")
    # episodes index the pool by class, so a memory-mapped cache is read into memory here
    return torch.cat([as_tensor(images), as_tensor(test_images)]), torch.cat([labels, test_labels]), list(names)


def resize_images(images: Tensor, image_size: int) -> Tensor:
    """uint8[N, C, H, W] -> uint8[N, C, image_size, image_size] (bilinear, antialiased)."""
    if images.shape[-2:] == (image_size, image_size):
        return images
    out = []
    for chunk in images.split(4096):
        resized = F.interpolate(chunk.float(), size=(image_size, image_size), mode="bilinear", antialias=True)
        out.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def match_channels(images: Tensor, channels: int) -> Tensor:
    """uint8[N, C, H, W] -> uint8[N, channels, H, W]: grey is repeated to RGB, RGB becomes ITU-R 601-2 luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"Cannot convert {have}-channel images to {channels} channels; use channels 1 or 3.")


def load_source_pool(source: ImageDataModule | LabelledPool, image_size: int | None, channels: int | None) -> Pool:
    """Every labelled image of ``source``, resized to ``image_size`` and converted to ``channels`` (``None``: kept)."""
    if isinstance(source, ImageDataModule):
        images, labels, names = pool_from_datamodule(source)
    elif isinstance(source, LabelledPool):
        images, labels, names = source.load_pool()
    else:
        raise TypeError(f"source must be an ImageDataModule or LabelledPool, got {type(source).__name__}")
    if not isinstance(images, Tensor):  # read lazily (a LitData pool): no resizing here
        want = (channels or images.shape[1], image_size or images.shape[2], image_size or images.shape[3])
        if tuple(images.shape[1:]) != want:
            raise ValueError(
                f"{type(source).__name__} images are {list(images.shape[1:])}, not {list(want)}: set image_size and "
                f"channels to null, or write the data again at that size (ssl-lightning-data optimize --image-size)."
            )
        return images, labels, names
    if image_size is not None:
        images = resize_images(images, image_size)
    if channels is not None:
        images = match_channels(images, channels)
    return images, labels, names


def select_images(images: Tensor, keep: Tensor) -> Tensor:
    """``images[keep]`` (bool[N] or long[M]); a lazily read pool (``StreamedImages``) returns a view instead."""
    subset = getattr(images, "subset", None)
    return subset(keep) if callable(subset) else images[keep].contiguous()


def read_folder_pool(root: Path, class_depth: int, image_size: int | None, channels: int | None) -> Pool:
    """Read a class folder tree; Omniglot's two parts are read as one pool.

    ``root`` may be the tree itself, or (with ``class_depth=2``) a folder holding
    ``images_background*/`` and/or ``images_evaluation*/`` (as unzipped from the official
    archives), or torchvision's download folder with ``omniglot-py/`` inside. Classes of a
    part are then named ``"<part>/<alphabet>/<character>"``.
    """
    from ssl_lightning.data.folder import read_image_tree

    root = Path(root).expanduser()
    if (root / "omniglot-py").is_dir():
        root = root / "omniglot-py"
    parts = []
    if class_depth == 2 and root.is_dir():
        parts = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(OMNIGLOT_PARTS))
    if not parts:
        return read_image_tree(root, class_depth, image_size, channels)
    pools = [read_image_tree(part, class_depth, image_size, channels) for part in parts]
    shapes = {tuple(images.shape[1:]) for images, _, _ in pools}
    if len(shapes) > 1:
        raise ValueError(f"Parts {[p.name for p in parts]} have image shapes {shapes}; set image_size and channels.")
    offsets = [0]
    for _, _, names in pools[:-1]:
        offsets.append(offsets[-1] + len(names))
    images = torch.cat([p[0] for p in pools])
    labels = torch.cat([p[1] + off for p, off in zip(pools, offsets, strict=True)])
    names = [f"{part.name}/{name}" for part, pool in zip(parts, pools, strict=True) for name in pool[2]]
    return images, labels, names
