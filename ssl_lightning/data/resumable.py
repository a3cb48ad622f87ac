"""A DataLoader that resumes in the middle of an epoch, for exact resume after a kill.

Lightning saves the model, the optimizer and the loop counters in a checkpoint, and also
the ``state_dict()`` of every training loader that has one (the ``_Stateful`` protocol,
``FitLoop.on_save_checkpoint``). A plain ``DataLoader`` has none, so a run resumed from a
checkpoint written at batch ``b`` of an epoch starts that epoch's data again from batch 0:
it trains on batches ``0..b`` twice and never sees the last ``b + 1`` batches, and it no
longer matches an uninterrupted run.

:class:`ResumableDataLoader` records how many batches of the current epoch it has handed
out, and the epoch of its sampler. After ``load_state_dict`` its next iterator skips those
batches at the index level (the skipped images are never loaded or collated) and yields the
rest of the epoch. Combined with samplers that depend only on ``(seed, epoch)``
(:class:`~ssl_lightning.data.base.EpochSeededSampler`, the resampling samplers,
:class:`~ssl_lightning.data.episodes.EpisodeSampler`) and augmentation seeded by
``(seed, epoch, batch index)``, a resumed run draws exactly the batches an uninterrupted run
would.

The count is of batches the loader's iterator returned, which is what the training loop
consumed: Lightning does not prefetch from a loader whose length is known (all of ours), and
worker processes only prefetch indices, which are not counted.

Why not ``torchdata.stateful_dataloader.StatefulDataLoader`` (installed, torchdata 0.11): in a
check of its ``state_dict``/``load_state_dict`` in a fresh loader (23 items, batches of 4,
:class:`~ssl_lightning.data.samplers.EpochSeededSampler` at epoch 3, state taken after 2
batches) it skipped the right number of batches but did not restore the sampler's epoch, so the
rest came from epoch 0's permutation; giving the sampler ``state_dict``/``load_state_dict`` (its
epoch) restored the epoch but the remaining batches still differed from the uninterrupted epoch.
Exact resume after a kill (``tests/test_resume.py``) needs both, so this loader stays until
that is solved.

Example::

    loader = ResumableDataLoader(dataset, batch_size=64, sampler=EpochSeededSampler(len(dataset), seed=0))
    state = loader.state_dict()     # {"epoch": 3, "batches": 17} after 17 batches of epoch 3
    ...
    loader.load_state_dict(state)   # the next iter(loader) starts at batch 17 of epoch 3
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler


class _SkipFirst(Iterable[Any]):
    """An index sampler (or batch sampler) without its first ``skip`` items."""

    def __init__(self, sampler: Iterable[Any], skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        # a generator, like BatchSampler.__iter__: the sampler is only iterated at the first
        # batch, after Lightning's set_epoch
        items = iter(self.sampler)
        for _ in range(self.skip):
            if next(items, None) is None:
                return
        yield from items


class _CountingIterator(Iterator[Any]):
    """Wraps a DataLoader iterator and tells its loader how many batches of the epoch were returned."""

    def __init__(self, loader: ResumableDataLoader, iterator: Iterator[Any], position: int) -> None:
        self.loader = loader
        self.iterator = iterator
        loader._position = position

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        batch = next(self.iterator)
        self.loader._position += 1
        return batch

    def __len__(self) -> int:
        return len(self.iterator)  # type: ignore[arg-type]


class ResumableDataLoader(DataLoader):
    """``torch.utils.data.DataLoader`` with ``state_dict``/``load_state_dict`` for mid-epoch resume.

    Same constructor and batches as ``DataLoader`` (``(x: uint8[B, C, H, W], y: long[B])`` for
    the image DataModules, episodes for the episodic one); only iteration after
    :meth:`load_state_dict` differs. ``len(loader)`` stays the full epoch, as Lightning expects:
    its restored progress counters already account for the skipped batches.

    The state is ``{"epoch": int | None, "batches": int}``: the sampler's epoch (``None`` if it
    has no ``epoch``) and the batches the current iterator has returned. Loading it sets that
    epoch on the samplers (Lightning creates the first iterator of a resumed fit before it calls
    ``set_epoch``, which matters once worker processes prefetch indices) and makes the next
    iterator skip ``batches`` batches. A state saved at the end of an epoch (every batch
    returned) skips nothing: the next epoch starts from its beginning.

    Example config: none; the DataModules build their training loaders with it.
    """

    def _samplers(self) -> list[Any]:
        """The objects Lightning calls ``set_epoch`` on: ``sampler``, ``batch_sampler`` and its ``sampler``."""
        found: dict[int, Any] = {}
        batch_sampler = getattr(self, "batch_sampler", None)
        for candidate in (getattr(self, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
            if candidate is not None and callable(getattr(candidate, "set_epoch", None)):
                found[id(candidate)] = candidate
        return list(found.values())

    def _epoch(self) -> int | None:
        for sampler in self._samplers():
            epoch = getattr(sampler, "epoch", None)
            if isinstance(epoch, int):
                return epoch
        return None

    @property
    def _index_sampler(self) -> Any:
        sampler = super()._index_sampler
        skip = getattr(self, "_skip", 0)
        return _SkipFirst(sampler, skip) if skip else sampler

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        skip, self._resume_at = getattr(self, "_resume_at", 0), 0
        if skip >= len(self):
            skip = 0  # saved at the end of an epoch: the next one starts from its first batch
        # A new iterator reads loader._index_sampler when it is built; a persistent-workers iterator
        # is built once and reset with the index sampler it stored (torch's _BaseDataLoaderIter).
        # Either way the skip applies to this iterator only, not to the epochs after it.
        existing = getattr(self, "_iterator", None)
        if skip and existing is not None:
            existing._index_sampler = _SkipFirst(existing._index_sampler, skip)
        self._skip = skip  # read by _index_sampler while a new iterator is built
        try:
            iterator = super().__iter__()
        finally:
            self._skip = 0
        stored = getattr(iterator, "_index_sampler", None)
        if isinstance(stored, _SkipFirst):
            iterator._index_sampler = stored.sampler
        return _CountingIterator(self, iterator, skip)

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch": sampler epoch or None, "batches": batches of this epoch returned so far}``."""
        return {"epoch": self._epoch(), "batches": getattr(self, "_position", 0)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next iterator start at batch ``state_dict["batches"]`` of epoch ``state_dict["epoch"]``."""
        batches = int(state_dict.get("batches", 0))
        if batches < 0:
            raise ValueError(f"a loader state must have batches >= 0, got {batches} (state {state_dict}).")
        epoch = state_dict.get("epoch")
        if epoch is not None:
            for sampler in self._samplers():
                sampler.set_epoch(epoch)
        self._resume_at = batches


def resumable_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler,
    collate_fn: Callable[[list[Any]], Any] | None,
    num_workers: int,
) -> ResumableDataLoader:
    """A :class:`ResumableDataLoader` of ``batch_size`` items drawn by ``sampler`` (workers kept across epochs)."""
    return ResumableDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
