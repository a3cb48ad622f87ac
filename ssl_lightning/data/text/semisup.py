"""Semi-supervised text: FixMatch's paired labelled/unlabelled batches for the text DataModule.

:class:`UnlabelledTextPool`, given to
:class:`~ssl_lightning.data.text.TextClassificationDataModule` as ``unlabelled``, adds an
unlabelled pool to it (every training text, or a file of texts) and makes its training batches
the structure that :class:`~ssl_lightning.methods.fixmatch.FixMatch` and its subclasses train on,
as :class:`~ssl_lightning.data.semisup.SemiSupervisedDataModule` does for images; the DataModule
keeps owning the splits, the labelled subset, the tokenizer and the val/test loaders. The methods
do not know the modality: the batch's inputs are token dicts instead of image tensors.

Text cannot be augmented on the device, so both views are made on the CPU, per text, in the
dataset (EDA, :mod:`~ssl_lightning.data.text_augment`) and the collator (token dropout), each from
its own ``random.Random`` seeded by ``(seed, epoch, index, view)``: runs are reproducible, a
resumed run sees the same views, and the weak and strong views of a text are independent draws.
Back-translation (UDA's strong view, Xie et al. 2020) needs translation models and is not
possible offline; the strong view here is EDA applied ``strong_ops`` times plus token dropout.

Under DDP Lightning wraps the sampler of each loader inside the ``CombinedLoader`` in a
``DistributedSamplerWrapper``, so each rank draws distinct labelled and unlabelled batches.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import Dataset

from ssl_lightning.data.resumable import resumable_loader
from ssl_lightning.data.samplers import EpochSeededSampler, RepeatedSeededSampler
from ssl_lightning.data.text.dataset import EpochKeys, TextCollator, TextDataset
from ssl_lightning.data.text.reading import FileFormat, read_text_file
from ssl_lightning.data.text_augment import EDA
from ssl_lightning.data.tokenize import HFTokenizer, Vocabulary, WordTokenizer, word_tokenize

if TYPE_CHECKING:
    from ssl_lightning.data.text.datamodule import TextClassificationDataModule

log = logging.getLogger(__name__)


def read_unlabelled_texts(path: str | Path, text_column: str = "text", file_format: FileFormat = "auto") -> list[str]:
    """The texts of an unlabelled file: CSV/TSV/JSONL with a ``text_column``, or plain ``.txt`` (one text a line).

    Labels are not needed (a label column, if any, is ignored). Empty lines/texts are skipped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty or has no text, or the text column is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"unlabelled_file {path} does not exist. Give a CSV/TSV/JSONL or .txt file of texts.")
    if file_format == "auto" and path.suffix.lower() == ".txt":
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = read_text_file(path, text_column, "label", file_format, require_labels=False).texts
    if not texts:
        raise ValueError(
            f"unlabelled_file {path} has no texts. Write one text a line (.txt) or a {text_column!r} column."
        )
    return texts


class TokenDropout:
    """Replace each non-special token id by a mask id with probability ``p`` (word dropout of the strong view).

    Args:
        p: probability of masking each token.
        mask_id: the id that replaces a dropped token (``[MASK]`` of a Hugging Face tokenizer, else ``<unk>``).
        special_ids: ids never dropped (``[CLS]``, ``[SEP]``, padding).
    """

    def __init__(self, p: float, mask_id: int, special_ids: set[int]) -> None:
        self.p = p
        self.mask_id = mask_id
        self.special_ids = special_ids

    @classmethod
    def for_tokenizer(cls, p: float, tokenizer: WordTokenizer | HFTokenizer) -> TokenDropout:
        if isinstance(tokenizer, HFTokenizer):
            hf = tokenizer.tokenizer
            mask = hf.mask_token_id if hf.mask_token_id is not None else hf.unk_token_id
            return cls(p, int(mask if mask is not None else tokenizer.pad_id), set(hf.all_special_ids))
        return cls(p, Vocabulary.unk_id, {tokenizer.pad_id})

    def __call__(self, ids: list[int], rng: random.Random) -> list[int]:
        if self.p == 0:
            return ids
        return [self.mask_id if i not in self.special_ids and rng.random() < self.p else i for i in ids]


class UnlabelledTextViews(Dataset):
    """The unlabelled pool: ``(epoch, index)`` -> ``(weak text, strong text, label or None, index, epoch)``.

    Each view comes from its own generator seeded by ``(seed, epoch, index, view)``; the strong view
    applies ``strong`` EDA ``strong_ops`` times in a row.

    Args:
        texts: the pool's texts.
        labels: their label names, or ``None`` (only used to log pseudo-label accuracy).
        weak: EDA of the weak view (``None``: the text as it is).
        strong: EDA of the strong view (``None``: only token dropout).
        strong_ops: EDA operations applied one after another in the strong view.
        seed: base seed.
    """

    def __init__(
        self,
        texts: list[str],
        labels: list[str | None],
        weak: EDA | None,
        strong: EDA | None,
        strong_ops: int,
        seed: int,
    ) -> None:
        self.texts = texts
        self.labels = labels
        self.weak = weak
        self.strong = strong
        self.strong_ops = strong_ops
        self.seed = seed

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: tuple[int, int]) -> tuple[str, str, str | None, int, int]:
        epoch, index = key
        text = self.texts[index]
        weak_text = text
        if self.weak is not None:
            rng = random.Random(f"{self.seed}-{epoch}-{index}-weak")
            weak_text = " ".join(self.weak(word_tokenize(text, lowercase=False), rng))
        strong_text = text
        if self.strong is not None:
            rng = random.Random(f"{self.seed}-{epoch}-{index}-strong")
            words = word_tokenize(text, lowercase=False)
            for _ in range(self.strong_ops):
                words = self.strong(words, rng)
            strong_text = " ".join(words)
        return weak_text, strong_text, self.labels[index], index, epoch


class UnlabelledCollator:
    """``(weak, strong, label, index, epoch)`` items -> ``(weak_inputs, strong_inputs, y: long[M], index: long[M])``.

    ``y`` is ``-1`` where the label is unknown; token dropout of the strong view is seeded by
    ``(seed, epoch, index)``.

    Args:
        collate: the source's text collator (tokenize, pad, map labels).
        dropout: token dropout of the strong view.
        seed: base seed.
    """

    def __init__(self, collate: TextCollator, dropout: TokenDropout, seed: int) -> None:
        self.collate = collate
        self.dropout = dropout
        self.seed = seed

    def __call__(self, items: list[tuple[str, str, str | None, int, int]]) -> tuple[Tensor, ...]:
        index = self.collate.label_index
        y = torch.tensor([index.get(label, -1) if label is not None else -1 for _, _, label, _, _ in items])
        weak, _ = self.collate([(text, None) for text, *_ in items])
        tokenizer = self.collate.tokenizer
        strong_ids = [
            self.dropout(tokenizer.encode(strong) or [tokenizer.pad_id], random.Random(f"{self.seed}-{epoch}-{i}-drop"))
            for _, strong, _, i, epoch in items
        ]
        return weak, pad_token_batch(strong_ids, tokenizer.pad_id), y, torch.tensor([item[3] for item in items])


def pad_token_batch(ids: list[list[int]], pad_id: int) -> dict[str, Tensor]:
    """Token id lists -> ``{"input_ids": long[B, L], "attention_mask": long[B, L], "lengths": long[B]}``."""
    lengths = torch.tensor([len(seq) for seq in ids], dtype=torch.long)
    input_ids = torch.full((len(ids), int(lengths.max())), pad_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": mask, "lengths": lengths}


def pad_to_length(inputs: dict[str, Tensor], length: int, pad_id: int) -> dict[str, Tensor]:
    """Right-pad ``input_ids`` (with ``pad_id``) and ``attention_mask`` (with 0) to ``length`` tokens."""
    extra = length - inputs["input_ids"].shape[1]
    if extra == 0:
        return inputs
    padded = dict(inputs)
    padded["input_ids"] = torch.nn.functional.pad(inputs["input_ids"], (0, extra), value=pad_id)
    padded["attention_mask"] = torch.nn.functional.pad(inputs["attention_mask"], (0, extra), value=0)
    return padded


class UnlabelledTextPool:
    """The unlabelled side of semi-supervised text: the pool, its weak/strong views and FixMatch's batches.

    Given to :class:`~ssl_lightning.data.text.TextClassificationDataModule` as ``unlabelled``, it
    turns the DataModule's training batches into the structure that
    :class:`~ssl_lightning.methods.fixmatch.FixMatch` and its subclasses train on (Lightning's
    ``CombinedLoader``, ``max_size_cycle``)::

        {"labelled":   (inputs, y: long[B]),
         "unlabelled": (weak_inputs, strong_inputs, y: long[M][, index: long[M]])}

    with ``inputs = {"input_ids": long[., L], "attention_mask": long[., L], "lengths": long[.]}``,
    all three padded (on the device) to one length ``L`` so that FixMatch's single forward pass
    can concatenate them; ``B`` is the DataModule's ``batch_size`` and ``M = mu * B``. The labelled
    texts get the weak view. The pool is every training text of the DataModule (labelled ones
    included, as in FixMatch), or the texts of ``file``. The unlabelled ``y`` are the true labels
    where known (``-1`` otherwise), only for logging pseudo-label accuracy; with ``indices`` each
    text's position in the pool (``0..num_unlabelled-1``) is appended (FlexMatch). An epoch is one
    pass over the pool. Views are made on the CPU, seeded by ``(seed, epoch, index)``: weak =
    ``weak`` EDA (default none), strong = ``strong`` EDA applied ``strong_ops`` times, then token
    dropout (``token_dropout``; masked tokens become ``[MASK]``, or ``<unk>`` for the word
    tokenizer). Back-translation is not available offline. The DataModule's own ``augment``,
    ``sampler`` and ``train_pool`` do not apply to these batches; val/test batches are unchanged.

    It lives in the DataModule (not a wrapper around it, as images' ``SemiSupervisedDataModule``)
    so that a semi-supervised text config takes the same ``--data.init_args.train_file`` /
    ``test_file`` / ``labels_per_class`` as every text config.

    Example config::

        data:
          class_path: ssl_lightning.data.text.TextClassificationDataModule
          init_args:
            train_file: train.csv
            tokenizer: word
            labels_per_class: 8
            batch_size: 8
            unlabelled:
              mu: 4
              strong: {alpha_sr: 0.0, alpha_ri: 0.2, alpha_rs: 0.2, p_rd: 0.2}
              token_dropout: 0.1

    Args:
        mu: unlabelled texts per labelled text in a step (FixMatch's mu).
        weak: EDA of the weak view (and of the labelled texts); ``None`` leaves them as they are.
        strong: EDA of the strong view; ``None`` leaves only token dropout.
        strong_ops: EDA operations applied one after another in the strong view.
        token_dropout: probability of masking each (non-special) token of the strong view.
        file: read the pool from this CSV/TSV/JSONL (the DataModule's ``text_column``) or ``.txt``
            file (one text a line) instead of the training texts; no labels needed.
        indices: add each unlabelled text's index in the pool to its batch (FlexMatch needs it).
    """

    def __init__(
        self,
        mu: int = 7,
        weak: EDA | None = None,
        strong: EDA | None = None,
        strong_ops: int = 2,
        token_dropout: float = 0.1,
        file: str | None = None,
        indices: bool = False,
    ) -> None:
        if mu < 1:
            raise ValueError(f"mu (unlabelled texts per labelled text) must be >= 1, got {mu}")
        if strong_ops < 1:
            raise ValueError(f"strong_ops must be >= 1, got {strong_ops}")
        if not 0.0 <= token_dropout < 1.0:
            raise ValueError(f"token_dropout must be in [0, 1), got {token_dropout}")
        if strong is None and token_dropout == 0:
            raise ValueError("the strong view would equal the text: give strong (an EDA) or token_dropout > 0.")
        self.mu = mu
        self.weak = weak
        self.strong = strong
        self.strong_ops = strong_ops
        self.token_dropout = token_dropout
        self.file = file
        self.indices = indices
        self.views: UnlabelledTextViews | None = None

    def build(self, data: TextClassificationDataModule) -> UnlabelledTextViews:
        """The pool's views for ``data`` (set up): read ``file`` or take the training texts (once)."""
        if self.views is not None:
            return self.views
        if self.file is not None:
            texts = read_unlabelled_texts(self.file, data.text_column, data.file_format)
            labels: list[str | None] = [None] * len(texts)
        else:
            texts, labels = data.datasets["all"].texts, data.datasets["all"].labels
        self.views = UnlabelledTextViews(texts, labels, self.weak, self.strong, self.strong_ops, data.seed + 1)
        known = known_words(texts, data.tokenizer)
        for eda in (self.weak, self.strong):
            if eda is not None and not eda.known_words:
                eda.known_words = known  # random insertion draws from these when a word has no synonym
        log.info("%d unlabelled texts", len(texts))
        return self.views

    def train_dataloader(self, data: TextClassificationDataModule, collate: TextCollator) -> CombinedLoader:
        """Labelled and unlabelled loaders of ``data`` side by side (an epoch is one pass over the pool)."""
        pool = self.build(data)
        assert data.tokenizer is not None
        batch_size = data.batch_size
        dropout = TokenDropout.for_tokenizer(self.token_dropout, data.tokenizer)
        sampler = EpochKeys(EpochSeededSampler(len(pool), data.seed + 1))
        unlabelled = resumable_loader(
            pool, self.mu * batch_size, sampler, UnlabelledCollator(collate, dropout, data.seed + 1), data.num_workers
        )
        steps = len(unlabelled)
        source = data.datasets["labelled"]
        labelled_set = TextDataset(source.texts, source.labels, self.weak, data.seed)
        sampler = EpochKeys(RepeatedSeededSampler(len(labelled_set), steps * batch_size, data.seed))
        labelled = resumable_loader(labelled_set, batch_size, sampler, collate, data.num_workers)
        return CombinedLoader({"labelled": labelled, "unlabelled": unlabelled}, mode="max_size_cycle")

    def training_views(self, batch: dict[str, Any], pad_id: int) -> dict[str, tuple[Any, ...]]:
        """Pad the labelled, weak and strong token batches to one length (FixMatch concatenates them)."""
        (x, y), (weak, strong, y_u, index) = batch["labelled"], batch["unlabelled"]
        length = max(inputs["input_ids"].shape[1] for inputs in (x, weak, strong))
        x, weak, strong = (pad_to_length(inputs, length, pad_id) for inputs in (x, weak, strong))
        unlabelled = (weak, strong, y_u, index) if self.indices else (weak, strong, y_u)
        return {"labelled": (x, y), "unlabelled": unlabelled}


class UnlabelledTextMixin:
    """The text DataModule's members for its ``unlabelled`` pool (the ``UnlabelledPoolData`` contract).

    The host sets ``unlabelled`` (an :class:`UnlabelledTextPool` or ``None``) and has ``setup``,
    ``tokenizer`` and ``trainer``; its ``train_dataloader`` returns the pool's loader when set.
    """

    unlabelled: UnlabelledTextPool | None
    tokenizer: WordTokenizer | HFTokenizer | None
    trainer: Any

    @property
    def num_unlabelled(self) -> int:
        """Texts in the unlabelled pool (0 without ``unlabelled``); runs ``setup`` if needed."""
        if self.unlabelled is None:
            return 0
        self.setup("fit")  # type: ignore[attr-defined]
        return len(self.unlabelled.build(self))  # type: ignore[arg-type]

    @property
    def unlabelled_indices(self) -> bool:
        """Whether unlabelled batches carry each text's index in the pool (``unlabelled.indices``)."""
        return self.unlabelled is not None and self.unlabelled.indices

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches of the pool: pad labelled, weak and strong tokens to one length; others unchanged."""
        if self.unlabelled is not None and self.trainer is not None and self.trainer.training:
            assert self.tokenizer is not None
            return self.unlabelled.training_views(batch, self.tokenizer.pad_id)
        return batch


def known_words(texts: list[str], tokenizer: WordTokenizer | HFTokenizer | None) -> list[str]:
    """Words random insertion may draw: the word vocabulary, else the pool's words seen at least twice."""
    if isinstance(tokenizer, WordTokenizer):
        return tokenizer.vocabulary.itos[2:]
    counts: dict[str, int] = {}
    for text in texts:
        for word in word_tokenize(text):
            counts[word] = counts.get(word, 0) + 1
    return sorted(word for word, count in counts.items() if count >= 2)
