"""A decoded, memory-mapped cache of an image folder: decode once, then map it in every rank and worker.

The first run decodes a class folder tree (:func:`~ssl_lightning.data.folder.read_image_tree`'s
layout and result) in parallel into ``<cache_dir>/<folder>-<key>-<fingerprint>/``::

    images.npy      uint8[N, C, H, W], exactly what read_image_tree returns
    labels.npy      int64[N]
    manifest.json   class names, shape, the fingerprint and the format version (written last)

Later runs, every DDP rank and every DataLoader worker open ``images.npy`` with
``np.load(mmap_mode="r")`` (:class:`~ssl_lightning.data.memmap.MemmapImages`): the pages live once
in the operating system's page cache, shared, instead of one decoded copy per process.

* **Fingerprint**: a hash of the sorted relative file list with sizes and modification times, the
  decoding settings (``class_depth``, ``image_size``, ``channels``) and :data:`FORMAT_VERSION`. A
  changed folder or other settings name another entry, which is built; the stale entry of the same
  folder and settings is then removed. A cache is never reused for other files.
* **Atomic**: an entry is built in a temporary folder beside it, fsynced, then renamed into place.
  Without ``manifest.json`` a folder is not a cache; a build killed half-way leaves only a ``.tmp-``
  folder, removed by the next build.
* **Concurrent ranks**: the check-and-build runs under an exclusive ``fcntl.flock`` on a lock file,
  so one process builds and the others wait, then map the finished entry.
* **Bad files**: a corrupt image stops the build with an error naming it; no entry is left.

Example::

    images, labels, names = cached_image_tree("data/flowers/train", "cache/", image_size=64, channels=3)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from ssl_lightning.data.folder import check_tree_arguments, decode_image, list_image_tree, to_channels
from ssl_lightning.data.memmap import MemmapImages
from ssl_lightning.utils.locking import exclusive_lock

log = logging.getLogger(__name__)

#: Bumped when the files' layout or the decoding changes, so older caches are rebuilt, not misread.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def tree_fingerprint(root: Path, files: Sequence[str], settings: dict[str, Any]) -> str:
    """sha256 of the ``(relative path, size, mtime_ns)`` list (``files`` are sorted paths below ``root``),
    the settings and the format version."""
    h = hashlib.sha256(json.dumps({"format_version": FORMAT_VERSION, **settings}, sort_keys=True).encode())
    skip = len(str(root)) + 1
    for path in files:
        stat = os.stat(path)
        h.update(f"{path[skip:]}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cached_image_tree(
    root: str | Path,
    cache_dir: str | Path,
    class_depth: int = 1,
    image_size: int | None = None,
    channels: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[MemmapImages, Tensor, list[str]]:
    """:func:`~ssl_lightning.data.folder.read_image_tree`'s result, from a decoded cache (built if needed).

    Args:
        root: the folder whose sub-folders are the classes.
        cache_dir: where cache entries live (created; one entry per folder, settings and file list).
        class_depth: folder levels that name a class.
        image_size: resize to ``image_size x image_size``; ``None`` keeps the files' (common) size.
        channels: 1 (grey), 3 (RGB) or ``None`` (grey only if every image is grey).
        num_workers: decoding processes of a build; ``None``: the CPUs this process may use; 0: in this process.
        progress: show a progress bar (counts, rate, time left) while building.

    Returns:
        ``(images: MemmapImages uint8[N, C, H, W], labels: long[N], class_names)``, equal to ``read_image_tree``'s.

    Raises:
        FileNotFoundError, ValueError: as ``read_image_tree``; a corrupt file is named and no entry is left.
    """
    root = check_tree_arguments(root, class_depth, channels).resolve()
    cache_dir = Path(cache_dir).expanduser()
    if cache_dir.resolve().is_relative_to(root):
        raise ValueError(
            f"cache_dir {cache_dir} lies inside the image folder {root}, where it would be read as a class. "
            f"Put the cache outside it."
        )
    files, labels, names = list_image_tree(root, class_depth)
    settings = {"class_depth": class_depth, "image_size": image_size, "channels": channels}
    fingerprint = tree_fingerprint(root, files, settings)
    key = hashlib.sha1(json.dumps([str(root), settings]).encode()).hexdigest()[:10]
    prefix = f"{root.name}-{key}"
    entry = cache_dir / f"{prefix}-{fingerprint[:16]}"
    opened = open_entry(entry, fingerprint)
    if opened is not None:
        return opened
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / f".{prefix}.lock", "the image cache"):
        opened = open_entry(entry, fingerprint)  # another process may have built it while we waited
        if opened is None:
            # builds that were killed, and entries of this folder's older file lists (only folders we wrote)
            stale = [*cache_dir.glob(f".tmp-{prefix}-*"), *(p.parent for p in cache_dir.glob(f"{prefix}-*/{MANIFEST}"))]
            for folder in stale:
                shutil.rmtree(folder, ignore_errors=True)
            build_entry(entry, root, files, labels, names, fingerprint, settings, num_workers, progress)
            opened = open_entry(entry, fingerprint)
            assert opened is not None
    return opened


def open_entry(entry: Path, fingerprint: str) -> tuple[MemmapImages, Tensor, list[str]] | None:
    """Map a finished entry, or ``None`` if ``entry`` is not a complete cache of ``fingerprint``."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None  # no (readable) manifest: not a cache, e.g. a build that never finished
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("fingerprint") != fingerprint:
        return None
    images = MemmapImages(entry / "images.npy")
    labels = torch.from_numpy(np.load(entry / "labels.npy"))
    if list(images.shape) != manifest["shape"] or len(labels) != len(images):
        return None
    return images, labels, list(manifest["class_names"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ColourImageFound(Exception):
    """A colour file in a build whose first file was grey with ``channels=None``: decode again as RGB."""


def first_shape(files: Sequence[str], image_size: int | None, channels: int | None) -> tuple[int, int, int, bool]:
    """``(C, H, W)`` from the first file, and whether ``C = 1`` is only a guess (``channels=None``: grey only
    if every image is grey, as ``read_image_tree`` decides; a later colour file raises :class:`ColourImageFound`)."""
    first = decode_image(files[0], image_size)
    out_channels = channels if channels is not None else (1 if first.ndim == 2 else 3)
    return out_channels, first.shape[0], first.shape[1], channels is None and out_channels == 1


def decode_into(
    out_path: Path, start: int, files: Sequence[str], image_size: int | None, channels: int, grey_guess: bool = False
) -> int:
    """Decode ``files`` into rows ``start..`` of the ``uint8[N, C, H, W]`` file ``out_path``; the images written."""
    out = np.load(out_path, mmap_mode="r+")
    height, width = out.shape[2:]
    for i, path in enumerate(files):
        array = decode_image(path, image_size)
        if array.shape[:2] != (height, width):
            raise ValueError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but the first image is {width}x{height}. "
                f"Set image_size to resize all images to one size."
            )
        if grey_guess and array.ndim == 3:
            raise ColourImageFound(path)
        out[start + i] = to_channels(array, channels)
    out.flush()
    del out
    return len(files)


def decode_all(
    images_path: Path, files: Sequence[str], shape: tuple[int, int, int], settings: dict[str, Any], grey_guess: bool,
    num_workers: int | None, progress: bool, title: str,
) -> None:  # fmt: skip
    """Decode every file into a new ``uint8[N, C, H, W]`` file, in chunks over ``num_workers`` processes."""
    np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(len(files), *shape))
    workers = _default_workers() if num_workers is None else num_workers
    size = max(1, min(2048, math.ceil(len(files) / max(1, 8 * workers))))
    chunks = [(start, files[start : start + size]) for start in range(0, len(files), size)]
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    args = (settings["image_size"], shape[0], grey_guess)
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(title, total=len(files))
        if workers == 0:
            for start, chunk in chunks:
                bar.advance(task, decode_into(images_path, start, chunk, *args))
            return
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            pending = {pool.submit(decode_into, images_path, start, chunk, *args) for start, chunk in chunks}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        bar.advance(task, future.result())  # re-raises a worker's error (names the file)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # stop at the first bad file
                raise


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_entry(
    entry: Path,
    root: Path,
    files: Sequence[str],
    labels: Sequence[int],
    names: list[str],
    fingerprint: str,
    settings: dict[str, Any],
    num_workers: int | None,
    progress: bool,
) -> None:
    """Decode ``files`` into a temporary folder beside ``entry``, fsync, then rename it to ``entry``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name.rsplit('-', 1)[0]}-", dir=entry.parent))
    try:
        channels, height, width, grey_guess = first_shape(files, settings["image_size"], settings["channels"])
        images_path, title = tmp / "images.npy", f"decoding {root.name} into {entry.parent}"
        try:
            decode_all(
                images_path, files, (channels, height, width), settings, grey_guess, num_workers, progress, title
            )
        except ColourImageFound as found:
            log.info("%s is a colour image: decoding %s again as RGB (channels=None)", found, root)
            channels = 3
            decode_all(images_path, files, (channels, height, width), settings, False, num_workers, progress, title)
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        manifest = {
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "root": str(root),
            "settings": settings,
            "shape": [len(files), channels, height, width],
            "class_names": names,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        for path in (images_path, tmp / "labels.npy", tmp / MANIFEST, tmp):
            _fsync(path)
        os.rename(tmp, entry)
        _fsync(entry.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("cached %d decoded images of %s in %s", len(files), root, entry)
