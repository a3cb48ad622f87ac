"""The few-shot benchmarks as DataModules: ``--data.init_args.root`` names the release folder.

Each class is :class:`~ssl_lightning.data.episodic.EpisodicDataModule` with its ``source`` built from
the benchmark's reader (:mod:`ssl_lightning.data.fewshot_benchmarks`) and the benchmark's own class
split. ``**kwargs`` is not a hidden pass-through: it goes to ``EpisodicDataModule.__init__`` only,
whose typed parameters LightningCLI (jsonargparse) resolves into each class's signature, so
``--print_config`` lists every episode, ``train_mode``, ``batch_size`` and ``augment`` argument and a
misspelt key is an error. The arguments that cannot apply to a release with a fixed split and its own
files (``class_depth``, ``class_split``, ``download`` of Omniglot) are fixed here and so not offered.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from ssl_lightning.data.episodic import EpisodicDataModule, LabelledPool
from ssl_lightning.data.fewshot_benchmarks.cifar100_splits import CIFARFS, FC100
from ssl_lightning.data.fewshot_benchmarks.cub import CUB200
from ssl_lightning.data.fewshot_benchmarks.miniimagenet import MiniImageNet
from ssl_lightning.data.fewshot_benchmarks.tieredimagenet import TieredImageNet


class BenchmarkDataModule(EpisodicDataModule):
    """An :class:`EpisodicDataModule` over a benchmark reader whose release fixes the class split.

    Example config: see the benchmark classes below (this base takes a built reader).

    Args:
        source: the benchmark's reader (a :class:`LabelledPool` with its own :meth:`~LabelledPool.class_split`).
        kwargs: the other :class:`EpisodicDataModule` arguments.
    """

    def __init__(self, source: LabelledPool, **kwargs: Any) -> None:
        # the release's split and files: class_split and class_depth do not apply, download is the reader's
        super().__init__(source=source, class_depth=1, class_split=(0.6, 0.2, 0.2), download=False, **kwargs)


class MiniImageNetDataModule(BenchmarkDataModule):
    """miniImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split, 64/16/20 classes of 600 images).

    Reads :class:`MiniImageNet` from ``root`` in whichever layout it holds (detected, and logged):
    ``mini-imagenet-cache-{train,val,test}.pkl`` (pickled caches, as learn2learn and many repositories
    distribute them); ``{train,val,test}/<wnid>/*.jpg`` (what the MAML reference code's
    ``proc_images.py`` writes); or Ravi & Larochelle's ``train.csv``/``val.csv``/``test.csv`` with one
    flat ``images/`` folder. No official mirror exists, so there is no download: get the files from the
    MAML/Ravi & Larochelle instructions (CSV + ImageNet), or a repository that ships the pickles.

    Example config (RFS-style pretraining on the base classes, 5-way 1-shot evaluation)::

        data:
          class_path: ssl_lightning.data.fewshot_benchmarks.MiniImageNetDataModule
          init_args: {root: data/miniimagenet, train_mode: batches, batch_size: 64, n_way: 5, k_shot: 1}

    Args:
        root: the folder holding one of the layouts above.
        image_size: side of the square images (84 is the benchmark's; ``None`` keeps the files' size).
        layout: ``"auto"`` picks the first layout found in the order pickle, folders, csv.
        kwargs: the other :class:`EpisodicDataModule` arguments (``n_way``, ``k_shot``, ``train_mode``, ...).
    """

    def __init__(
        self,
        root: str,
        image_size: int | None = 84,
        layout: Literal["auto", "pickle", "folders", "csv"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(MiniImageNet(root, image_size, layout), **kwargs)


class TieredImageNetDataModule(BenchmarkDataModule):
    """tieredImageNet (Ren et al. 2018): 608 ImageNet classes split by category into 351/97/160 classes.

    Reads :class:`TieredImageNet` from ``root``: Ren et al.'s release (``few-shot-ssl-public``),
    ``{train,val,test}_images_png.pkl`` with ``{split}_labels.pkl`` (a ``tiered-imagenet/`` folder inside
    ``root`` is found too), or the decoded ``{split}_images.npz`` form that MetaOptNet, RFS and
    Meta-Baseline use. The training split is ~16.5 GB as uint8 in memory; there is no download (the
    release is a Google Drive archive: see the repository of Ren et al.).

    Example config::

        data:
          class_path: ssl_lightning.data.fewshot_benchmarks.TieredImageNetDataModule
          init_args: {root: data/tiered-imagenet, train_mode: batches, batch_size: 64}

    Args:
        root: the folder with the files above (or its parent holding ``tiered-imagenet/``).
        image_size: side of the square images (``None`` keeps 84).
        kwargs: the other :class:`EpisodicDataModule` arguments (``n_way``, ``k_shot``, ``train_mode``, ...).
    """

    def __init__(self, root: str, image_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(TieredImageNet(root, image_size), **kwargs)


class CIFAR100SplitDataModule(BenchmarkDataModule):
    """A few-shot split of CIFAR-100, read from its official python pickles.

    The files are ``root/cifar-100-python/{train,test,meta}`` (torchvision's download folder; ``download: true``
    fetches them with torchvision first). The split is the class attribute ``reader``:
    :class:`CIFARFSDataModule` and :class:`FC100DataModule` below.

    Example config: see those two classes.

    Args:
        root: the folder holding ``cifar-100-python/``.
        image_size: resize from 32x32 (``None`` keeps 32).
        download: fetch CIFAR-100 with torchvision into ``root`` first (needs internet).
        kwargs: the other :class:`EpisodicDataModule` arguments (``n_way``, ``k_shot``, ``train_mode``, ...).
    """

    #: The reader of the split (a subclass of the CIFAR-100 split readers).
    reader: ClassVar[type[CIFARFS] | type[FC100]] = CIFARFS

    def __init__(self, root: str = "data", image_size: int | None = None, download: bool = False, **kwargs: Any):
        super().__init__(self.reader(root, image_size, download), **kwargs)


class CIFARFSDataModule(CIFAR100SplitDataModule):
    """CIFAR-FS (Bertinetto et al. 2019): CIFAR-100 split by fine class into 64/16/20 classes of 600 images.

    Reads :class:`CIFARFS` from ``root/cifar-100-python/``; arguments as :class:`CIFAR100SplitDataModule`.

    Example config::

        data:
          class_path: ssl_lightning.data.fewshot_benchmarks.CIFARFSDataModule
          init_args: {root: data, train_mode: batches, batch_size: 64, n_way: 5, k_shot: 5}
    """

    reader = CIFARFS


class FC100DataModule(CIFAR100SplitDataModule):
    """FC100 (Oreshkin et al. 2018): CIFAR-100 split by superclass into 12/4/4 superclasses (60/20/20 classes).

    Reads :class:`FC100` from ``root/cifar-100-python/``; arguments as :class:`CIFAR100SplitDataModule`.

    Example config::

        data:
          class_path: ssl_lightning.data.fewshot_benchmarks.FC100DataModule
          init_args: {root: data, n_way: 5, k_shot: 1}
    """

    reader = FC100


class CUB200DataModule(BenchmarkDataModule):
    """CUB-200-2011 (Wah et al. 2011) with the Closer-Look split (Chen et al. 2019): 100/50/50 bird species.

    Reads :class:`CUB200` from the official archive ``CUB_200_2011.tgz``, extracted:
    ``CUB_200_2011/images/<NNN.Species>/*.jpg`` (``root`` may be the folder holding ``CUB_200_2011/``,
    that folder, or its ``images/``). Whole images resized to ``image_size`` squares (no bounding-box
    crop), as in the Closer-Look protocol; also the target of miniImageNet -> CUB cross-domain tests.

    Example config::

        data:
          class_path: ssl_lightning.data.fewshot_benchmarks.CUB200DataModule
          init_args: {root: data, image_size: 84, n_way: 5, k_shot: 5}

    Args:
        root: see above.
        image_size: side of the square images.
        kwargs: the other :class:`EpisodicDataModule` arguments (``n_way``, ``k_shot``, ``train_mode``, ...).
    """

    def __init__(self, root: str, image_size: int | None = 84, **kwargs: Any) -> None:
        super().__init__(CUB200(root, image_size), **kwargs)
