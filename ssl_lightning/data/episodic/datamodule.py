"""The episodic (few-shot) DataModule over any labelled image source.

Pools every labelled image of a source (a folder tree, an :class:`ImageDataModule`, or any
:class:`LabelledPool` such as the learn2learn bridge), splits the *classes* into disjoint
train/val/test sets, optionally turns each rotation by 90 degrees into a new class, and
serves N-way K-shot episodes drawn by :class:`~ssl_lightning.data.episodic.sampling.EpisodeSampler`;
or trains on plain batches of the base classes (:mod:`ssl_lightning.data.episodic.base_batches`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ssl_lightning.data.augment import BatchAugmentation
from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.episodic.base_batches import BaseClassBatches, TrainMode
from ssl_lightning.data.episodic.batch import EpisodeBatch, EpisodeCollate, EpisodeDataset, episode_to_float
from ssl_lightning.data.episodic.pools import LabelledPool, Pool, load_source_pool, read_folder_pool, select_images
from ssl_lightning.data.episodic.sampling import EpisodeSampler, distributed_rank_and_size, episodes_per_rank
from ssl_lightning.data.episodic.splits import SPLITS, split_classes, split_classes_from_file
from ssl_lightning.data.resumable import ResumableDataLoader

log = logging.getLogger(__name__)

#: Seed streams of the fixed evaluation sets (training uses stream 0 with epoch and rank).
EVAL_STREAMS = {"val": 1, "test": 2}


class EpisodicDataModule(BaseClassBatches, pl.LightningDataModule):
    """N-way K-shot episodes from class-disjoint train/val/test splits of any labelled images.

    Batches are ``(support_x: float[T, N*K, C, H, W], support_y: long[T, N*K],
    query_x: float[T, N*Q, C, H, W], query_y: long[T, N*Q])`` with ``N = n_way``,
    ``K = k_shot``, ``Q = n_query``, labels remapped to ``0..N-1`` (items are grouped by
    class: support item ``i`` has label ``i // K``), pixels in ``[0, 1]``. ``T`` is
    ``tasks_per_batch`` when training and ``eval_tasks_per_batch`` (default 1) for validation
    and test. Images stay uint8 in memory and become float on the device (``on_after_batch_transfer``).

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

    Training modes: ``train_mode: episodes`` (above; ProtoNet, the MAML family, Meta-Baseline) or
    ``train_mode: batches``: plain ``(x: float[B, C, H, W], y: long[B])`` batches of ``batch_size``
    images of the train split's classes only (with ``rotations`` the 4x rotation classes), ``y`` in
    ``0..num_base_classes-1`` indexing ``class_names["train"]``, a seeded new order every epoch, a
    disjoint share per DDP rank, exact mid-epoch resume (Baseline/Baseline++, RFS, SimpleShot). The
    ``train_*`` episode options then do not apply; validation and test episodes are the same in
    both modes. ``augment`` acts on training data only, in either mode.

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

    Example config (pretrain-then-adapt on CIFAR-FS: batches of the 64 base classes, 5-way episodes to evaluate)::

        data:
          class_path: ssl_lightning.data.episodic.EpisodicDataModule
          init_args:
            train_mode: batches
            batch_size: 64
            augment:
              - {class_path: ssl_lightning.data.augment.PadCrop, init_args: {padding: 4}}
              - {class_path: ssl_lightning.data.augment.HorizontalFlip, init_args: {p: 0.5}}
            source: {class_path: ssl_lightning.data.fewshot_benchmarks.CIFARFS, init_args: {root: data}}
            n_way: 5
            k_shot: 1

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
        train_n_way: classes per *training* episode (``None``: ``n_way``). Snell et al. train ProtoNet at
            60-way and test at 5-way; a method with a fixed-size head (MAML) needs it equal to ``n_way``.
        train_k_shot: support images per class in training episodes (``None``: ``k_shot``).
        train_n_query: query images per class in training episodes (``None``: ``n_query``); the MAML
            reference code trains with 1, a fraction of the work per meta-step of 15.
        tasks_per_batch: episodes per training batch (the meta-batch).
        train_episodes: training episodes per epoch, over all ranks together.
        eval_episodes: fixed validation and test episodes (600 is the literature's default).
        num_workers: DataLoader worker processes (0 is usually fastest for in-memory data).
        seed: seed of the class split and the episodes.
        download: fetch Omniglot with torchvision into ``root`` (needs internet).
        train_mode: ``"episodes"`` trains on N-way K-shot episodes; ``"batches"`` on plain ``(x, y)``
            batches of the train split's classes (see above).
        batch_size: images per training batch in ``"batches"`` mode (also the chunk size of
            :meth:`labelled_features`); every batch is full (the epoch's remainder is dropped).
        augment: batched augmentation ops (:mod:`ssl_lightning.data.augment`) applied on the device to
            training data only: to ``"batches"`` batches, and to the support and query images of
            training episodes, each image with its own parameters, seeded by ``(seed, rank, epoch,
            batch index)`` so a resumed run replays them. Off by default.
        eval_tasks_per_batch: validation/test episodes per batch. The episodes are the same whatever
            its value; methods that adapt per episode on frozen features (Baseline, RFS, TIM) solve a
            batch's episodes together, so a larger value is faster.
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
        train_n_way: int | None = None,
        train_k_shot: int | None = None,
        train_n_query: int | None = None,
        tasks_per_batch: int = 1,
        train_episodes: int = 1000,
        eval_episodes: int = 600,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
        train_mode: TrainMode = "episodes",
        batch_size: int = 64,
        augment: list[BatchAugmentation] | None = None,
        eval_tasks_per_batch: int = 1,
    ) -> None:
        super().__init__()
        self.init_base_batches(train_mode, batch_size, augment)
        if (root is None) == (source is None):
            raise ValueError("Give exactly one of root (a folder of images) and source (a DataModule or pool).")
        checked = (("tasks_per_batch", tasks_per_batch), ("eval_episodes", eval_episodes))
        for name, value in (*checked, ("eval_tasks_per_batch", eval_tasks_per_batch)):
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
        self.train_n_way = train_n_way
        self.train_k_shot = train_k_shot
        self.train_n_query = train_n_query
        self.tasks_per_batch = tasks_per_batch
        self.eval_tasks_per_batch = eval_tasks_per_batch
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
        # __init__ checked that exactly one of root and source is given
        return load_source_pool(self.source, self.image_size, self.channels)  # type: ignore[arg-type]

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
                select_images(images, keep), remap[labels[keep]], self.rotations, len(ids)
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
    def episode_shape(self, split: str) -> tuple[int, int, int]:
        """``(n_way, k_shot, n_query)`` of the episodes of ``split``: training may differ from evaluation."""
        if split != "train":
            return self.n_way, self.k_shot, self.n_query
        return (
            self.n_way if self.train_n_way is None else self.train_n_way,
            self.k_shot if self.train_k_shot is None else self.train_k_shot,
            self.n_query if self.train_n_query is None else self.train_n_query,
        )

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
            *self.episode_shape(split),
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
            batch_size=self.tasks_per_batch if train else self.eval_tasks_per_batch,
            drop_last=train,
            collate_fn=EpisodeCollate(*self.episode_shape(split)),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_mode == "batches":
            return self.base_class_loader()
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

    def on_after_batch_transfer(
        self, batch: EpisodeBatch | tuple[Tensor, Tensor], dataloader_idx: int
    ) -> EpisodeBatch | tuple[Tensor, Tensor]:
        """uint8 -> float in ``[0, 1]``; while training, ``augment`` (:meth:`augment_training`)."""
        if len(batch) == 2:  # a "batches" training batch (x, y)
            images, labels = batch
            out: tuple[Tensor, ...] = (images.float() / 255, labels)
        else:
            out = episode_to_float(batch)  # type: ignore[arg-type]
        if self.trainer is not None and self.trainer.training:
            out = self.augment_training(out)
        return out  # type: ignore[return-value]
