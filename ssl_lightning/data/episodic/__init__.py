"""Few-shot episodes: labelled pools, class-disjoint splits, seeded episode sampling and the episodic DataModule.

The package holds :mod:`.pools` (sources of labelled images: folder trees, DataModules,
:class:`LabelledPool`), :mod:`.splits` (class-disjoint train/val/test splits, split files),
:mod:`.sampling` (which items form each N-way K-shot episode; fixed seeded evaluation episodes;
DDP-aware :class:`EpisodeSampler`), :mod:`.batch` (the episode dataset, collation and
:data:`EpisodeBatch`), :mod:`.base_batches` (the ``train_mode: batches`` loader over the base classes and
training-only augmentation) and :mod:`.datamodule` (:class:`EpisodicDataModule`). Every name is
re-exported here, so configs keep ``class_path: ssl_lightning.data.episodic.EpisodicDataModule``.
"""

from ssl_lightning.data.episodic.base_batches import TRAIN_MODES, BaseClassBatches, BaseClassDataset, TrainMode
from ssl_lightning.data.episodic.batch import EpisodeBatch, EpisodeCollate, EpisodeDataset, episode_to_float
from ssl_lightning.data.episodic.datamodule import EVAL_STREAMS, EpisodicDataModule
from ssl_lightning.data.episodic.pools import (
    OMNIGLOT_PARTS,
    LabelledPool,
    Pool,
    load_source_pool,
    match_channels,
    pool_from_datamodule,
    read_folder_pool,
    resize_images,
)
from ssl_lightning.data.episodic.sampling import (
    EpisodeSampler,
    check_episode_request,
    distributed_rank_and_size,
    episode_labels,
    episodes_per_rank,
    group_by_class,
    mix_seed,
    rank_share,
    sample_episodes,
)
from ssl_lightning.data.episodic.splits import SPLITS, split_classes, split_classes_from_file

__all__ = [
    "EVAL_STREAMS",
    "OMNIGLOT_PARTS",
    "SPLITS",
    "TRAIN_MODES",
    "BaseClassBatches",
    "BaseClassDataset",
    "EpisodeBatch",
    "EpisodeCollate",
    "EpisodeDataset",
    "EpisodeSampler",
    "EpisodicDataModule",
    "LabelledPool",
    "Pool",
    "TrainMode",
    "check_episode_request",
    "distributed_rank_and_size",
    "episode_labels",
    "episode_to_float",
    "episodes_per_rank",
    "group_by_class",
    "load_source_pool",
    "match_channels",
    "mix_seed",
    "pool_from_datamodule",
    "rank_share",
    "read_folder_pool",
    "resize_images",
    "sample_episodes",
    "split_classes",
    "split_classes_from_file",
]
