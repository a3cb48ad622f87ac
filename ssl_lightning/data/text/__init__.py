"""Text classification from the user's own files (CSV, TSV, JSONL) or a Hugging Face dataset.

- :mod:`~ssl_lightning.data.text.reading`: reading files and Hugging Face datasets into
  :class:`TextTable` s, with errors that name the file, the line and the fix;
- :mod:`~ssl_lightning.data.text.dataset`: :class:`TextDataset`, the ``(epoch, index)`` keys of
  seeded augmentation, and :class:`TextCollator` (tokenize and pad a batch);
- :mod:`~ssl_lightning.data.text.datamodule`: :class:`TextClassificationDataModule`;
- :mod:`~ssl_lightning.data.text.semisup`: :class:`UnlabelledTextPool` (the DataModule's ``unlabelled`` pool:
  FixMatch's batches for text).

Every name importable from ``ssl_lightning.data.text`` before it became a package still is.
"""

from ssl_lightning.data.text.datamodule import TextClassificationDataModule
from ssl_lightning.data.text.dataset import EpochKeys, EpochKeySampler, TextBatch, TextCollator, TextDataset
from ssl_lightning.data.text.reading import (
    EXTENSIONS,
    FileFormat,
    TextTable,
    _label_value,
    detect_format,
    read_hf_dataset,
    read_text_file,
    sort_labels,
)
from ssl_lightning.data.text.semisup import UnlabelledTextPool

__all__ = [
    "EXTENSIONS",
    "EpochKeySampler",
    "EpochKeys",
    "FileFormat",
    "TextBatch",
    "TextClassificationDataModule",
    "TextCollator",
    "TextDataset",
    "UnlabelledTextPool",
    "TextTable",
    "_label_value",
    "detect_format",
    "read_hf_dataset",
    "read_text_file",
    "sort_labels",
]
