"""Episodic (few-shot) DataModule over any labelled image source.

Pools every labelled image of a source (a folder tree, an :class:`ImageDataModule`, or any
:class:`LabelledPool` such as the learn2learn bridge), splits the *classes* into disjoint
train/val/test sets, optionally turns each rotation by 90 degrees into a new class, and
serves N-way K-shot episodes drawn by :class:`~ssl_lightning.data.episodes.EpisodeSampler`.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.episodes import (
    EpisodeSampler,
    distributed_rank_and_size,
    episode_labels,
    episodes_per_rank,
    mix_seed,
)
from ssl_lightning.data.resumable import ResumableDataLoader

log = logging.getLogger(__name__)

#: ``(support_x, support_y, query_x, query_y)``; see :class:`EpisodicDataModule` for shapes.
EpisodeBatch = tuple[Tensor, Tensor, Tensor, Tensor]
Pool = tuple[Tensor, Tensor, list[str]]
SPLITS = ("train", "val", "test")
#: Seed streams of the fixed evaluation sets (training uses stream 0 with epoch and rank).
EVAL_STREAMS = {"val": 1, "test": 2}
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


# ---- pure helpers ----------------------------------------------------------------------------
def pool_from_datamodule(source: ImageDataModule) -> Pool:
    """All images of an :class:`ImageDataModule`'s official train and test splits, one label space."""
    images, labels, names = source.load_split("train")
    test_images, test_labels, _ = source.load_split("test")
    return torch.cat([images, test_images]), torch.cat([labels, test_labels]), list(names)


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


def split_classes(num_classes: int, fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Seeded class-disjoint split: shuffle the classes, cut them by ``fractions``.

    Sizes are ``round(f * num_classes)`` for train and val; test gets the rest if the fractions
    sum to 1, else ``round(f_test * num_classes)`` (the remaining classes are left out).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` sorted class ids.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-6:
        raise ValueError(
            f"class_split must be three non-negative fractions (train, val, test) summing to at most 1, "
            f"got {tuple(fractions)}"
        )
    generator = torch.Generator().manual_seed(mix_seed(seed, 7))
    order = torch.randperm(num_classes, generator=generator).tolist()
    n_train = round(fractions[0] * num_classes)
    n_val = min(round(fractions[1] * num_classes), num_classes - n_train)
    n_test = min(round(fractions[2] * num_classes), num_classes - n_train - n_val)
    if abs(sum(fractions) - 1) < 1e-6:  # fractions that sum to 1 use every class, whatever the rounding
        n_test = num_classes - n_train - n_val
    cuts = [0, n_train, n_train + n_val, n_train + n_val + n_test]
    return {name: sorted(order[cuts[i] : cuts[i + 1]]) for i, name in enumerate(SPLITS)}


def split_classes_from_file(class_names: list[str], path: str | Path) -> dict[str, list[int]]:
    """Class split given by a JSON file ``{"train": [...], "val": [...], "test": [...]}``.

    An entry matches a class whose name equals it or starts with ``entry + "/"``, so
    ``"images_background"`` or ``"Latin"`` select whole alphabets and ``"Latin/character01"``
    one class. A class matched by two splits is an error; classes matched by none are unused.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"split_file {path} does not exist. Write a JSON file with train/val/test lists.")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"split_file {path} is not valid JSON ({err}).") from err
    if not isinstance(spec, dict) or set(spec) - set(SPLITS):
        raise ValueError(f"split_file {path} must be a JSON object with keys among {SPLITS}, got {spec!r:.200}")
    owner: dict[int, str] = {}
    result: dict[str, list[int]] = {name: [] for name in SPLITS}
    for split in SPLITS:
        for entry in spec.get(split, []):
            entry = str(entry).rstrip("/")
            hits = [c for c, name in enumerate(class_names) if name == entry or name.startswith(entry + "/")]
            if not hits:
                raise ValueError(
                    f"split_file {path}: {split} entry {entry!r} matches no class (classes look like "
                    f"{class_names[:3]}). Fix the entry or the root."
                )
            for c in hits:
                if owner.get(c, split) != split:
                    raise ValueError(
                        f"split_file {path}: class {class_names[c]!r} is in both {owner[c]} and {split}. "
                        f"The splits must be class-disjoint."
                    )
                owner[c] = split
            result[split].extend(hits)
    return {split: sorted(set(ids)) for split, ids in result.items()}


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


# ---- dataset and collation -------------------------------------------------------------------
class EpisodeDataset(Dataset[Tensor]):
    """Images of one split, indexed by whole episodes.

    With ``rotations``, item ``r * N + i`` is image ``i`` rotated by ``r * 90`` degrees
    (``r`` in 0..3) and belongs to class ``r * C + label[i]`` (:attr:`labels`), so the 4x
    classes cost no memory.

    Args:
        images: uint8[N, C, H, W].
        labels: long[N] in ``0..C-1``.
        rotations: add the rotated copies as new classes (needs ``H == W``).
        num_classes: ``C``; default ``max(labels) + 1``.
    """

    def __init__(self, images: Tensor, labels: Tensor, rotations: bool = False, num_classes: int | None = None) -> None:
        if rotations and images.shape[-1] != images.shape[-2]:
            raise ValueError(
                f"rotations need square images, got {images.shape[-2]}x{images.shape[-1]}. Set image_size."
            )
        self.images = images
        self.rotations = rotations
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if len(labels) else 0
        copies = 4 if rotations else 1
        self.labels = torch.cat([labels + r * num_classes for r in range(copies)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> Tensor:
        """uint8[len(indices), C, H, W] for one episode's flattened indices."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if not self.rotations:
            return self.images[index]
        count = len(self.images)
        out = self.images[index % count]
        quarter = index // count
        for r in (1, 2, 3):
            mask = quarter == r
            if mask.any():
                out[mask] = torch.rot90(out[mask], r, dims=(2, 3))
        return out


class EpisodeCollate:
    """Stacks T episodes (each uint8[N * (K + Q), C, H, W], class rows of K support then Q query) into a batch.

    Returns ``(support_x: uint8[T, N*K, C, H, W], support_y: long[T, N*K], query_x: uint8[T, N*Q, C, H, W],
    query_y: long[T, N*Q])`` with labels ``0..N-1`` by class row.
    """

    def __init__(self, n_way: int, k_shot: int, n_query: int) -> None:
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query

    def __call__(self, episodes: list[Tensor]) -> EpisodeBatch:
        tasks = len(episodes)
        stacked = torch.stack(episodes).unflatten(1, (self.n_way, self.k_shot + self.n_query))
        shape = stacked.shape[3:]
        support = stacked[:, :, : self.k_shot].reshape(tasks, self.n_way * self.k_shot, *shape)
        query = stacked[:, :, self.k_shot :].reshape(tasks, self.n_way * self.n_query, *shape)
        support_y = episode_labels(self.n_way, self.k_shot).expand(tasks, -1).contiguous()
        query_y = episode_labels(self.n_way, self.n_query).expand(tasks, -1).contiguous()
        return support, support_y, query, query_y


def episode_to_float(batch: EpisodeBatch) -> EpisodeBatch:
    """uint8 images of an episode batch -> float in ``[0, 1]`` (on whatever device they are)."""
    support_x, support_y, query_x, query_y = batch
    return support_x.float() / 255, support_y, query_x.float() / 255, query_y


# ---- the DataModule ------------------------------------------------------------------------
class EpisodicDataModule(pl.LightningDataModule):
    """N-way K-shot episodes from class-disjoint train/val/test splits of any labelled images.

    Batches are ``(support_x: float[T, N*K, C, H, W], support_y: long[T, N*K],
    query_x: float[T, N*Q, C, H, W], query_y: long[T, N*Q])`` with ``N = n_way``,
    ``K = k_shot``, ``Q = n_query``, labels remapped to ``0..N-1`` (items are grouped by
    class: support item ``i`` has label ``i // K``), pixels in ``[0, 1]``. ``T`` is
    ``tasks_per_batch`` when training and 1 for validation and test. Images stay uint8 in
    memory and become float on the device (``on_after_batch_transfer``).

    Sources (exactly one of ``root`` and ``source``):

    * ``root`` with ``class_depth=1``: ``root/<class>/*.png``; ``class_depth=2``: Omniglot's
      ``root/<alphabet>/<character>/*.png`` (an unzipped ``images_background*``), or a folder
      holding ``images_background*/`` and ``images_evaluation*/``, or torchvision's
      ``omniglot-py/`` (fetched with ``download=True``).
    * ``source``: an :class:`ImageDataModule` (digits, CIFAR-10, image folders; its official
      train and test images are pooled) or a :class:`LabelledPool` (e.g.
      :class:`ssl_lightning.integrations.learn2learn.Learn2LearnPool`).

    Episodes: training draws ``train_episodes`` fresh episodes per epoch (split over DDP
    ranks, each rank its own stream from ``(seed, epoch, rank)``); validation and test use
    ``eval_episodes`` episodes fixed by ``seed`` (the same on every run and rank, dealt
    round-robin over the ranks, each evaluated once). A split given no classes (e.g.
    ``class_split: [0.5, 0.0, 0.5]``) has no loader: that stage is skipped.

    Example config (Omniglot 5-way 1-shot with rotations; class counts of Ravi & Larochelle's split)::

        data:
          class_path: ssl_lightning.data.episodic.EpisodicDataModule
          init_args:
            root: data/omniglot            # holds images_background/ and images_evaluation/
            class_depth: 2
            image_size: 28
            rotations: true
            class_split: [0.6334, 0.106, 0.2606]  # 1028 / 172 / 423 of the 1623 characters
            n_way: 5
            k_shot: 1
            n_query: 15
            tasks_per_batch: 32

    Args:
        root: a folder tree of images (see above).
        source: an :class:`ImageDataModule` or :class:`LabelledPool` to pool instead of ``root``.
        class_depth: folder levels that name a class under ``root`` (1, or 2 for Omniglot).
        image_size: resize to ``image_size x image_size``; ``None`` keeps the images' size.
        channels: 1 (grey) or 3 (RGB); ``None`` keeps the source's channels.
        class_split: fractions of the classes for train, val and test (seeded by ``seed``).
        split_file: JSON ``{"train": [...], "val": [...], "test": [...]}`` of class names or
            name prefixes (e.g. alphabets); overrides ``class_split`` and a pool's own split
            (:meth:`LabelledPool.class_split`, e.g. a learn2learn benchmark's).
        rotations: each rotation by 0/90/180/270 degrees of a class is a class of its own,
            in every split (Santoro et al. 2016; Vinyals et al. 2016; Snell et al. 2017).
        n_way: classes per episode.
        k_shot: support images per class.
        n_query: query images per class.
        tasks_per_batch: episodes per training batch (the meta-batch).
        train_episodes: training episodes per epoch, over all ranks together.
        eval_episodes: fixed validation and test episodes (600 is the literature's default).
        num_workers: DataLoader worker processes (0 is usually fastest for in-memory data).
        seed: seed of the class split and the episodes.
        download: fetch Omniglot with torchvision into ``root`` (needs internet).
    """

    def __init__(
        self,
        root: str | None = None,
        source: ImageDataModule | LabelledPool | None = None,
        class_depth: int = 1,
        image_size: int | None = None,
        channels: int | None = None,
        class_split: tuple[float, float, float] = (0.6, 0.2, 0.2),
        split_file: str | None = None,
        rotations: bool = False,
        n_way: int = 5,
        k_shot: int = 1,
        n_query: int = 15,
        tasks_per_batch: int = 1,
        train_episodes: int = 1000,
        eval_episodes: int = 600,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
    ) -> None:
        super().__init__()
        if (root is None) == (source is None):
            raise ValueError("Give exactly one of root (a folder of images) and source (a DataModule or pool).")
        for name, value in (("tasks_per_batch", tasks_per_batch), ("eval_episodes", eval_episodes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or null, got {channels}")
        self.root = Path(root).expanduser() if root is not None else None
        self.source = source
        self.class_depth = class_depth
        self.image_size = image_size
        self.channels = channels
        self.class_split = tuple(class_split)
        self.split_file = split_file
        self.rotations = rotations
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.tasks_per_batch = tasks_per_batch
        self.train_episodes = train_episodes
        self.eval_episodes = eval_episodes
        self.num_workers = num_workers
        self.seed = seed
        self.download = download
        self.datasets: dict[str, EpisodeDataset] = {}
        #: Class names of every split (after rotation expansion).
        self.class_names: dict[str, list[str]] = {}

    # ---- lifecycle ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.source is not None:
            self.source.prepare_data()
        elif self.download:
            from torchvision.datasets import Omniglot

            for background in (True, False):
                Omniglot(str(self.root), background=background, download=True)

    def load_pool(self) -> Pool:
        """Every labelled image of the source, resized and channel-matched: ``(uint8[N, C, H, W], long[N], names)``."""
        if self.root is not None:
            if not self.root.exists():
                raise FileNotFoundError(
                    f"Few-shot data not found at {self.root}. Point --data.root at a folder of class folders "
                    f"(class_depth=1) or at unzipped Omniglot images_background/ and images_evaluation/ "
                    f"(class_depth=2), or pass --data.download true to fetch Omniglot there."
                )
            return read_folder_pool(self.root, self.class_depth, self.image_size, self.channels)
        if isinstance(self.source, ImageDataModule):
            images, labels, names = pool_from_datamodule(self.source)
        elif isinstance(self.source, LabelledPool):
            images, labels, names = self.source.load_pool()
        else:
            raise TypeError(f"source must be an ImageDataModule or LabelledPool, got {type(self.source).__name__}")
        if self.image_size is not None:
            images = resize_images(images, self.image_size)
        if self.channels is not None:
            images = match_channels(images, self.channels)
        return images, labels, names

    def split_ids(self, class_names: list[str]) -> dict[str, list[int]]:
        """Class ids of each split: from ``split_file`` if given, else the pool's own split, else ``class_split``."""
        if self.split_file is not None:
            return split_classes_from_file(class_names, self.split_file)
        if isinstance(self.source, LabelledPool):
            own = self.source.class_split()
            if own is not None:
                return {split: sorted(own.get(split, [])) for split in SPLITS}
        return split_classes(len(class_names), self.class_split, self.seed)  # type: ignore[arg-type]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        images, labels, names = self.load_pool()
        for split, ids in self.split_ids(names).items():
            keep = torch.isin(labels, torch.tensor(ids, dtype=torch.long))
            remap = torch.full((len(names),), -1, dtype=torch.long)
            remap[ids] = torch.arange(len(ids))
            self.datasets[split] = EpisodeDataset(
                images[keep].contiguous(), remap[labels[keep]], self.rotations, len(ids)
            )
            split_names = [names[c] for c in ids]
            if self.rotations:
                split_names = [f"{name}@rot{90 * r}" for r in range(4) for name in split_names]
            self.class_names[split] = split_names
        log.info(
            "%s: %d images of %d classes; classes per split %s%s",
            type(self).__name__,
            len(labels),
            len(names),
            {split: len(n) for split, n in self.class_names.items()},
            " (x4 rotations)" if self.rotations else "",
        )

    # ---- loaders -----------------------------------------------------------------------
    def _sampler(self, split: str) -> EpisodeSampler:
        if not self.datasets:
            self.setup()
        dataset = self.datasets[split]
        rank, world_size = distributed_rank_and_size()
        fixed = split != "train"
        if fixed:
            count = self.eval_episodes
        else:
            count = episodes_per_rank(self.train_episodes, world_size)
            if count < self.tasks_per_batch:
                raise ValueError(
                    f"train_episodes={self.train_episodes} over {world_size} rank(s) leaves {count} per rank, fewer "
                    f"than tasks_per_batch={self.tasks_per_batch}. Raise train_episodes."
                )
        return EpisodeSampler(
            dataset.labels,
            self.n_way,
            self.k_shot,
            self.n_query,
            count,
            seed=self.seed,
            fixed=fixed,
            rank=rank,
            world_size=world_size,
            class_names=self.class_names[split],
            split=split,
            stream=EVAL_STREAMS.get(split, 0),
        )

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        sampler = self._sampler(split)
        # training loaders resume mid-epoch from a checkpoint (see ssl_lightning.data.resumable)
        return (ResumableDataLoader if train else DataLoader)(
            self.datasets[split],
            sampler=sampler,
            batch_size=self.tasks_per_batch if train else 1,
            drop_last=train,
            collate_fn=EpisodeCollate(self.n_way, self.k_shot, self.n_query),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def _eval_loader(self, split: str) -> DataLoader | list:
        if not self.datasets:
            self.setup()
        if not self.class_names[split]:
            # class_split / split_file gave this split no classes: no evaluation, not an error
            log.warning("%s: the %s split has no classes; skipping %s.", type(self).__name__, split, split)
            return []
        return self._loader(split)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader("test")

    def on_after_batch_transfer(self, batch: EpisodeBatch, dataloader_idx: int) -> EpisodeBatch:
        return episode_to_float(batch)
