"""Embeddings of a DataModule's training pool, computed once per (backbone, weights, data) and cached.

Selection strategies work on one embedding per training-pool item (the non-validation
training examples, ``datamodule.datasets["all"]``). :func:`compute_embeddings` runs any
backbone of the project's contract (``forward_features(x) -> float[B, D]``) over the pool in
batches (``no_grad``, eval mode, on the best available device, with a progress bar) and saves
the result under a key that hashes

* the backbone: class path, architecture (``repr``) and an optional config dict,
* its weights: a hash of every parameter and buffer, so new weights mean a new key,
* the data: DataModule class, its ``normalize`` flag and a hash of the pool's contents,
* the input adaptation: ``resolution`` and ``in_chans``,

so the next selection on the same pool is a file read.

Example::

    result = compute_embeddings(backbone, datamodule, resolution=64, in_chans=3)
    result.embeddings   # float32[N, D], row i is datamodule.datasets["all"][i]
    result.key          # goes into the subset file's meta
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_lightning.nets.adapters import adapt_images as nets_adapt_images
from ssl_lightning.nets.head import pooled_features

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/ssl_lightning/embeddings")
POOL = "all"


# ---- the pool ------------------------------------------------------------------------------
def pool_dataset(datamodule: pl.LightningDataModule, split: str = POOL) -> Dataset:
    """The training pool that subset-file indices index into: ``datamodule.datasets["all"]``.

    ``split`` picks another of the DataModule's datasets (``"test"``: to evaluate a learner).
    """
    datasets = getattr(datamodule, "datasets", None)
    if not datasets:
        datamodule.setup("fit")
        datasets = getattr(datamodule, "datasets", None)
    if not isinstance(datasets, dict) or split not in datasets:
        raise ValueError(
            f"{type(datamodule).__name__} has no datasets[{split!r}] after setup; selection needs a DataModule "
            f"built on ImageDataModule (or one that fills datasets['all'] the same way)."
        )
    return datasets[split]


def pool_labels(datamodule: pl.LightningDataModule, split: str = POOL) -> np.ndarray:
    """int64[N] class indices of the pool. Only the simulated oracle should hold these.

    Tensor labels (image DataModules) are used as they are; label names (text DataModules) are
    mapped through ``datamodule.class_names``.
    """
    labels = getattr(pool_dataset(datamodule, split), "labels", None)
    if isinstance(labels, Tensor | np.ndarray):
        return np.asarray(labels, dtype=np.int64)
    names = getattr(datamodule, "class_names", None)
    if isinstance(labels, list) and names:
        index = {name: i for i, name in enumerate(names)}
        return np.array([index[label] for label in labels], dtype=np.int64)
    raise ValueError(f"cannot read the pool labels of {type(datamodule).__name__}: no labels tensor or class_names")


def pool_loader(datamodule: pl.LightningDataModule, batch_size: int, split: str = POOL) -> DataLoader:
    """The pool in its stored order (no shuffling), collated as the DataModule's evaluation loader collates.

    A plain sequential loader of our own over the pool dataset; only its ``collate_fn`` comes from
    the DataModule's public ``val_dataloader()`` (the tokenizer for text, the default for images),
    since the pool is not one of the splits its loaders serve.
    """
    dataset = pool_dataset(datamodule, split)
    collate_fn = datamodule.val_dataloader().collate_fn
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def adapt_images(x: Any, resolution: int | None, in_chans: int | None) -> Any:
    """Fit image batches float[B, C, H, W] to a backbone: grey -> ``in_chans`` copies, resize (antialiased).

    Anything that is not a 4-d float tensor (token ids, dicts) is returned unchanged
    (:func:`ssl_lightning.nets.adapters.adapt_images`).
    """
    return nets_adapt_images(x, in_chans, resolution, antialias=True)


@torch.no_grad()
def pool_outputs(
    function: Callable[[Any], Tensor],
    datamodule: pl.LightningDataModule,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    resolution: int | None = None,
    in_chans: int | None = None,
    description: str = "pool",
    progress: bool = True,
    split: str = POOL,
) -> Tensor:
    """Apply ``function`` to every pool item in batches; returns float32[N, ...] on the CPU.

    Batches go through the DataModule's own ``on_after_batch_transfer`` (uint8 -> normalized
    floats for images), then :func:`adapt_images`.
    """
    from rich.progress import track

    device = torch.device(device) if device is not None else default_device()
    loader = pool_loader(datamodule, batch_size, split)
    outputs = []
    for batch in track(loader, description=description, total=len(loader), disable=not progress):
        batch = datamodule.on_after_batch_transfer(move_data_to_device(batch, device), 0)
        x = batch[0] if isinstance(batch, list | tuple) else batch
        outputs.append(function(adapt_images(x, resolution, in_chans)).float().cpu())
    return torch.cat(outputs)


# ---- cache keys ----------------------------------------------------------------------------
def _update(digest: Any, value: Any) -> None:
    """Feed a tensor, array or plain value into a hash."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().contiguous()
        digest.update(f"{value.dtype}{list(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype}{list(value.shape)}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(json.dumps(value, sort_keys=True, default=repr).encode())


def weights_hash(module: nn.Module) -> str:
    """Hash of every parameter and buffer: changes whenever any weight does."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        _update(digest, tensor)
    return digest.hexdigest()


def dataset_hash(dataset: Dataset) -> str:
    """Hash of a dataset's contents: its tensors, arrays, lists and scalars, by attribute name."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{type(dataset).__module__}.{type(dataset).__qualname__}:{len(dataset)}".encode())  # type: ignore[arg-type]
    for name, value in sorted(vars(dataset).items()):
        if isinstance(value, Tensor | np.ndarray | list | tuple | str | int | float | bool) or value is None:
            digest.update(name.encode())
            _update(digest, value)
    return digest.hexdigest()


def _is_plain(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str | int | float | bool)
        or (isinstance(value, tuple | list) and all(_is_plain(v) for v in value))
    )


def class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def embedding_key(
    backbone: nn.Module,
    datamodule: pl.LightningDataModule,
    resolution: int | None = None,
    in_chans: int | None = None,
    backbone_config: dict[str, Any] | None = None,
    split: str = POOL,
) -> tuple[str, dict[str, Any]]:
    """``(key, identity)``: the cache key and the plain-dict identity it hashes."""
    # Plain attributes catch settings that change the features but not the weights (input_size, ...).
    settings = {k: v for k, v in vars(backbone).items() if not k.startswith("_") and k != "training" and _is_plain(v)}
    identity = {
        "backbone": class_path(backbone),
        "settings": settings,
        "architecture": hashlib.blake2b(repr(backbone).encode(), digest_size=8).hexdigest(),
        "backbone_config": backbone_config or {},
        "weights": weights_hash(backbone),
        "data": class_path(datamodule),
        "normalize": getattr(datamodule, "normalize", None),
        "split": split,
        "pool": dataset_hash(pool_dataset(datamodule, split)),
        "resolution": resolution,
        "in_chans": in_chans,
    }
    digest = hashlib.blake2b(json.dumps(identity, sort_keys=True, default=repr).encode(), digest_size=10).hexdigest()
    return f"{type(backbone).__name__}-{type(datamodule).__name__}-{digest}", identity


# ---- embeddings ----------------------------------------------------------------------------
@dataclass
class Embeddings:
    """Result of :func:`compute_embeddings`.

    Attributes:
        embeddings: float32[N, D]; row ``i`` embeds pool item ``i``.
        key: cache key (also the file stem under the cache directory).
        path: the cache file, or ``None`` when caching was off.
        from_cache: whether they were read from the cache instead of computed.
        identity: what the key hashes (backbone, weights hash, data hash, resolution, ...).
    """

    embeddings: Tensor
    key: str
    path: Path | None
    from_cache: bool
    identity: dict[str, Any]


def _pooled_features(backbone: nn.Module) -> Callable[[Any], Tensor]:
    def features(x: Any) -> Tensor:
        out = pooled_features(backbone, x)  # a raw timm model's maps are pooled the model's own way
        if not isinstance(out, Tensor) or out.ndim != 2:
            shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"{type(backbone).__name__}.forward_features returned {shape}; selection needs pooled features "
                f"float[B, D] (the backbone contract)."
            )
        return out

    return features


def compute_embeddings(
    backbone: nn.Module,
    datamodule: pl.LightningDataModule,
    batch_size: int = 256,
    resolution: int | None = None,
    in_chans: int | None = None,
    device: torch.device | str | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    backbone_config: dict[str, Any] | None = None,
    progress: bool = True,
    split: str = POOL,
) -> Embeddings:
    """Embed the DataModule's training pool with ``backbone.forward_features``, cached on disk.

    Args:
        backbone: any module with ``forward_features(x) -> float[B, D]``.
        datamodule: its ``datasets["all"]`` is the pool (``setup`` is called if needed).
        batch_size: items per forward pass.
        resolution: resize images to ``resolution x resolution`` first (e.g. 64 for 8x8 digits).
        in_chans: repeat grey images to this many channels (3 for ImageNet backbones).
        device: defaults to CUDA when available, else CPU.
        cache_dir: where ``<key>.pt`` files live; ``None`` disables the cache.
        backbone_config: the backbone's config (class path and init args) when known; part of the key.
        progress: show a progress bar.
        split: embed ``datasets[split]`` instead of the pool (e.g. ``"test"`` for a linear probe).
    """
    key, identity = embedding_key(backbone, datamodule, resolution, in_chans, backbone_config, split)
    path = Path(cache_dir).expanduser() / f"{key}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=True)
        log.info("embeddings %s read from %s", key, path)
        return Embeddings(saved["embeddings"], key, path, True, identity)
    device = torch.device(device) if device is not None else default_device()
    was_training = backbone.training
    original_device = next(iter(backbone.parameters()), torch.empty(0)).device
    backbone.eval().to(device)
    try:
        embeddings = pool_outputs(
            _pooled_features(backbone),
            datamodule,
            batch_size,
            device,
            resolution,
            in_chans,
            f"embedding {key}",
            progress,
            split,
        )
    finally:
        backbone.train(was_training).to(original_device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"embeddings": embeddings, "identity": json.dumps(identity, default=repr)}, partial)
        partial.replace(path)  # atomic: a crash never leaves a truncated cache file
        log.info("embeddings %s (%s) saved to %s", key, list(embeddings.shape), path)
    return Embeddings(embeddings, key, path, False, identity)
