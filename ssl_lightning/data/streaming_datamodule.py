"""DataModules over LitData chunks: :class:`StreamingImageDataModule` (classification, semi-supervised source)
and :class:`StreamingPool` (a source for :class:`~ssl_lightning.data.episodic.EpisodicDataModule`).

Both read a split written by ``ssl-lightning-data optimize`` (:mod:`ssl_lightning.data.streaming`). What
depends on labels (the validation split, the labelled pool, episodes) is chosen from the metadata's labels
with the in-memory code, so the same ``seed`` selects the same items as
:class:`~ssl_lightning.data.folder.ImageFolderDataModule` over the source folder; images are read only when
a batch needs them.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ssl_lightning.data.base import ImageDataModule, Split
from ssl_lightning.data.episodic.pools import LabelledPool, Pool
from ssl_lightning.data.streaming import ItemToTensors, StreamedImages, StreamingMetadata

log = logging.getLogger(__name__)


class StreamingImageDataModule(ImageDataModule):
    """An :class:`ImageDataModule` whose images stream from LitData chunks instead of living in memory.

    Batches are the in-memory DataModule's: the loaders give ``(x: uint8[B, C, H, W], y: long[B])`` and
    ``on_after_batch_transfer`` makes them ``float[B, C, H, W]`` (scaling, ``augment``, ``mix``,
    standardization: the same code on the device). Splits and the labelled pool (``val_size``,
    ``labels_per_class``, ``imbalance_ratio``, ``subset_file``/``save_subset``) are chosen from the
    metadata's labels exactly as in memory; the same ``seed`` picks the same items.

    Training batches (``sampler: random``, ``resample: none``) come from a ``litdata.StreamingDataLoader``
    over a shuffled ``StreamingDataset`` restricted to the training pool (``subset``): LitData shards it over
    DDP ranks and loader workers, reshuffles every epoch (seeded by ``seed``) and resumes mid-epoch from its
    ``state_dict`` (Lightning saves it in checkpoints; the epoch after a resumed one is a new one, see
    :mod:`~ssl_lightning.data.litdata_loader`). In a :class:`SemiSupervisedDataModule` the labelled and
    unlabelled pools stream the same way. What this does not support:

    * ``sampler: weighted | class_balanced`` and ``resample``: these draw indices, so training falls back to
      the in-memory index samplers reading items by random access (sharded by Lightning's
      ``DistributedSampler``, resumed by :class:`~ssl_lightning.data.resumable.ResumableDataLoader`).
    * LitData's order is its own: a streamed epoch is not the in-memory ``EpochSeededSampler``'s
      permutation, and resume needs the same ``num_workers`` and ``batch_size`` (LitData's rule; it
      re-stripes a changed world size only for plain datasets).
    * Under DDP LitData drops the items that do not fill a batch on every rank (``drop_last``).
    * ``mean``/``std`` for ``normalize`` come from ``stats_items`` pool images (all of them when the pool is
      smaller), accumulated in float64: equal to the in-memory statistics up to rounding.
    * Validation and test loaders read items by index (sequential, not sharded; Lightning's
      ``DistributedSampler`` splits them under DDP).
    * An object-store ``input_dir`` (``s3://...``) works through LitData but needs ``metadata_file`` (a local
      copy of ``ssl_lightning.json``); it is not tested here.

    Example config::

        data:
          class_path: ssl_lightning.data.streaming_datamodule.StreamingImageDataModule
          init_args: {input_dir: data/flowers_ld/train, test_input_dir: data/flowers_ld/test, val_size: 100,
                      labels_per_class: 20, batch_size: 64, num_workers: 4}

    Args:
        input_dir: the optimized training split (a folder, or a LitData URL).
        test_input_dir: the optimized test split; ``None``: no test images.
        cache_dir: LitData's cache for remote chunks (``None``: its default).
        metadata_file: a local copy of the training split's metadata (needed for URLs).
        stats_items: pool images the normalization statistics are computed from (``None``: all).
        val_size: validation images held out of the training split, stratified.
        kwargs: the other :class:`ImageDataModule` arguments.
    """

    def __init__(
        self,
        input_dir: str = "data/optimized/train",
        test_input_dir: str | None = None,
        cache_dir: str | None = None,
        metadata_file: str | None = None,
        stats_items: int | None = 10_000,
        val_size: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(val_size=val_size, **kwargs)
        self.input_dir = input_dir
        self.test_input_dir = test_input_dir
        self.cache_dir = cache_dir
        self.metadata_file = metadata_file
        self.stats_items = stats_items
        self.meta: StreamingMetadata | None = None

    def load_split(self, split: Split) -> tuple[StreamedImages, Tensor, list[str]]:  # type: ignore[override]
        """``(images: StreamedImages uint8[N, C, H, W], labels: long[N], class_names)``; reads only metadata."""
        if split == "train":
            self.meta = StreamingMetadata.load(self.input_dir, self.metadata_file)
            images = StreamedImages(self.input_dir, self.meta, cache_dir=self.cache_dir)
            return images, images.labels, list(self.meta.class_names)
        assert self.meta is not None, "load_split('train') comes first"
        if self.test_input_dir is None:
            empty = StreamedImages(self.input_dir, self.meta, torch.empty(0, dtype=torch.long), self.cache_dir)
            return empty, empty.labels, list(self.meta.class_names)
        test = StreamedImages(self.test_input_dir, cache_dir=self.cache_dir)
        if test.meta.class_names != self.meta.class_names or test.meta.shape != self.meta.shape:
            raise ValueError(
                f"Test split {self.test_input_dir} has classes/shape {test.meta.class_names[:3]}.../{test.meta.shape}, "
                f"the training split {self.meta.class_names[:3]}.../{self.meta.shape}. Optimize both from the same "
                f"class folders with the same --image-size."
            )
        return test, test.labels, list(self.meta.class_names)

    def source_description(self) -> str:
        return f" (streamed from {self.input_dir})"

    def pool_statistics(self, pool: StreamedImages, chunk: int = 512) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std (unbiased, as ``Tensor.std``) of ``stats_items`` pool images, in ``[0, 1]``."""
        positions = torch.arange(len(pool))
        if self.stats_items is not None and len(pool) > self.stats_items:
            generator = torch.Generator().manual_seed(self.seed)
            positions = torch.randperm(len(pool), generator=generator)[: self.stats_items].sort().values
        total = torch.zeros(pool.shape[1], dtype=torch.float64)
        squares = torch.zeros_like(total)
        for start in range(0, len(positions), chunk):
            x = pool[positions[start : start + chunk]].double() / 255
            total += x.sum(dim=(0, 2, 3))
            squares += (x * x).sum(dim=(0, 2, 3))
        count = len(positions) * pool.shape[2] * pool.shape[3]
        mean = total / count
        var = (squares - count * mean * mean) / max(count - 1, 1)
        return mean.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-6)

    def streaming_loader(
        self, pool: Literal["labelled", "all"], batch_size: int, seed_offset: int = 0, with_index: bool = False
    ) -> DataLoader:
        """A ``litdata.StreamingDataLoader`` over a shuffled pool: ``(uint8[B, C, H, W], long[B])`` batches.

        (:class:`~ssl_lightning.data.litdata_loader.ResumableStreamingDataLoader`: resumes exactly under Lightning.)

        Args:
            pool: ``"labelled"`` or ``"all"`` (the unlabelled pool: every non-validation training image).
            batch_size: images per batch.
            seed_offset: added to ``seed`` for LitData's shuffle (two pools, two orders).
            with_index: add ``index: long[B]``, each image's position in the pool.
        """
        from litdata import StreamingDataset

        from ssl_lightning.data.litdata_loader import ResumableStreamingDataLoader

        if not self.datasets:
            self.setup("fit")
        assert self.meta is not None
        images: StreamedImages = self.datasets[pool].images  # type: ignore[assignment]
        indices = images.indices.sort().values
        positions = None
        if with_index:
            positions = torch.full((self.meta.num_items,), -1, dtype=torch.long)
            positions[images.indices] = torch.arange(len(images.indices))
        stream = StreamingDataset(
            self.input_dir,
            cache_dir=self.cache_dir,
            shuffle=True,
            seed=self.seed + seed_offset,
            transform=ItemToTensors(self.meta, positions),
        )
        if len(indices) < self.meta.num_items:
            stream = stream.subset(indices.tolist())
        return ResumableStreamingDataLoader(stream, batch_size=batch_size, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        if self.sampler != "random" or self.resample != "none":
            return super().train_dataloader()  # index samplers over random access (see the class docstring)
        return self.streaming_loader(self.train_pool, self.batch_size)


class StreamingPool(LabelledPool):
    """A LitData split as an episodic pool: episodes are drawn from the metadata's labels, items read by index.

    For :class:`~ssl_lightning.data.episodic.EpisodicDataModule` (``source:``); episodes, their DDP split and
    exact resume are the episodic DataModule's own (:class:`~ssl_lightning.data.episodic.EpisodeSampler`), so
    LitData only serves the reads. ``image_size``/``channels`` of the episodic DataModule must be ``null`` or
    match the optimized images (re-run ``optimize --image-size`` to change them).

    Example config::

        data:
          class_path: ssl_lightning.data.episodic.EpisodicDataModule
          init_args:
            source: {class_path: ssl_lightning.data.streaming_datamodule.StreamingPool,
                     init_args: {input_dir: data/omniglot_ld}}
            n_way: 5
            k_shot: 1

    Args:
        input_dir: the optimized split (a folder, or a LitData URL).
        cache_dir: LitData's cache for remote chunks.
        metadata_file: a local copy of the split's metadata (needed for URLs).
    """

    def __init__(
        self, input_dir: str = "data/optimized/train", cache_dir: str | None = None, metadata_file: str | None = None
    ) -> None:
        self.input_dir = input_dir
        self.cache_dir = cache_dir
        self.metadata_file = metadata_file

    def load_pool(self) -> Pool:
        meta = StreamingMetadata.load(self.input_dir, self.metadata_file)
        images = StreamedImages(self.input_dir, meta, cache_dir=self.cache_dir)
        return images, images.labels, list(meta.class_names)  # type: ignore[return-value]
