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
    """Read-only ``uint8[N, C, H, W]`` images in a ``.npy`` file, mapped with ``np.load(mmap_mode=...)``.

    Only the rows asked for are read, as from a tensor: ``images[i]`` and ``images[a:b]`` are views of
    the mapped pages (no copy), ``images[index_tensor]`` a ``uint8[M, C, H, W]`` copy of those rows, and
    :meth:`take` a lazy view of some rows (nothing read). Pickling keeps only the path and the row
    indices, so DataLoader workers and spawned ranks map the file themselves instead of receiving a copy.

    The file is mapped copy-on-write (``mmap_mode="c"``): while pages are only read they are the page
    cache's, shared by every process, exactly as with ``"r"``; a stray in-place write changes this
    process's copy (as it would change an in-memory tensor) instead of crashing on a read-only page, and
    never the file.

    Args:
        path: a ``.npy`` file of ``uint8[N, C, H, W]``.
        rows: ``int64[M]`` rows of the file this view shows (``None``: all of them, in order).

    Example::

        images = MemmapImages("cache/train-1a2b/images.npy")
        batch = images[torch.tensor([3, 1, 4])]   # uint8[3, C, H, W], read from the page cache
        labelled = images.take(torch.arange(100))  # a view of 100 rows, nothing read yet
    """

    def __init__(self, path: str | Path, rows: np.ndarray | Tensor | None = None) -> None:
        self.path = Path(path)
        self._tensor: Tensor | None = None
        if self.tensor.dtype != torch.uint8 or self.tensor.ndim != 4:
            raise ValueError(f"{self.path} holds {self.tensor.dtype}{list(self.tensor.shape)}, not uint8[N, C, H, W].")
        #: int64[M] rows of the file in this view, or ``None`` for all (a numpy array: cheap to index by an int)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)

    @property
    def tensor(self) -> Tensor:
        """The whole file as a tensor over the mapped pages (mapped on first use in each process)."""
        if self._tensor is None:
            self._tensor = torch.from_numpy(np.load(self.path, mmap_mode="c"))
        return self._tensor

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.rows, self._tensor = state["path"], state["rows"], None

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.tensor.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.tensor) if self.rows is None else len(self.rows)

    def _file_rows(self, index: Any) -> int | slice | np.ndarray:
        """``index`` into this view -> an int, a slice or an int64 array of rows of the file."""
        if isinstance(index, Tensor):
            index = index.numpy()
        if isinstance(index, list | tuple):
            index = np.asarray(index)
        if isinstance(index, np.ndarray):
            if index.dtype == np.bool_:
                if len(index) != len(self):
                    raise IndexError(f"boolean index of length {len(index)} for {len(self)} images")
                index = np.flatnonzero(index)
            if index.ndim == 0:
                index = int(index)
        if self.rows is None:
            return index
        return int(self.rows[index]) if isinstance(index, int) else self.rows[index]

    def __getitem__(self, index: Any) -> Tensor:
        tensor = self.tensor
        if type(index) is int:  # the DataLoader's per-item path, kept short
            return tensor[index if self.rows is None else self.rows[index]]
        rows = self._file_rows(index)
        return tensor[torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows]

    def take(self, index: Tensor | np.ndarray) -> MemmapImages:
        """A lazy view of the rows ``index`` (``long[M]`` or ``bool[N]``) of this view; nothing is read."""
        rows = self._file_rows(np.asarray(index))
        view = MemmapImages.__new__(MemmapImages)
        view.path, view._tensor = self.path, self._tensor
        view.rows = np.arange(len(self.tensor))[rows] if isinstance(rows, slice) else np.asarray(rows).reshape(-1)
        return view

    def materialize(self) -> Tensor:
        """Every row of this view as one ``uint8[N, C, H, W]`` tensor in memory (a copy)."""
        return self.tensor.clone() if self.rows is None else self.tensor[torch.from_numpy(self.rows)]

    def __repr__(self) -> str:
        return f"MemmapImages({str(self.path)!r}, shape={list(self.shape)})"


#: ``uint8[N, C, H, W]``: a tensor in memory or the rows of a memory-mapped cache.
Images = Tensor | MemmapImages


def take_rows(images: Images, index: Tensor) -> Images:
    """``images[index]`` that stays lazy for a :class:`MemmapImages` (a view) or any lazy source with a
    ``subset(index)`` view (LitData's ``StreamedImages``), and is a tensor otherwise."""
    if isinstance(images, MemmapImages):
        return images.take(index)
    if callable(getattr(images, "subset", None)):
        return images.subset(index)
    return images[index]


def as_tensor(images: Images) -> Tensor:
    """The images as one ``uint8[N, C, H, W]`` tensor in memory (reads a :class:`MemmapImages` whole)."""
    return images.materialize() if isinstance(images, MemmapImages) else images


def channel_stats(images: Images, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (unbiased) std of ``uint8[N, C, H, W]`` images scaled to ``[0, 1]``.

    Counts each channel's 256 pixel values ``chunk`` images at a time and takes the moments of the
    histogram (exact integer counts, float64 moments), so neither a float copy of the whole set nor,
    for a memory-mapped cache, more than ``chunk`` images' pages are needed at once.

    Returns:
        ``(mean: float[C], std: float[C])``.
    """
    channels = images.shape[1]
    counts = torch.zeros(channels, 256, dtype=torch.int64)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        for c in range(channels):
            counts[c] += torch.bincount(block[:, c].flatten(), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum(dim=1).to(torch.float64)
    mean = (counts * values).sum(dim=1) / n.clamp_min(1)
    var = (counts * (values - mean[:, None]).square()).sum(dim=1) / (n - 1).clamp_min(1)
    return mean.float(), var.sqrt().float()
