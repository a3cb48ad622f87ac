"""Text datasets, their ``(epoch, index)`` keys for seeded augmentation, and the padding collator.

Example::

    dataset = TextDataset(["a good film", "a bad film"], ["pos", "neg"])
    collate = TextCollator(tokenizer, {"neg": 0, "pos": 1})
    inputs, y = collate([dataset[0], dataset[1]])   # inputs["input_ids"]: long[2, L]
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ssl_lightning.data.samplers import EpochSeededSampler
from ssl_lightning.data.text_augment import EDA
from ssl_lightning.data.tokenize import HFTokenizer, WordTokenizer, word_tokenize

TextBatch = tuple[dict[str, Tensor], Tensor]


class TextDataset(Dataset):
    """Texts with their label names; optionally EDA-augmented, seeded from ``(seed, epoch, index)``.

    Items are ``(text, label name or None)``. With ``augment``, the dataset is indexed by
    ``(epoch, index)`` keys (from :class:`EpochKeys`).
    """

    def __init__(self, texts: list[str], labels: list[str | None], augment: EDA | None = None, seed: int = 0) -> None:
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.texts = texts
        self.labels = labels
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[str, str | None]:
        epoch, index = key if isinstance(key, tuple) else (None, key)
        text = self.texts[index]
        if self.augment is not None and epoch is not None:
            rng = random.Random(f"{self.seed}-{epoch}-{index}")  # explicit generator per (seed, epoch, example)
            text = " ".join(self.augment(word_tokenize(text, lowercase=False), rng))
        return text, self.labels[index]


class EpochKeys(Sampler[Any]):
    """A seeded sampler (index or batch sampler) whose indices become ``(epoch, index)`` keys.

    The keys let :class:`TextDataset` seed each example's augmentation by its epoch, whatever
    sampler draws the batches (``random``, ``weighted``, ``class_balanced``). ``set_epoch`` and
    ``epoch`` are the wrapped sampler's, so Lightning and
    :class:`~ssl_lightning.data.resumable.ResumableDataLoader` see through it.

    Args:
        sampler: a sampler with ``epoch`` and ``set_epoch``, yielding ints or lists of ints.
    """

    def __init__(self, sampler: Any) -> None:
        self.inner = sampler

    @property
    def epoch(self) -> int:
        return self.inner.epoch

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    @property
    def sampler(self) -> EpochKeys:
        """Itself, so that Lightning's ``set_epoch`` reaches a wrapped batch sampler (as in ``resampling``)."""
        return self

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Any]:
        for item in self.inner:
            epoch = self.inner.epoch
            yield [(epoch, i) for i in item] if isinstance(item, list) else (epoch, item)


class EpochKeySampler(EpochKeys):
    """:class:`~ssl_lightning.data.samplers.EpochSeededSampler` yielding ``(epoch, index)`` keys.

    Args:
        num_items: size of the dataset.
        seed: base seed.
    """

    def __init__(self, num_items: int, seed: int) -> None:
        super().__init__(EpochSeededSampler(num_items, seed))


class TextCollator:
    """Tokenize a list of ``(text, label)`` and pad to the longest text of the batch.

    Returns ``({"input_ids": long[B, L], "attention_mask": long[B, L], "lengths": long[B]}, y: long[B])``.
    """

    def __init__(self, tokenizer: WordTokenizer | HFTokenizer, label_index: dict[str, int]) -> None:
        self.tokenizer = tokenizer
        self.label_index = label_index

    def __call__(self, items: list[tuple[str, str | None]]) -> TextBatch:
        ids = [self.tokenizer.encode(text) or [self.tokenizer.pad_id] for text, _ in items]
        lengths = torch.tensor([len(seq) for seq in ids], dtype=torch.long)
        input_ids = torch.full((len(ids), int(lengths.max())), self.tokenizer.pad_id, dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        y = torch.tensor([self.label_index[label] if label is not None else -1 for _, label in items])
        return {"input_ids": input_ids, "attention_mask": mask, "lengths": lengths}, y
