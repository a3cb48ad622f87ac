"""learn2learn datasets and benchmark task sets as a source of :class:`EpisodicDataModule`.

learn2learn (Arnold et al. 2020) is optional: this module imports it only when used, and
says how to install it when it is missing (``bash scripts/install_learn2learn.sh``; the
0.2.0 release on PyPI does not build on Python >= 3.11).

Any learn2learn ``MetaDataset`` (also ``FilteredMetaDataset``, ``UnionMetaDataset``), a
``TaskDataset``/``Taskset`` (its ``.dataset`` is used) or a benchmark of
``l2l.vision.benchmarks.get_tasksets`` is pooled once into uint8 memory; our episode
sampler then draws the episodes (see ``benchmarks/episode_sampling.py`` for the speed-up).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssl_lightning.data.episodic.pools import LabelledPool, Pool
from ssl_lightning.data.episodic.splits import SPLITS

INSTALL_HINT = (
    "learn2learn is not installed. Run `bash scripts/install_learn2learn.sh` (it builds learn2learn 0.2.0, "
    "whose PyPI sdist does not compile on Python >= 3.11 as is) in the environment of ssl_lightning."
)
#: learn2learn benchmark split names -> ours.
BENCHMARK_SPLITS = {"train": "train", "validation": "val", "test": "test"}


def require_learn2learn() -> ModuleType:
    """``import learn2learn``, or an ``ImportError`` that says how to install it."""
    try:
        import learn2learn
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return learn2learn


def _as_chw_array(item: Any) -> np.ndarray:
    """A PIL image, numpy array or tensor -> array[C, H, W] (dtype kept)."""
    if isinstance(item, Tensor):
        array = item.detach().cpu().numpy()
        return array[None] if array.ndim == 2 else array
    array = np.asarray(item)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:  # PIL and numpy images are [H, W, C]
        return array.transpose(2, 0, 1)
    raise ValueError(f"Expected an image, got an array of shape {array.shape}.")


def _to_uint8(arrays: list[np.ndarray]) -> Tensor:
    """Stack images into uint8[N, C, H, W]; floats in [0, 1] are scaled by 255, floats up to 255 kept."""
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"The learn2learn dataset yields images of {len(shapes)} shapes (e.g. {sorted(shapes)[:2]}). "
            f"Give it a transform that resizes every image to one size (torchvision.transforms.Resize)."
        )
    stacked = np.stack(arrays)
    if stacked.dtype == np.uint8:
        return torch.from_numpy(stacked)
    if stacked.dtype == np.bool_:
        return torch.from_numpy(stacked.astype(np.uint8) * 255)
    low, high = float(stacked.min()), float(stacked.max())
    if low < 0 or high > 255:
        raise ValueError(
            f"The learn2learn dataset yields values in [{low:.3g}, {high:.3g}], not pixel values: drop the "
            f"Normalize transform (the episodic DataModule keeps uint8 pixels and scales them to [0, 1])."
        )
    scale = 255.0 if high <= 1.0 else 1.0
    return torch.from_numpy(np.clip(np.rint(stacked * scale), 0, 255).astype(np.uint8))


def pool_from_learn2learn(dataset: Any) -> Pool:
    """Every item of a learn2learn dataset or task set, in memory.

    Args:
        dataset: a ``MetaDataset`` (or subclass), a ``TaskDataset``/``Taskset`` (its
            ``.dataset``), or any torch dataset of ``(image, label)`` pairs. Images may be PIL
            images, uint8 arrays, or float tensors in ``[0, 1]`` or ``[0, 255]``.

    Returns:
        ``(images: uint8[N, C, H, W], labels: long[N] in 0..K-1, class_names)``: the
        dataset's labels sorted and renumbered; ``class_names[k]`` is ``str(original label)``.
    """
    if hasattr(dataset, "task_transforms") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # a TaskDataset: pool the data, our sampler makes the tasks
    index_labels = getattr(dataset, "indices_to_labels", None)
    arrays, raw_labels = [], []
    for index in range(len(dataset)):
        image, label = dataset[index][:2]
        arrays.append(_as_chw_array(image))
        raw_labels.append(index_labels[index] if index_labels is not None else label)
    raw_labels = [int(y) if isinstance(y, Tensor | np.integer) else y for y in raw_labels]
    classes = sorted(set(raw_labels), key=lambda y: (str(type(y)), y))
    lookup = {y: i for i, y in enumerate(classes)}
    labels = torch.tensor([lookup[y] for y in raw_labels], dtype=torch.long)
    return _to_uint8(arrays), labels, [str(y) for y in classes]


class Learn2LearnPool(LabelledPool):
    """A learn2learn benchmark or dataset as the ``source`` of an ``EpisodicDataModule``.

    With ``benchmark``, the train/validation/test task sets of
    ``l2l.vision.benchmarks.get_tasksets(benchmark, root=root)`` are pooled and **their class
    split is kept** (classes named ``"train/<label>"``, ``"val/<label>"``, ``"test/<label>"``);
    learn2learn shuffles classes with Python's global ``random``, which is seeded with
    ``seed`` for the call and restored after. From Python, ``datasets`` takes learn2learn
    objects instead: one dataset (split by the DataModule's ``class_split``) or a mapping
    ``{"train": ..., "val": ..., "test": ...}`` whose split is kept.

    Images become ``uint8[N, C, H, W]`` (floats in ``[0, 1]`` are scaled by 255); batches are
    those of :class:`~ssl_lightning.data.episodic.EpisodicDataModule`.

    Example config::

        data:
          class_path: ssl_lightning.data.episodic.EpisodicDataModule
          init_args:
            source:
              class_path: ssl_lightning.integrations.learn2learn.Learn2LearnPool
              init_args: {benchmark: omniglot, root: ~/data}
            n_way: 5
            k_shot: 1
            n_query: 15

    Python::

        meta = l2l.data.MetaDataset(my_dataset)
        dm = EpisodicDataModule(source=Learn2LearnPool(datasets=meta), n_way=5, k_shot=1)

    Args:
        benchmark: a name of ``l2l.vision.benchmarks.list_tasksets()`` (``omniglot``,
            ``mini-imagenet``, ``tiered-imagenet``, ``fc100``, ``cifarfs``); learn2learn
            downloads it into ``root`` if missing.
        root: data folder of the benchmark.
        seed: seed of the benchmark's class shuffle.
        datasets: learn2learn dataset(s) to pool instead of ``benchmark`` (Python use).
    """

    def __init__(
        self,
        benchmark: str | None = None,
        root: str = "~/data",
        seed: int = 0,
        datasets: Any = None,
    ) -> None:
        if (benchmark is None) == (datasets is None):
            raise ValueError("Give exactly one of benchmark (a learn2learn benchmark name) and datasets.")
        self.benchmark = benchmark
        self.root = root
        self.seed = seed
        self.datasets = datasets
        self._split: dict[str, list[int]] | None = None

    def _benchmark_sets(self) -> dict[str, Any]:
        l2l = require_learn2learn()
        names = list(l2l.vision.benchmarks.list_tasksets())
        if self.benchmark not in names:
            raise ValueError(f"Unknown learn2learn benchmark {self.benchmark!r}; choose one of {names}.")
        state = random.getstate()
        random.seed(self.seed)
        try:
            tasksets = l2l.vision.benchmarks.get_tasksets(self.benchmark, root=self.root)
        finally:
            random.setstate(state)
        return {ours: getattr(tasksets, theirs) for theirs, ours in BENCHMARK_SPLITS.items()}

    def prepare_data(self) -> None:
        if self.benchmark is not None:
            self._benchmark_sets()  # learn2learn downloads here

    def load_pool(self) -> Pool:
        parts = self._benchmark_sets() if self.benchmark is not None else self.datasets
        if not isinstance(parts, Mapping):
            self._split = None
            return pool_from_learn2learn(parts)
        unknown = set(parts) - set(SPLITS)
        if unknown:
            raise ValueError(f"datasets keys must be among {SPLITS}, got {sorted(unknown)}")
        images, labels, names = [], [], []
        self._split = {}
        for split, dataset in parts.items():
            split_images, split_labels, split_names = pool_from_learn2learn(dataset)
            self._split[split] = list(range(len(names), len(names) + len(split_names)))
            images.append(split_images)
            labels.append(split_labels + len(names))
            names.extend(f"{split}/{name}" for name in split_names)
        shapes = {tuple(i.shape[1:]) for i in images}
        if len(shapes) > 1:
            raise ValueError(f"The splits' images have different shapes {shapes}; give them one Resize transform.")
        return torch.cat(images), torch.cat(labels), names

    def class_split(self) -> dict[str, list[int]] | None:
        return self._split
