"""LitData streaming as a data source: write image folders / DataModule splits into LitData chunks, read them lazily.

Lightning's engine for data larger than memory is LitData (``pip install 'ssl_lightning[stream]'``).
:func:`optimize_image_folder` and :func:`optimize_split` write one split with ``litdata.optimize``: item ``i``
is ``{"image": uint8[H, W, C] (or the file's encoded bytes), "label": int, "index": i}``, in the order the
in-memory reader uses (classes sorted, files sorted within a class), and next to the chunks a small JSON
file (:data:`METADATA_FILE`, :class:`StreamingMetadata`) holds the labels of every item, the class names,
the image shape and a fingerprint of the source. Everything that chooses items by label (validation
split, ``labels_per_class``, subset files, episodes) reads that file, never the items.

:class:`StreamedImages` is the read side: ``uint8[N, C, H, W]`` fetched by index from the chunks
(``litdata.StreamingDataset.__getitem__``), so code written for an image tensor (episode datasets,
embedding the labelled set) reads a streamed split unchanged. Training streams through
``litdata.StreamingDataLoader`` (:class:`~ssl_lightning.data.streaming_datamodule.StreamingImageDataModule`).

``litdata`` is imported only inside the functions that use it, so the package imports without it.

Example::

    meta = optimize_image_folder("data/flowers/train", "data/flowers_ld", image_size=64)
    images = StreamedImages("data/flowers_ld")     # uint8[N, 3, 64, 64], read on demand
    images[torch.tensor([0, 5])].shape             # (2, 3, 64, 64)
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ssl_lightning.data.folder import GREY_MODES, decode_image, list_image_tree, to_channels

METADATA_FILE = "ssl_lightning.json"
Encoding = Literal["raw", "encoded"]


@dataclass
class StreamingMetadata:
    """What the writer records next to the chunks (:data:`METADATA_FILE`).

    Args:
        labels: the label of every item, in item order (``len(labels)`` items).
        class_names: names of the classes ``0..K-1``.
        shape: ``[C, H, W]`` of every decoded image.
        encoding: ``"raw"`` (uint8[H, W, C] arrays) or ``"encoded"`` (the files' bytes, decoded on reading).
        image_size: the size images are resized to on decoding (``encoded``), or were resized to (``raw``).
        fingerprint: sha1 of the source (file paths and bytes, or the split's pixels and labels).
        source: where the items came from (a folder path or a DataModule split), for messages.
    """

    labels: list[int]
    class_names: list[str]
    shape: list[int]
    encoding: Encoding
    image_size: int | None
    fingerprint: str
    source: str

    @property
    def num_items(self) -> int:
        return len(self.labels)

    def save(self, output_dir: str | Path) -> None:
        (Path(output_dir) / METADATA_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, input_dir: str, metadata_file: str | None = None) -> StreamingMetadata:
        """Read the metadata of an optimized split (``metadata_file`` overrides ``<input_dir>/ssl_lightning.json``).

        Raises:
            FileNotFoundError: no metadata file (not written by this package, or a URL without ``metadata_file``).
        """
        if metadata_file is None:
            if "://" in input_dir:
                raise FileNotFoundError(
                    f"{input_dir} is a URL: copy its {METADATA_FILE} here and pass metadata_file=<that copy>."
                )
            metadata_file = str(Path(input_dir) / METADATA_FILE)
        path = Path(metadata_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"No {METADATA_FILE} at {path}: {input_dir} was not written by `ssl-lightning-data optimize`. "
                f"Write it with `ssl-lightning-data optimize <image folder> {input_dir}`."
            )
        return cls(**json.loads(path.read_text()))


def _check_output_dir(output_dir: str | Path) -> Path:
    out = Path(output_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"Output folder {out} is not empty; refusing to overwrite it. Choose a new folder or delete this one."
        )
    return out


def _start_method() -> str:
    """``fork`` where the platform has it: ``spawn`` workers re-import torch and litdata (seconds each)."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class _FolderItem:
    """One image file -> a LitData item (picklable, for optimize's worker processes)."""

    def __init__(self, encoding: Encoding, image_size: int | None, channels: int) -> None:
        self.encoding, self.image_size, self.channels = encoding, image_size, channels

    def __call__(self, job: tuple[int, str, int]) -> dict[str, Any]:
        index, path, label = job
        if self.encoding == "encoded":
            image: Any = Path(path).read_bytes()
        else:  # uint8[H, W, C], converted exactly as read_image_tree converts
            image = np.ascontiguousarray(
                to_channels(decode_image(Path(path), self.image_size), self.channels).transpose(1, 2, 0)
            )
        return {"image": image, "label": label, "index": index}


class _SplitItem:
    """Item ``i`` of an in-memory split (uint8[N, C, H, W]) -> a LitData item."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __call__(self, index: int) -> dict[str, Any]:
        image = self.images[index].permute(1, 2, 0).contiguous().numpy()
        return {"image": image, "label": int(self.labels[index]), "index": index}


def _write(
    fn: Any, inputs: list[Any], out: Path, meta: StreamingMetadata, num_workers: int, chunk_bytes: int | str
) -> None:
    """``litdata.optimize`` in item order, then check that item ``i`` is stored at position ``i``."""
    import litdata

    litdata.optimize(
        fn=fn,
        inputs=inputs,
        output_dir=str(out),
        chunk_bytes=chunk_bytes,
        num_workers=max(1, min(num_workers, len(inputs))),
        reorder_files=False,  # keep the reader's order: labels[i] must be item i's label
        keep_data_ordered=True,
        start_method=_start_method(),
        verbose=False,
    )
    index = json.loads((out / "index.json").read_text())
    dataset = litdata.StreamingDataset(str(out))
    if len(dataset) != meta.num_items:
        raise RuntimeError(f"litdata wrote {len(dataset)} items to {out}, expected {meta.num_items}.")
    start = 0
    for chunk in index["chunks"]:  # the first item of every chunk: cheap, catches a reordering by the writer
        if dataset[start]["index"] != start:
            raise RuntimeError(f"litdata stored the items of {out} out of order (position {start}); delete it.")
        start += chunk["chunk_size"]
    meta.save(out)


def optimize_image_folder(
    root: str | Path,
    output_dir: str | Path,
    image_size: int | None = None,
    channels: int | None = None,
    class_depth: int = 1,
    encoding: Encoding = "raw",
    num_workers: int = 1,
    chunk_bytes: int | str = "64MB",
) -> StreamingMetadata:
    """Write ``root/<class>/*.png`` as LitData chunks plus :data:`METADATA_FILE` in ``output_dir``.

    The items decode to exactly what :func:`~ssl_lightning.data.folder.read_image_tree` returns for the same
    ``image_size``/``channels`` (same order, same decoding and channel conversion).

    Args:
        root: the folder whose sub-folders are the classes.
        output_dir: a new or empty folder for the chunks.
        image_size: resize to ``image_size x image_size``; ``None`` keeps the files' (common) size.
        channels: 1 or 3; ``None``: 1 if every file is grey, else 3 (read from the file headers).
        class_depth: folder levels that name a class.
        encoding: ``"raw"`` stores decoded uint8[H, W, C] (fast to read); ``"encoded"`` stores the files'
            bytes (small on disk, decoded on every read).
        num_workers: writer processes.
        chunk_bytes: target size of one chunk file.

    Returns:
        The metadata written.

    Raises:
        FileExistsError: ``output_dir`` is not empty.
        ValueError: files of different sizes without ``image_size``, a bad ``channels``, a corrupt file.
    """
    from PIL import Image

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist. Point it at a folder of class folders.")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels}")
    out = _check_output_dir(output_dir)
    paths, labels, names = list_image_tree(root, class_depth)
    files = [Path(p) for p in paths]  # list_image_tree gives path strings
    digest = hashlib.sha1(f"{image_size}|{channels}|{encoding}".encode())
    modes, sizes = set(), set()
    for path in files:  # headers only: channel count and common size before any worker decodes
        with Image.open(path) as image:
            modes.add(image.mode in GREY_MODES)
            sizes.add(image.size)
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    if image_size is None and len(sizes) > 1:
        raise ValueError(f"Images under {root} have sizes {sorted(sizes)[:4]}; set image_size to resize them to one.")
    out_channels = channels if channels is not None else (1 if modes == {True} else 3)
    width, height = (image_size, image_size) if image_size is not None else next(iter(sizes))
    meta = StreamingMetadata(
        labels, names, [out_channels, height, width], encoding, image_size, digest.hexdigest(), str(root)
    )
    jobs = [(i, str(path), label) for i, (path, label) in enumerate(zip(files, labels, strict=True))]
    out.mkdir(parents=True, exist_ok=True)
    _write(_FolderItem(encoding, image_size, out_channels), jobs, out, meta, num_workers, chunk_bytes)
    return meta


def optimize_split(
    datamodule: Any,
    split: Literal["train", "test"],
    output_dir: str | Path,
    num_workers: int = 1,
    chunk_bytes: int | str = "64MB",
) -> StreamingMetadata:
    """Write one official split of an :class:`~ssl_lightning.data.base.ImageDataModule` (``load_split``) as chunks.

    Args:
        datamodule: any ``ImageDataModule`` (digits, CIFAR-10, an image folder).
        split: ``"train"`` or ``"test"``.
        output_dir: a new or empty folder.
        num_workers: writer processes.
        chunk_bytes: target size of one chunk file.
    """
    out = _check_output_dir(output_dir)
    images, labels, names = datamodule.load_split(split)
    digest = hashlib.sha1(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).numpy().tobytes())
    source = f"{type(datamodule).__name__}.load_split({split!r})"
    meta = StreamingMetadata(
        labels.tolist(), list(names), list(images.shape[1:]), "raw", None, digest.hexdigest(), source
    )
    out.mkdir(parents=True, exist_ok=True)
    _write(_SplitItem(images, labels), list(range(len(labels))), out, meta, num_workers, chunk_bytes)
    return meta


def decode_item(image: Any, meta: StreamingMetadata) -> Tensor:
    """A stored item's ``image`` -> uint8[C, H, W]."""
    if meta.encoding == "encoded":
        image = to_channels(decode_image(bytes(image), meta.image_size), meta.shape[0])  # LitData gives a memoryview
        return torch.from_numpy(np.ascontiguousarray(image))
    return torch.from_numpy(np.asarray(image)).permute(2, 0, 1).contiguous()


class ItemToTensors:
    """LitData item -> ``(image: uint8[C, H, W], label: long)`` (and the item's position in a pool, if given).

    The ``transform`` of the training ``StreamingDataset``; picklable for loader workers.

    Args:
        meta: the split's metadata (how images are stored).
        positions: long[num_items] position of every item in the pool (``-1`` outside it); ``None``: no index.
    """

    def __init__(self, meta: StreamingMetadata, positions: Tensor | None = None) -> None:
        self.meta = meta
        self.positions = positions

    def __call__(self, item: dict[str, Any]) -> tuple[Tensor, ...]:
        pair = (decode_item(item["image"], self.meta), torch.tensor(item["label"], dtype=torch.long))
        if self.positions is None:
            return pair
        return (*pair, self.positions[item["index"]])


class StreamedImages:
    """``uint8[N, C, H, W]`` read on demand from a LitData split, item by item (random access).

    Indexing reads: ``images[i]`` is uint8[C, H, W]; ``images[slice]``, ``images[long tensor]`` and
    ``images[list]`` are uint8[n, C, H, W]. :meth:`subset` is a view that reads nothing. Each process
    (loader worker) opens its own ``litdata.StreamingDataset`` on first use; the object pickles without it.

    Example config: none; :class:`~ssl_lightning.data.streaming_datamodule.StreamingImageDataModule` and
    :class:`~ssl_lightning.data.streaming_datamodule.StreamingPool` build it.

    Args:
        input_dir: the optimized split (a local folder or an object-store URL such as ``s3://bucket/ld``).
        meta: its metadata (default: read from ``input_dir``).
        indices: long[n] items of the split this view holds (default: all).
        cache_dir: where LitData caches remote chunks (``None``: LitData's default).
    """

    dtype = torch.uint8
    ndim = 4

    def __init__(
        self,
        input_dir: str,
        meta: StreamingMetadata | None = None,
        indices: Tensor | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.input_dir = input_dir
        self.meta = StreamingMetadata.load(input_dir) if meta is None else meta
        self.indices = (
            torch.arange(self.meta.num_items) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        )
        self.cache_dir = cache_dir
        self._dataset: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self.indices), *self.meta.shape])

    @property
    def labels(self) -> Tensor:
        """long[n] the labels of this view's items (from the metadata)."""
        return torch.tensor(self.meta.labels, dtype=torch.long)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def dataset(self) -> Any:
        """This process's ``litdata.StreamingDataset`` over the whole split."""
        if self._dataset is None:
            import litdata

            self._dataset = litdata.StreamingDataset(self.input_dir, cache_dir=self.cache_dir)
        return self._dataset

    def subset(self, positions: Tensor) -> StreamedImages:
        """The view of ``positions`` (long[m] or bool[n]) of this view; reads nothing."""
        return StreamedImages(self.input_dir, self.meta, self.indices[positions], self.cache_dir)

    def contiguous(self) -> StreamedImages:
        return self

    def __getitem__(self, key: int | slice | list[int] | Tensor) -> Tensor:
        dataset = self.dataset()
        if isinstance(key, int) or (isinstance(key, Tensor) and key.ndim == 0):
            return decode_item(dataset[int(self.indices[int(key)])]["image"], self.meta)
        if isinstance(key, Tensor) and key.dtype == torch.bool:
            raise TypeError("StreamedImages[bool mask] would read every selected image; use .subset(mask) for a view.")
        chosen = self.indices[key] if isinstance(key, slice) else self.indices[torch.as_tensor(key, dtype=torch.long)]
        if len(chosen) == 0:
            return torch.empty(0, *self.meta.shape, dtype=torch.uint8)
        return torch.stack([decode_item(dataset[int(i)]["image"], self.meta) for i in chosen.tolist()])
