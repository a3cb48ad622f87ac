"""The subset file: which training examples are labelled, saved so a subset is reproducible.

One JSON format serves every producer (``labels_per_class`` resampling, the selection
strategies, active-learning rounds) and every consumer (``--data.subset_file``)::

    {
      "format": "ssl_lightning.subset/1",
      "dataset": "CIFAR10DataModule",      # who the indices belong to
      "num_train": 45000,                  # size of the pool the indices index into
      "indices": [12, 873, ...],           # sorted, distinct, into that pool
      "per_class_counts": {"0": 4, ...},   # informative; recomputed on load
      "meta": {"strategy": "typiclust", "seed": 0, "budget": 40, ...}
    }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssl_lightning.utils.jsonfile import read_json_file

FORMAT = "ssl_lightning.subset/1"


def save_subset(
    path: str | Path,
    indices: list[int],
    dataset: str,
    num_train: int,
    per_class_counts: dict[str, int] | None = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a subset file; refuses to overwrite an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite a subset file. Choose another --output path.")
    ordered = sorted(int(i) for i in indices)
    if len(set(ordered)) != len(ordered):
        raise ValueError("subset indices must be distinct")
    if ordered and not (0 <= ordered[0] and ordered[-1] < num_train):
        raise ValueError(f"subset indices must lie in [0, {num_train}), got {ordered[0]}..{ordered[-1]}")
    payload = {
        "format": FORMAT,
        "dataset": dataset,
        "num_train": int(num_train),
        "indices": ordered,
        "per_class_counts": per_class_counts or {},
        "meta": meta or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    return path


def load_subset(path: str | Path, dataset: str, num_train: int) -> list[int]:
    """Read a subset file and check that it belongs to ``dataset`` with a pool of ``num_train``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: wrong format, another dataset, another pool size, or bad indices.
    """
    path = Path(path)
    payload = read_json_file(path, "subset file", "Write one with ssl-lightning-select.")
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a subset file (format {payload.get('format')!r}, expected {FORMAT!r}).")
    if payload["dataset"] != dataset:
        raise ValueError(
            f"subset file {path} was made for {payload['dataset']}, not {dataset}. Use a subset file of this dataset."
        )
    if payload["num_train"] != num_train:
        raise ValueError(
            f"subset file {path} indexes a training pool of {payload['num_train']} examples but this DataModule "
            f"has {num_train} (different val_size or data?). Recreate the subset with the same data settings."
        )
    indices = [int(i) for i in payload["indices"]]
    if len(set(indices)) != len(indices) or any(not 0 <= i < num_train for i in indices):
        raise ValueError(f"subset file {path} has duplicate or out-of-range indices (pool size {num_train}).")
    return sorted(indices)
