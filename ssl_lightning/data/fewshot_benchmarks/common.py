"""What every few-shot benchmark reader shares: one pool over its three class-disjoint splits."""

from __future__ import annotations

import logging
import pickle
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssl_lightning.data.episodic import SPLITS, LabelledPool, Pool
from ssl_lightning.data.folder import IMAGE_EXTENSIONS, decode_image

log = logging.getLogger(__name__)


def hwc_to_tensor(images: np.ndarray | Sequence[np.ndarray], image_size: int | None) -> Tensor:
    """uint8[N, H, W, 3] (array or list of arrays) -> uint8[N, 3, S, S] with S = ``image_size`` if given."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        stacked = torch.from_numpy(np.ascontiguousarray(images))
    else:
        shapes = {tuple(a.shape) for a in images}
        if len(shapes) > 1:
            raise ValueError(f"images of {len(shapes)} different shapes (e.g. {sorted(shapes)[:2]}); set image_size.")
        stacked = (
            torch.from_numpy(np.stack(list(images))) if len(images) else torch.zeros(0, 1, 1, 3, dtype=torch.uint8)
        )
    if stacked.dtype != torch.uint8 or stacked.ndim != 4 or stacked.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N, H, W, 3], got {stacked.dtype} {list(stacked.shape)}")
    chw = stacked.permute(0, 3, 1, 2).contiguous()
    if image_size is None or chw.shape[-2:] == (image_size, image_size):
        return chw
    from ssl_lightning.data.episodic import resize_images

    return resize_images(chw, image_size)


def read_class_folders(folders: Sequence[Path], image_size: int | None, title: str) -> Pool:
    """One class per folder (label = position in ``folders``), every image file in it, sorted by name.

    Returns ``(uint8[N, 3, S, S], long[N], folder names)``; an empty class folder is an error naming it.
    """
    files, labels = [], []
    for c, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise ValueError(f"{title}: class folder {folder} has no images.")
        files += images
        labels += [c] * len(images)
    arrays = [decode_image(p, image_size, colour=True) for p in files]
    return hwc_to_tensor(arrays, image_size), torch.tensor(labels), [p.name for p in folders]


def load_pickle(path: Path) -> Any:
    """A pickle written by Python 3 or (like several benchmark releases) Python 2."""
    with path.open("rb") as handle:
        try:
            return pickle.load(handle)
        except UnicodeDecodeError:
            handle.seek(0)
            return pickle.load(handle, encoding="latin1")


def text_key(mapping: dict, key: str) -> Any:
    """``mapping[key]`` where Python 2 pickles may have used bytes keys."""
    if key in mapping:
        return mapping[key]
    return mapping[key.encode()]


class SplitBenchmark(LabelledPool):
    """A benchmark whose release fixes the train/val/test classes; subclasses read one split.

    :meth:`load_pool` reads the three splits into one label space (class names stay unique: a
    benchmark whose splits reuse ids gets its names prefixed by the split) and remembers which
    classes each split holds, which :meth:`class_split` hands to the episodic DataModule.

    Args:
        root: the folder of the release (each subclass documents the files it expects).
        image_size: resize to ``image_size x image_size`` when reading; ``None`` keeps the files' size.
    """

    #: Human-readable name used in messages.
    title = "benchmark"

    def __init__(self, root: str | Path, image_size: int | None = 84) -> None:
        self.root = Path(root).expanduser()
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be >= 1 or null, got {image_size}")
        self.image_size = image_size
        self._split_ids: dict[str, list[int]] | None = None

    @abstractmethod
    def read_split(self, split: str) -> Pool:
        """``(images: uint8[N, 3, H, W], labels: long[N] in 0..K-1, class_names[K])`` of one split."""

    def load_pool(self) -> Pool:
        images, labels, names = [], [], []
        self._split_ids = {}
        for split in SPLITS:
            split_images, split_labels, split_names = self.read_split(split)
            offset = len(names)
            images.append(split_images)
            labels.append(split_labels + offset)
            self._split_ids[split] = list(range(offset, offset + len(split_names)))
            names.extend(split_names)
        if len(set(names)) != len(names):
            raise ValueError(
                f"{self.title} at {self.root}: a class appears in two splits; the splits must be disjoint."
            )
        counts = {split: len(ids) for split, ids in self._split_ids.items()}
        log.info("%s at %s: %d images, classes per split %s", self.title, self.root, sum(map(len, labels)), counts)
        return torch.cat(images), torch.cat(labels), names

    def class_split(self) -> dict[str, list[int]] | None:
        return self._split_ids
