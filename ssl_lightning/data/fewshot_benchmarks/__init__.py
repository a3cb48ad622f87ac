"""The standard few-shot image benchmarks, read from the files their public releases ship.

Each is a :class:`~ssl_lightning.data.episodic.LabelledPool` with the benchmark's own class split,
so it plugs into :class:`~ssl_lightning.data.episodic.EpisodicDataModule` as ``source``:

* :class:`MiniImageNet` (Vinyals et al. 2016; Ravi & Larochelle 2017 split, 64/16/20 classes) in its
  three common layouts: split CSVs + ``images/``, per-split wnid folders, pickled caches.
* :class:`TieredImageNet` (Ren et al. 2018, 351/97/160 classes): ``*_images_png.pkl`` or ``*_images.npz``
  with ``*_labels.pkl``.
* :class:`CIFARFS` (Bertinetto et al. 2019, 64/16/20) and :class:`FC100` (Oreshkin et al. 2018,
  superclasses 12/4/4) built from CIFAR-100's official python pickles (``cifar-100-python/``).
* :class:`CUB200` (Wah et al. 2011) with the Closer-Look split (Chen et al. 2019, 100/50/50).

Each also comes as a DataModule taking the release folder as ``root`` (:mod:`.datamodules`):
:class:`MiniImageNetDataModule`, :class:`TieredImageNetDataModule`, :class:`CIFARFSDataModule`,
:class:`FC100DataModule`, :class:`CUB200DataModule` (``--data.init_args.root ~/data/miniimagenet``).

Example config (miniImageNet 5-way 1-shot episodes, the reader as a source)::

    data:
      class_path: ssl_lightning.data.episodic.EpisodicDataModule
      init_args:
        source:
          class_path: ssl_lightning.data.fewshot_benchmarks.MiniImageNet
          init_args: {root: data/miniimagenet, image_size: 84}
        n_way: 5
        k_shot: 1
"""

from ssl_lightning.data.fewshot_benchmarks.cifar100_splits import CIFARFS, FC100
from ssl_lightning.data.fewshot_benchmarks.common import SplitBenchmark
from ssl_lightning.data.fewshot_benchmarks.cub import CUB200
from ssl_lightning.data.fewshot_benchmarks.datamodules import (
    BenchmarkDataModule,
    CIFAR100SplitDataModule,
    CIFARFSDataModule,
    CUB200DataModule,
    FC100DataModule,
    MiniImageNetDataModule,
    TieredImageNetDataModule,
)
from ssl_lightning.data.fewshot_benchmarks.miniimagenet import MiniImageNet
from ssl_lightning.data.fewshot_benchmarks.tieredimagenet import TieredImageNet

__all__ = [
    "BenchmarkDataModule",
    "CIFAR100SplitDataModule",
    "CIFARFS",
    "CIFARFSDataModule",
    "CUB200",
    "CUB200DataModule",
    "FC100",
    "FC100DataModule",
    "MiniImageNet",
    "MiniImageNetDataModule",
    "SplitBenchmark",
    "TieredImageNet",
    "TieredImageNetDataModule",
]
