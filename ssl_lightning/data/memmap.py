"""Images held in a memory-mapped ``.npy`` file, read row by row: what an in-memory tensor would give.

:class:`MemmapImages` is the image array of a decoded cache (:mod:`ssl_lightning.data.decoded_cache`):
``uint8[N, C, H, W]`` rows that every DDP rank and DataLoader worker maps from the same file, so the
operating system holds one copy in its page cache instead of one private copy per process. Indexing
it reads rows into a tensor, as indexing a tensor does; :func:`take_rows` makes a lazy sub-view (the
labelled subset, the validation split) without reading anything. :func:`channel_stats` computes the
training mean/std in chunks for both kinds of image source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


class MemmapImages:
    """Read-only ``uint8[N, C, H, W]`` images in a ``.npy`` file, mapped with ``np.load(mmap_mode="r")``.

    Only the rows asked for are read: ``images[i]`` is a ``uint8[C, H, W]`` tensor, ``images[a:b]`` and
    ``images[index_tensor]`` are ``uint8[M, C, H, W]`` tensors (copies, as a tensor's advanced indexing
    gives), and :meth:`take` is a lazy view of some rows. Pickling keeps only the path and the row
    indices, so DataLoader workers and spawned ranks map the file themselves instead of receiving a copy.

    Args:
        path: a ``.npy`` file of ``uint8[N, C, H, W]``.
        rows: ``int64[M]`` rows of the file this view shows (``None``: all of them, in order).

    Example::

        images = MemmapImages("cache/train-1a2b/images.npy")
        batch = images[torch.tensor([3, 1, 4])]   # uint8[3, C, H, W], read from the page cache
        labelled = images.take(torch.arange(100))  # a view of 100 rows, nothing read yet
    """

    def __init__(self, path: str | Path, rows: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self._array: np.ndarray | None = None
        array = self.array
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError(f"{self.path} holds {array.dtype}{list(array.shape)}, not uint8[N, C, H, W].")
        self.rows = None if rows is None else np.ascontiguousarray(rows, dtype=np.int64)

    @property
    def array(self) -> np.ndarray:
        """The whole file as a read-only ``np.memmap`` (opened on first use in each process)."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.rows, self._array = state["path"], state["rows"], None

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.array.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.array) if self.rows is None else len(self.rows)

    def _file_rows(self, index: Any) -> Any:
        """``index`` into this view -> an int, a slice or an int64 array of rows of the file."""
        if isinstance(index, Tensor):
            index = index.numpy() if index.ndim else int(index)
        if isinstance(index, list | tuple):
            index = np.asarray(index, dtype=np.int64)
        if isinstance(index, np.ndarray) and index.dtype == np.bool_:
            if len(index) != len(self):
                raise IndexError(f"boolean index of length {len(index)} for {len(self)} images")
            index = np.flatnonzero(index)
        return index if self.rows is None else self.rows[index]

    def __getitem__(self, index: Any) -> Tensor:
        rows = self._file_rows(index)
        if isinstance(rows, np.ndarray) and rows.ndim == 1 and len(rows) > 1:
            # Read in file order (sequential pages), then restore the asked order.
            order = np.argsort(rows, kind="stable")
            out = np.empty((len(rows), *self.array.shape[1:]), np.uint8)
            out[order] = self.array[rows[order]]
            return torch.from_numpy(out)
        return torch.from_numpy(np.array(self.array[rows], dtype=np.uint8))

    def take(self, index: Tensor | np.ndarray) -> MemmapImages:
        """A lazy view of the rows ``index`` (``long[M]`` or ``bool[N]``) of this view; nothing is read."""
        rows = self._file_rows(np.asarray(index))
        if isinstance(rows, slice):
            rows = np.arange(len(self.array))[rows]
        view = MemmapImages.__new__(MemmapImages)
        view.path, view._array, view.rows = self.path, self._array, np.asarray(rows, dtype=np.int64).reshape(-1)
        return view

    def materialize(self) -> Tensor:
        """Every row of this view as one ``uint8[N, C, H, W]`` tensor in memory."""
        return self[slice(None)]

    def __repr__(self) -> str:
        return f"MemmapImages({str(self.path)!r}, shape={list(self.shape)})"


#: ``uint8[N, C, H, W]``: a tensor in memory or the rows of a memory-mapped cache.
Images = Tensor | MemmapImages


def take_rows(images: Images, index: Tensor) -> Images:
    """``images[index]`` that stays lazy for a :class:`MemmapImages` (a view) and is a tensor otherwise."""
    if isinstance(images, MemmapImages):
        return images.take(index)
    return images[index]


def as_tensor(images: Images) -> Tensor:
    """The images as one ``uint8[N, C, H, W]`` tensor in memory (reads a :class:`MemmapImages` whole)."""
    return images.materialize() if isinstance(images, MemmapImages) else images


def channel_stats(images: Images, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (unbiased) std of ``uint8[N, C, H, W]`` images scaled to ``[0, 1]``.

    Reads ``chunk`` images at a time (float64 sums), so neither a float copy of the whole set nor,
    for a memory-mapped cache, all of its pages are held at once.

    Returns:
        ``(mean: float[C], std: float[C])``.
    """
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    mean = total / max(count, 1)
    var = (squares - count * mean.square()) / max(count - 1, 1)
    return mean.float(), var.clamp_min(0).sqrt().float()
