"""Reading texts and labels: CSV/TSV/JSONL files and Hugging Face datasets, with precise errors.

Bad input fails early with a message that names the file, the line and the fix: a missing
file or column, an empty file, a label that is empty or NaN, bytes that are not UTF-8.
Rows whose text is empty (or only whitespace) are **skipped and counted**
(:attr:`TextTable.skipped`) and logged as a warning.

Example::

    table = read_text_file("train.csv", text_column="text", label_column="label")
    table.texts[0], table.labels[0], table.lines[0]     # "a good film", "pos", 2
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

FileFormat = Literal["auto", "csv", "tsv", "jsonl"]
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_INT_RE = re.compile(r"^[+-]?\d+$")


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


def read_hf_dataset(
    name: str, config: str | None, text_column: str, label_column: str
) -> tuple[dict[str, TextTable], list[str] | None]:
    """Read a Hugging Face dataset's train/validation/test splits as ``{"train"|"val"|"test": TextTable}``.

    Rows without text or label are skipped (``TextTable.skipped`` holds their row numbers); a split
    without any labelled row is left out (the DataModule holds it out of train instead, like a
    missing file). Also returns the train split's ``ClassLabel`` names (the dataset's own label
    order), or ``None`` for plain label columns.

    Raises:
        ValueError: the ``datasets`` library is missing, a column is missing, or there is no train split.
    """
    try:
        from datasets import load_dataset
    except ImportError as err:
        raise ValueError("hf_dataset needs the datasets library: pip install datasets") from err
    dataset = load_dataset(name, config)
    tables = {}
    class_names = None
    for split, hf_split in [("train", "train"), ("val", "validation"), ("test", "test")]:
        if hf_split not in dataset:
            continue
        part = dataset[hf_split]
        for column in (text_column, label_column):
            if column not in part.column_names:
                raise ValueError(
                    f"{name} split {hf_split!r} has no column {column!r}; its columns are {part.column_names}."
                )
        names = getattr(part.features[label_column], "names", None)  # ClassLabel columns store indices
        if names is not None and split == "train":
            class_names = list(names)
        raw = part[label_column]
        # ClassLabel index -1 marks an unlabelled example (e.g. GLUE test sets): treated like a missing label.
        labels = [_label_value(v) if names is None else (names[v] if v >= 0 else None) for v in raw]
        texts = part[text_column]
        keep = [i for i, (text, label) in enumerate(zip(texts, labels, strict=True)) if text and label]
        if not keep:
            log.warning("%s split %r has no labelled rows; holding %s out of train", name, hf_split, split)
            continue
        kept = set(keep)
        dropped = [i for i in range(len(texts)) if i not in kept]
        if dropped:
            log.warning("%s split %r: skipped %d rows without text or label", name, hf_split, len(dropped))
        tables[split] = TextTable([texts[i] for i in keep], [labels[i] for i in keep], keep, dropped)
    if "train" not in tables:
        raise ValueError(f"{name} has no 'train' split; its splits are {list(dataset)}.")
    return tables, class_names
