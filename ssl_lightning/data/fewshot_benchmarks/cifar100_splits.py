"""CIFAR-FS (Bertinetto et al. 2019) and FC100 (Oreshkin et al. 2018): few-shot splits of CIFAR-100's
100 classes (600 32x32 images each), built from the official python pickles (``cifar-100-python/``)."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ssl_lightning.data.episodic import Pool
from ssl_lightning.data.fewshot_benchmarks.common import SplitBenchmark, hwc_to_tensor, load_pickle, text_key

FOLDER = "cifar-100-python"

#: Bertinetto et al.'s class split (their ``splits/bertinetto/{train,val,test}.txt``): 64 / 16 / 20 fine classes.
CIFAR_FS_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "dolphin", "seal", "aquarium_fish", "ray", "trout", "orchid", "sunflower", "tulip", "bottle", "bowl",
        "can", "cup", "plate", "apple", "mushroom", "orange", "pear", "clock", "keyboard", "chair", "couch", "bee",
        "caterpillar", "cockroach", "bear", "lion", "tiger", "wolf", "bridge", "castle", "house", "road",
        "skyscraper", "cloud", "forest", "mountain", "elephant", "kangaroo", "porcupine", "possum", "raccoon",
        "skunk", "lobster", "spider", "boy", "girl", "dinosaur", "lizard", "snake", "turtle", "hamster", "mouse",
        "rabbit", "shrew", "squirrel", "oak_tree", "palm_tree", "pine_tree", "willow_tree", "bus", "train",
        "lawn_mower", "streetcar", "tank",
    ),
    "val": (
        "beaver", "otter", "flatfish", "shark", "lamp", "television", "beetle", "butterfly", "sea", "camel",
        "cattle", "crab", "crocodile", "maple_tree", "motorcycle", "tractor",
    ),
    "test": (
        "whale", "poppy", "rose", "sweet_pepper", "telephone", "bed", "table", "wardrobe", "leopard", "plain",
        "chimpanzee", "fox", "snail", "worm", "baby", "man", "woman", "bicycle", "pickup_truck", "rocket",
    ),
}  # fmt: skip

#: Oreshkin et al.'s superclass split: 12 / 4 / 4 of CIFAR-100's 20 superclasses (60 / 20 / 20 classes).
FC100_SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
        "household_furniture", "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "reptiles",
        "trees", "vehicles_1", "vehicles_2",
    ),
    "val": ("large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates", "small_mammals"),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}  # fmt: skip


def read_cifar100(root: Path) -> tuple[Tensor, Tensor, Tensor, list[str], list[str]]:
    """All 60,000 images of ``root/cifar-100-python/{train,test}`` with their fine and coarse labels.

    Returns:
        ``(images: uint8[60000, 3, 32, 32], fine: long[N], coarse: long[N], fine_names[100], coarse_names[20])``.
    """
    folder = root / FOLDER
    missing = [name for name in ("train", "test", "meta") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-100 not found: {folder} lacks {missing}. Expected the official python version "
            f"({FOLDER}/train, test, meta); pass download: true to fetch it with torchvision."
        )
    meta = load_pickle(folder / "meta")
    fine_names = [str(n.decode() if isinstance(n, bytes) else n) for n in text_key(meta, "fine_label_names")]
    coarse_names = [str(n.decode() if isinstance(n, bytes) else n) for n in text_key(meta, "coarse_label_names")]
    images, fine, coarse = [], [], []
    for part in ("train", "test"):
        batch = load_pickle(folder / part)
        data = np.asarray(text_key(batch, "data"), dtype=np.uint8)
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32)))
        fine.append(torch.tensor(text_key(batch, "fine_labels"), dtype=torch.long))
        coarse.append(torch.tensor(text_key(batch, "coarse_labels"), dtype=torch.long))
    return torch.cat(images), torch.cat(fine), torch.cat(coarse), fine_names, coarse_names


class _CIFAR100Split(SplitBenchmark):
    """A class split of CIFAR-100; subclasses say which fine classes each split holds."""

    def __init__(self, root: str | Path = "data", image_size: int | None = None, download: bool = False) -> None:
        super().__init__(root, image_size)
        self.download = download
        self._data: tuple[Tensor, Tensor, Tensor, list[str], list[str]] | None = None

    def prepare_data(self) -> None:
        if self.download:
            from torchvision.datasets import CIFAR100

            CIFAR100(str(self.root), train=True, download=True)

    @abstractmethod
    def fine_classes(
        self, split: str, fine_names: list[str], coarse_of: dict[int, int], coarse_names: list[str]
    ) -> list[int]:
        """Sorted fine class ids of ``split``, given the names and each fine class's superclass."""

    def read_split(self, split: str) -> Pool:
        if self._data is None:
            self._data = read_cifar100(self.root)
        images, fine, coarse, fine_names, coarse_names = self._data
        coarse_of = {int(f): int(c) for f, c in zip(fine.tolist(), coarse.tolist(), strict=True)}
        ids = self.fine_classes(split, fine_names, coarse_of, coarse_names)
        keep = torch.isin(fine, torch.tensor(ids, dtype=torch.long))
        remap = torch.full((len(fine_names),), -1, dtype=torch.long)
        remap[ids] = torch.arange(len(ids))
        chw = images[keep]
        if self.image_size is not None:
            chw = hwc_to_tensor(chw.permute(0, 2, 3, 1).numpy(), self.image_size)
        return chw, remap[fine[keep]], [fine_names[i] for i in ids]

    def load_pool(self) -> Pool:
        try:
            return super().load_pool()
        finally:
            self._data = None  # the pool holds the images now; drop the second copy


class CIFARFS(_CIFAR100Split):
    """CIFAR-FS: CIFAR-100 split by fine class into 64 / 16 / 20 classes (Bertinetto et al. 2019, the class
    lists of their ``splits/bertinetto/`` in :data:`CIFAR_FS_SPLIT`).

    Example config::

        source:
          class_path: ssl_lightning.data.fewshot_benchmarks.CIFARFS
          init_args: {root: data, download: false}

    Args:
        root: the folder holding ``cifar-100-python/`` (torchvision's download folder).
        image_size: resize from 32x32 (``None`` keeps 32).
        download: fetch CIFAR-100 with torchvision into ``root`` first (needs internet).
    """

    title = "CIFAR-FS"

    def fine_classes(
        self, split: str, fine_names: list[str], coarse_of: dict[int, int], coarse_names: list[str]
    ) -> list[int]:
        unknown = sorted(set(CIFAR_FS_SPLIT[split]) - set(fine_names))
        if unknown:
            raise ValueError(f"CIFAR-FS: classes {unknown} are not CIFAR-100 fine classes; is this CIFAR-100's meta?")
        return sorted(fine_names.index(name) for name in CIFAR_FS_SPLIT[split])


class FC100(_CIFAR100Split):
    """FC100 (Fewshot-CIFAR100): CIFAR-100 split by *superclass*, 12 / 4 / 4 superclasses, i.e. 60 / 20 / 20
    fine classes, so train and test classes are semantically far apart (Oreshkin et al. 2018, TADAM;
    :data:`FC100_SPLIT`).

    Example config::

        source:
          class_path: ssl_lightning.data.fewshot_benchmarks.FC100
          init_args: {root: data}

    Args:
        root: the folder holding ``cifar-100-python/``.
        image_size: resize from 32x32 (``None`` keeps 32).
        download: fetch CIFAR-100 with torchvision into ``root`` first (needs internet).
    """

    title = "FC100"

    def fine_classes(
        self, split: str, fine_names: list[str], coarse_of: dict[int, int], coarse_names: list[str]
    ) -> list[int]:
        unknown = sorted(set(FC100_SPLIT[split]) - set(coarse_names))
        if unknown:
            raise ValueError(f"FC100: superclasses {unknown} are not CIFAR-100 coarse classes.")
        wanted = {coarse_names.index(name) for name in FC100_SPLIT[split]}
        return sorted(f for f, c in coarse_of.items() if c in wanted)
