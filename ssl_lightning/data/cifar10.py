"""CIFAR-10 from the official python batches, held in memory as uint8."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ssl_lightning.data.base import ImageDataModule, ImageReader, Split

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
META_FILE = "batches.meta"


def _reader_class() -> type:
    """torchvision's CIFAR10 loader without its per-load md5 check.

    torchvision hashes all 170 MB on every construction and calls any mismatch "not found";
    we check the files' presence ourselves (a precise message) and let unpickling catch
    corruption. Downloads still go through torchvision's verified path.
    """
    from torchvision.datasets import CIFAR10

    class _CIFAR10Reader(CIFAR10):
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as infile:
                self.classes = pickle.load(infile, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return _CIFAR10Reader


class CIFAR10Reader(ImageReader):
    """Reads ``<root>/cifar-10-batches-py/`` through torchvision's own loader, downloading it if asked.

    Args:
        root: folder that contains (or will contain) ``cifar-10-batches-py/``.
        download: download the archive into ``root`` if it is missing (needs internet).
    """

    def __init__(self, root: str | Path = "data", download: bool = False) -> None:
        self.root = Path(root).expanduser()
        self.download = download

    def _check_files(self) -> None:
        folder = self.root / BATCH_FOLDER
        missing = [name for name in [*TRAIN_FILES, *TEST_FILES, META_FILE] if not (folder / name).is_file()]
        if not missing:
            return
        if not folder.is_dir():
            raise FileNotFoundError(
                f"CIFAR-10 not found: looked for the folder {folder}. Expected the official python batches "
                f"({BATCH_FOLDER}/data_batch_1..5, test_batch, batches.meta) under --data.root. "
                f"Pass --data.download true to download it there, or point --data.root at the folder "
                f"that contains {BATCH_FOLDER}/."
            )
        raise FileNotFoundError(
            f"CIFAR-10 under {folder} is incomplete: missing {', '.join(missing)}. Delete the folder and "
            f"re-run with --data.download true, or copy the missing files from the official archive."
        )

    def prepare(self) -> None:
        if self.download:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(self.root), train=True, download=True)
        self._check_files()

    def read(self, split: Split) -> tuple[Tensor, Tensor, list[str]]:
        self._check_files()
        try:
            dataset = _reader_class()(str(self.root), train=split == "train", download=False)
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError) as err:
            raise RuntimeError(
                f"CIFAR-10 under {self.root / BATCH_FOLDER} is corrupt or truncated ({type(err).__name__}: {err}). "
                f"Delete the folder and re-run with --data.download true."
            ) from err
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor(dataset.targets, dtype=torch.long)
        return images, labels, list(dataset.classes)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test 32x32 colour images.

    An :class:`ImageDataModule` reading with :class:`CIFAR10Reader`; its default batch size is 128.

    Example config::

        data:
          class_path: ssl_lightning.data.CIFAR10DataModule
          init_args: {root: data, download: false, labels_per_class: 100, batch_size: 128}

    The other arguments (``labels_per_class``, ``augment``, ``sampler``, ...) are
    :class:`ImageDataModule`'s, declared there once. ``**kwargs`` is not a hidden pass-through:
    it is forwarded to ``ImageDataModule.__init__`` only, whose typed parameters LightningCLI
    (jsonargparse) resolves into this class's signature, so ``--print_config`` lists every argument
    with its type and a misspelt key is an error.

    Args:
        root: folder that contains (or will contain) ``cifar-10-batches-py/``.
        download: download the archive into ``root`` if it is missing (needs internet).
        batch_size: examples per training batch (evaluation uses the same size).
        kwargs: the other :class:`ImageDataModule` arguments.
    """

    def __init__(self, root: str | Path = "data", download: bool = False, batch_size: int = 128, **kwargs: Any) -> None:
        super().__init__(reader=CIFAR10Reader(root, download), batch_size=batch_size, **kwargs)
