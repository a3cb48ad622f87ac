"""Images in a folder per class (PNG/JPG), read once with PIL into uint8 tensors.

:func:`read_image_tree` is the reader (also used by the few-shot Omniglot loader);
:class:`ImageFolderDataModule` is the DataModule over it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssl_lightning.data.base import ImageDataModule, ImageReader, Split
from ssl_lightning.data.memmap import Images, take_rows
from ssl_lightning.data.splits import stratified_split

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _class_dirs(root: Path, class_depth: int) -> list[Path]:
    """Directories exactly ``class_depth`` levels below ``root``, sorted by relative path."""
    level = [root]
    for _ in range(class_depth):
        level = sorted(child for parent in level for child in parent.iterdir() if child.is_dir())
    return level


def decode_image(source: Path | bytes, image_size: int | None, colour: bool = False, name: str = "") -> np.ndarray:
    """One image file (a path, or its encoded bytes as some benchmark releases store them) as uint8[H, W]
    (grey) or uint8[H, W, 3] (colour; ``colour`` converts grey files too); names the file on any failure."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()  # decode now: a truncated file fails here, not later
            mode = "L" if image.mode in GREY_MODES and not colour else "RGB"
            image = image.convert(mode)
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise ValueError(
            f"Cannot read image {name or source}: {type(err).__name__}: {err}. The file is corrupt, truncated or "
            f"not an image; delete or replace it."
        ) from err


def to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """A decoded image (uint8[H, W] grey or uint8[H, W, 3]) -> uint8[channels, H, W]: grey is repeated to RGB,
    RGB becomes ITU-R 601-2 luma (as PIL's ``convert("L")``)."""
    if array.ndim == 2:
        return array[None] if channels == 1 else np.repeat(array[None], 3, axis=0)
    array = array.transpose(2, 0, 1)
    if channels == 1:
        array = array.astype(np.float32) * np.array([0.299, 0.587, 0.114], np.float32)[:, None, None]
        array = array.sum(axis=0, keepdims=True).round().clip(0, 255).astype(np.uint8)
    return array


def _image_files(folder: Path) -> list[str]:
    """Paths of the image files anywhere below ``folder``, in ``sorted(folder.rglob("*"))``'s order (by path
    components; symlinked folders not followed). Strings, not ``Path`` objects: with ``os.scandir`` reading
    the file types from the directory, this lists 50,000 files in a fraction of a second."""
    found: list[str] = []
    pending = [str(folder)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(entry.path)
    return sorted(found, key=lambda path: path.split(os.sep))


def list_image_tree(root: Path, class_depth: int = 1) -> tuple[list[str], list[int], list[str]]:
    """The image files of ``root/<class>/**`` in reading order: ``(files, labels, class_names)``.

    Classes are sorted by relative path and labelled ``0..K-1``, files sorted by path within a class
    (the order :func:`read_image_tree`, the decoded cache and the LitData writer all use). Files are
    path strings (``Path`` objects cost more than the listing itself for large folders).

    Raises:
        FileNotFoundError: no class folders ``class_depth`` levels below ``root``.
        ValueError: a class folder without images.
    """
    class_dirs = _class_dirs(root, class_depth)
    if not class_dirs:
        raise FileNotFoundError(
            f"No class folders {class_depth} level(s) below {root}. Expected {root}/"
            + "/".join(["<class>"] * class_depth)
            + "/<image>.png."
        )
    files: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    for label, folder in enumerate(class_dirs):
        found = _image_files(folder)
        if not found:
            raise ValueError(
                f"Class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}). "
                f"Remove the folder or add images to it."
            )
        names.append(folder.relative_to(root).as_posix())
        files += found
        labels += [label] * len(found)
    return files, labels, names


def check_tree_arguments(root: str | Path, class_depth: int, channels: int | None) -> Path:
    """``root`` expanded, after checking the arguments every reader of a class folder tree takes."""
    root = Path(root).expanduser()
    if class_depth < 1:
        raise ValueError(f"class_depth must be >= 1, got {class_depth}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or null, got {channels}")
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist. Point root at a folder of class folders.")
    return root


def read_image_tree(
    root: Path, class_depth: int = 1, image_size: int | None = None, channels: int | None = None
) -> tuple[Tensor, Tensor, list[str]]:
    """Read ``root/<class>/**/*.{png,jpg,...}`` into memory.

    Args:
        root: the folder whose sub-folders are the classes.
        class_depth: how many folder levels name a class. ``1``: ``root/<class>/*.png``;
            ``2``: ``root/<alphabet>/<character>/*.png`` (Omniglot), classes named
            ``"alphabet/character"``. Images are collected recursively below a class folder.
        image_size: resize every image to ``image_size x image_size`` (bilinear). ``None``
            keeps the files' size, which must then be the same for all images.
        channels: ``1`` (grey) or ``3`` (RGB). ``None``: 1 if every image is grey, else 3.

    Returns:
        ``(images: uint8[N, C, H, W], labels: long[N], class_names)``; classes are sorted by
        name and labelled ``0..K-1``, images sorted by path within a class.

    Raises:
        FileNotFoundError: ``root`` is missing or has no class folders.
        ValueError: a class folder without images, a corrupt/truncated file (named), images of
            different sizes without ``image_size``, or a bad argument.
    """
    root = check_tree_arguments(root, class_depth, channels)
    files, labels, names = list_image_tree(root, class_depth)
    arrays: list[np.ndarray] = []
    for path in files:
        array = decode_image(path, image_size)
        if arrays and array.shape[:2] != arrays[0].shape[:2]:
            raise ValueError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but earlier images are "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}. Set image_size to resize all images to one size."
            )
        arrays.append(array)
    out_channels = channels if channels is not None else (1 if all(a.ndim == 2 for a in arrays) else 3)
    converted = [to_channels(array, out_channels) for array in arrays]
    images = torch.from_numpy(np.stack(converted)).contiguous()
    return images, torch.tensor(labels, dtype=torch.long), names


class ImageFolderReader(ImageReader):
    """Reads ``<root>/<train_dir>`` (and ``<root>/<test_dir>`` if it exists) with :func:`read_image_tree`.

    Args:
        root: the dataset folder.
        train_dir: sub-folder with the training classes.
        test_dir: sub-folder with the test classes; ``None`` or a missing folder: split off ``test_size``.
        test_size: test images held out of the training folder when there is no test folder.
        class_depth: folder levels that name a class (see :func:`read_image_tree`).
        image_size: resize to ``image_size x image_size``; ``None`` keeps the files' (common) size.
        channels: 1 (grey), 3 (RGB) or ``None`` (grey only if every image is grey).
        split_seed: seed of the train/test split when there is no test folder.
        cache_dir: keep the decoded images in a memory-mapped cache there
            (:mod:`~ssl_lightning.data.decoded_cache`); ``None`` decodes into memory on every run.
        cache_workers: processes that decode a cache build (``None``: every CPU this process may use).
    """

    def __init__(
        self,
        root: str | Path = "data",
        train_dir: str = "train",
        test_dir: str | None = "test",
        test_size: int = 0,
        class_depth: int = 1,
        image_size: int | None = None,
        channels: int | None = None,
        split_seed: int = 0,
        cache_dir: str | Path | None = None,
        cache_workers: int | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.train_dir = train_dir
        self.test_dir = test_dir
        self.test_size = test_size
        self.class_depth = class_depth
        self.image_size = image_size
        self.channels = channels
        self.split_seed = split_seed
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.cache_workers = cache_workers
        self._cache: tuple[Images, Tensor, list[str]] | None = None
        self._opened: dict[str, tuple[Images, Tensor, list[str]]] = {}  # caches mapped in prepare()

    def _has_test_folder(self) -> bool:
        return self.test_dir is not None and (self.root / self.test_dir).is_dir()

    def _folders(self) -> list[str]:
        return [self.train_dir] + ([self.test_dir] if self._has_test_folder() and self.test_dir else [])

    def prepare(self) -> None:
        """Build the decoded caches (once per node, in ``prepare_data``); other ranks wait on their lock."""
        if self.cache_dir is not None:
            for folder in self._folders():
                self._opened[folder] = self._read(folder)

    def _read(self, folder: str) -> tuple[Images, Tensor, list[str]]:
        if folder in self._opened:  # mapped by prepare() in this process a moment ago
            return self._opened.pop(folder)
        if self.cache_dir is None:
            return read_image_tree(self.root / folder, self.class_depth, self.image_size, self.channels)
        from ssl_lightning.data.decoded_cache import cached_image_tree  # it builds on this module's reader

        return cached_image_tree(
            self.root / folder, self.cache_dir, self.class_depth, self.image_size, self.channels, self.cache_workers
        )

    def read(self, split: Split) -> tuple[Images, Tensor, list[str]]:
        if self._cache is None:
            self._cache = self._read(self.train_dir)
        images, labels, names = self._cache
        if self._has_test_folder():
            if split == "train":
                return images, labels, names
            assert self.test_dir is not None
            test_images, test_labels, test_names = self._read(self.test_dir)
            unknown = sorted(set(test_names) - set(names))
            if unknown:
                raise ValueError(
                    f"Test classes {unknown} under {self.root / self.test_dir} have no training folder under "
                    f"{self.root / self.train_dir}. Use the same class folders in both."
                )
            if test_images.shape[1:] != images.shape[1:]:
                raise ValueError(
                    f"Test images are {list(test_images.shape[1:])} but training images {list(images.shape[1:])}. "
                    f"Set image_size and channels."
                )
            remap = torch.tensor([names.index(n) for n in test_names])
            return test_images, remap[test_labels], names
        if self.test_size == 0:
            if split == "test":
                return images[:0], labels[:0], names
            return images, labels, names
        train_idx, test_idx = stratified_split(labels, self.test_size, self.split_seed)
        idx = train_idx if split == "train" else test_idx
        return take_rows(images, idx), labels[idx], names


class ImageFolderDataModule(ImageDataModule):
    """Any folder of class folders, like ``torchvision.datasets.ImageFolder``, in memory or memory-mapped.

    Layout: ``<root>/<train_dir>/<class>/*.png`` and optionally ``<root>/<test_dir>/<class>/*.png``.
    Without a test folder, ``test_size`` images are held out of the training folder by a seeded
    stratified split (``split_seed``). Batches are ``(x: float[B, C, H, W], y: long[B])``.

    By default every image is decoded into memory on every run (and in every DDP rank). With
    ``cache_dir`` the first run decodes the folders in parallel into a cache there and later runs,
    ranks and loader workers map it (``np.load(mmap_mode="r")``), reading only the rows a batch needs;
    a changed folder or other ``image_size``/``channels`` is detected and decoded again.

    Example config::

        data:
          class_path: ssl_lightning.data.folder.ImageFolderDataModule
          init_args: {root: data/flowers, image_size: 64, channels: 3, val_size: 100, labels_per_class: 20,
                      cache_dir: data/cache}

    An :class:`ImageDataModule` reading with :class:`ImageFolderReader`; its default ``val_size`` is 0.
    The other arguments are :class:`ImageDataModule`'s, declared there once. ``**kwargs`` is not a
    hidden pass-through: it goes to ``ImageDataModule.__init__`` only, whose typed parameters
    LightningCLI (jsonargparse) resolves into this signature, so a misspelt key is an error.

    Args:
        root: the dataset folder.
        train_dir: sub-folder with the training classes.
        test_dir: sub-folder with the test classes (``None``/missing: split off ``test_size``).
        test_size: test images held out of the training folder when there is no test folder.
        class_depth: folder levels that name a class (see :func:`read_image_tree`).
        image_size: resize to ``image_size x image_size``; ``None`` keeps the common size.
        channels: 1 (grey), 3 (RGB) or ``None`` (grey only if every image is grey).
        split_seed: seed of the train/test split without a test folder.
        val_size: validation images held out of the training images, stratified.
        cache_dir: decode the folders once into a memory-mapped cache in this folder
            (:mod:`~ssl_lightning.data.decoded_cache`), shared by runs, DDP ranks and loader workers;
            ``None`` reads every image into memory on every run.
        cache_workers: processes that decode a cache build (``None``: every CPU this process may use).
        kwargs: the other :class:`ImageDataModule` arguments.
    """

    def __init__(
        self,
        root: str | Path = "data",
        train_dir: str = "train",
        test_dir: str | None = "test",
        test_size: int = 0,
        class_depth: int = 1,
        image_size: int | None = None,
        channels: int | None = None,
        split_seed: int = 0,
        val_size: int = 0,
        cache_dir: str | None = None,
        cache_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        reader = ImageFolderReader(
            root,
            train_dir,
            test_dir,
            test_size,
            class_depth,
            image_size,
            channels,
            split_seed,
            cache_dir,
            cache_workers,
        )
        super().__init__(reader=reader, val_size=val_size, **kwargs)
