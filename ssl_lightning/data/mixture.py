"""A DataModule that mixes several image DataModules with given sampling ratios.

Use it to train on a labelled subset plus extra data, or on two image folders at once.
Each component keeps its own settings (splits, ``labels_per_class``, ``imbalance_ratio``,
``resample``); the mixture draws training examples from the components in the given ratios,
maps their labels into one label space, and applies its own ``augment``/``mix``.

Label spaces (``label_space``), one rule each, an error on any clash:

* ``shared``: every component has the same class names in the same order; labels are kept.
* ``offset``: the components' classes are disjoint; component ``i``'s labels are shifted by
  the number of classes before it. A class name in two components is an error (it would be
  one class under two labels): use ``shared`` or ``mapped``.
* ``mapped``: ``class_maps[i]`` maps each class name of component ``i`` to a name in the
  mixture; the mixture's classes are the mapped names in order of first appearance. A
  component class missing from its map is an error.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ssl_lightning.data.augment import BatchAugmentation
from ssl_lightning.data.base import ImageDataModule, InMemoryImageDataset
from ssl_lightning.data.memmap import as_tensor, channel_stats
from ssl_lightning.data.mixing import BatchMix
from ssl_lightning.data.samplers import MixtureSampler, apportion
from ssl_lightning.data.splits import class_counts

__all__ = ["MixtureDataModule", "MixtureSampler", "apportion"]

log = logging.getLogger(__name__)


class MixtureDataModule(ImageDataModule):
    """Train on several image DataModules at once, sampled in given ratios, in one label space.

    Batches are ``(x: float[B, C, H, W], y: long[B])`` (or soft targets with ``mix``); every
    component must yield images of the same ``[C, H, W]`` (use ``image_size``/``channels`` of
    :class:`~ssl_lightning.data.folder.ImageFolderDataModule` to make them match). Validation and
    test sets are the components' sets concatenated (labels mapped). Normalization uses the
    mean/std of the concatenated training pools.

    Example config (a 10-label digits subset plus the full set of another seed, 1:3)::

        data:
          class_path: ssl_lightning.data.mixture.MixtureDataModule
          init_args:
            label_space: shared
            ratios: [1, 3]
            datamodules:
              - {class_path: ssl_lightning.data.DigitsDataModule, init_args: {labels_per_class: 10}}
              - {class_path: ssl_lightning.data.folder.ImageFolderDataModule,
                 init_args: {root: data/extra_digits, image_size: 8, channels: 1}}

    Args:
        datamodules: the components (their own ``batch_size``/``augment`` are not used).
        ratios: sampling ratio per component; ``None``: proportional to their training sizes.
        label_space: ``shared``, ``offset`` or ``mapped`` (see the module docstring).
        class_maps: with ``mapped``: one ``{component class name: mixture class name}`` per component.
        epoch_size: training examples per epoch; ``None``: the sum of the components' training sizes.
        batch_size: examples per batch.
        num_workers: DataLoader worker processes.
        normalize: standardize with the concatenated training pools' mean/std.
        seed: seed of the sampling and the augmentation.
        augment: see :class:`ImageDataModule`.
        mix: see :class:`ImageDataModule`.
    """

    def __init__(
        self,
        datamodules: list[ImageDataModule],
        ratios: list[float] | None = None,
        label_space: Literal["shared", "offset", "mapped"] = "shared",
        class_maps: list[dict[str, str]] | None = None,
        epoch_size: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        normalize: bool = True,
        seed: int = 0,
        augment: list[BatchAugmentation] | None = None,
        mix: BatchMix | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            val_size=0,
            normalize=normalize,
            seed=seed,
            augment=augment,
            mix=mix,
        )
        if not datamodules:
            raise ValueError("MixtureDataModule needs at least one component DataModule.")
        if ratios is not None and len(ratios) != len(datamodules):
            raise ValueError(f"{len(datamodules)} datamodules but {len(ratios)} ratios; give one ratio per component.")
        if (label_space == "mapped") != (class_maps is not None):
            raise ValueError("class_maps must be given exactly when label_space is 'mapped'.")
        if class_maps is not None and len(class_maps) != len(datamodules):
            raise ValueError(
                f"{len(datamodules)} datamodules but {len(class_maps)} class_maps; give one per component."
            )
        self.components = list(datamodules)
        self.ratios = ratios
        self.label_space = label_space
        self.class_maps = class_maps
        self.epoch_size = epoch_size

    def prepare_data(self) -> None:
        for component in self.components:
            component.prepare_data()

    def label_maps(self, names: list[list[str]]) -> tuple[list[Tensor], list[str]]:
        """Per component, long[K_i] mapping its labels into the mixture; and the mixture's class names."""
        if self.label_space == "shared":
            for i, component_names in enumerate(names[1:], start=1):
                if component_names != names[0]:
                    raise ValueError(
                        f"label_space=shared but component {i} ({type(self.components[i]).__name__}) has classes "
                        f"{component_names} and component 0 has {names[0]}. Use label_space offset (disjoint classes) "
                        f"or mapped (with class_maps)."
                    )
            return [torch.arange(len(n)) for n in names], list(names[0])
        if self.label_space == "offset":
            seen: dict[str, int] = {}
            for i, component_names in enumerate(names):
                for name in component_names:
                    if name in seen:
                        raise ValueError(
                            f"label_space=offset but class {name!r} is in component {seen[name]} and component {i}: "
                            f"it would be one class under two labels. Use label_space shared or mapped."
                        )
                    seen[name] = i
            offsets = torch.tensor([0, *[len(n) for n in names]]).cumsum(0).tolist()
            return [torch.arange(len(n)) + offsets[i] for i, n in enumerate(names)], [n for ns in names for n in ns]
        assert self.class_maps is not None
        mixture: list[str] = []
        maps = []
        for i, (component_names, mapping) in enumerate(zip(names, self.class_maps, strict=True)):
            missing = [n for n in component_names if n not in mapping]
            if missing:
                raise ValueError(
                    f"class_maps[{i}] has no entry for classes {missing} of component {i}; map every class "
                    f"(its names: {component_names})."
                )
            for name in component_names:
                if mapping[name] not in mixture:
                    mixture.append(mapping[name])
            maps.append(torch.tensor([mixture.index(mapping[n]) for n in component_names]))
        return maps, mixture

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for component in self.components:
            component.setup(stage)
        maps, self.class_names = self.label_maps([list(c.class_names) for c in self.components])
        shapes = {tuple(c.datasets["all"].images.shape[1:]) for c in self.components}
        if len(shapes) > 1:
            described = [
                f"{i}: {type(c).__name__} {list(c.datasets['all'].images.shape[1:])}"
                for i, c in enumerate(self.components)
            ]
            raise ValueError(
                f"components yield images of different shapes ({'; '.join(described)}). Give every component the "
                f"same [C, H, W] (image_size/channels on folder DataModules)."
            )

        def joined(split: str) -> InMemoryImageDataset:
            parts = [c.datasets[c.train_pool if split == "train" else split] for c in self.components]
            images = torch.cat([as_tensor(p.images) for p in parts])
            labels = torch.cat([m[p.labels] for m, p in zip(maps, parts, strict=True)])
            return InMemoryImageDataset(images, labels)

        self.datasets["labelled"] = joined("train")
        self.datasets["all"] = joined("all")
        self.datasets["val"] = joined("val")
        self.datasets["test"] = joined("test")
        self.mean, std = channel_stats(self.datasets["all"].images)
        self.std = std.clamp_min(1e-6)
        self.sizes = [len(c.datasets[c.train_pool]) for c in self.components]
        self.labelled_class_counts = class_counts(self.datasets["labelled"].labels, len(self.class_names))
        log.info(
            "MixtureDataModule: components %s with %s training examples, ratios %s, %d classes; per class: %s",
            [type(c).__name__ for c in self.components],
            self.sizes,
            self.ratios or self.sizes,
            len(self.class_names),
            self.labelled_class_counts,
        )

    def train_dataloader(self) -> DataLoader:
        ratios = self.ratios if self.ratios is not None else [float(s) for s in self.sizes]
        epoch_size = self.epoch_size if self.epoch_size is not None else sum(self.sizes)
        sampler = MixtureSampler(self.sizes, ratios, epoch_size, self.seed)
        return self._loader(self.datasets["labelled"], sampler)
