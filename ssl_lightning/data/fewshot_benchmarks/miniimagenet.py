"""miniImageNet (Vinyals et al. 2016) with the class split of Ravi & Larochelle (2017): 64/16/20 classes
of 600 images each, read from any of the three layouts its users have."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch

from ssl_lightning.data.episodic import Pool
from ssl_lightning.data.fewshot_benchmarks.common import (
    SplitBenchmark,
    hwc_to_tensor,
    load_pickle,
    read_class_folders,
    text_key,
)
from ssl_lightning.data.folder import decode_image

log = logging.getLogger(__name__)

#: File names a split may have in each layout (learn2learn calls the validation pickle "validation").
PICKLE_NAMES = {
    "train": ("mini-imagenet-cache-train.pkl",),
    "val": ("mini-imagenet-cache-val.pkl", "mini-imagenet-cache-validation.pkl"),
    "test": ("mini-imagenet-cache-test.pkl",),
}
LAYOUTS = ("pickle", "folders", "csv")


class MiniImageNet(SplitBenchmark):
    """miniImageNet from one root folder, whichever public layout it holds (detected, and logged):

    * ``"pickle"``: ``mini-imagenet-cache-{train,val,test}.pkl``, dicts with ``image_data``
      (uint8[N, 84, 84, 3]) and ``class_dict`` (wnid -> indices), as learn2learn and many
      repositories distribute them (``...-validation.pkl`` is accepted for val).
    * ``"folders"``: ``{train,val,test}/<wnid>/*.jpg``, what the MAML reference code's
      ``proc_images.py`` writes (84x84 JPEGs), often beside the CSVs.
    * ``"csv"``: Ravi & Larochelle's ``train.csv``/``val.csv``/``test.csv`` (``filename,label``
      rows) with every image in one flat ``images/`` folder (full-size ImageNet JPEGs: resized
      to ``image_size`` on reading).

    No official mirror exists, so there is no download: get the files from the MAML/Ravi &
    Larochelle instructions (CSV + ImageNet), or a repository that ships the pickles.

    Example config::

        source:
          class_path: ssl_lightning.data.fewshot_benchmarks.MiniImageNet
          init_args: {root: data/miniimagenet, image_size: 84}

    Args:
        root: the folder holding one of the layouts above.
        image_size: side of the square images (84 is the benchmark's; ``None`` keeps the files' size).
        layout: ``"auto"`` picks the first layout found in the order pickle, folders, csv.
    """

    title = "miniImageNet"

    def __init__(self, root: str | Path, image_size: int | None = 84, layout: str = "auto") -> None:
        super().__init__(root, image_size)
        if layout not in ("auto", *LAYOUTS):
            raise ValueError(f"layout must be one of auto, {', '.join(LAYOUTS)}; got {layout!r}")
        self.layout = layout

    def detect_layout(self) -> str:
        """The layout under ``root`` (see the class docstring); a clear error naming all three if none."""
        if self.layout != "auto":
            return self.layout
        found = {
            "pickle": all(any((self.root / n).is_file() for n in names) for names in PICKLE_NAMES.values()),
            "folders": all((self.root / split).is_dir() for split in PICKLE_NAMES),
            "csv": all((self.root / f"{split}.csv").is_file() for split in PICKLE_NAMES)
            and (self.root / "images").is_dir(),
        }
        for layout in LAYOUTS:
            if found[layout]:
                log.info("miniImageNet at %s: reading the %r layout", self.root, layout)
                return layout
        raise FileNotFoundError(
            f"miniImageNet not found under {self.root}. Expected one of: (1) mini-imagenet-cache-train.pkl, "
            f"mini-imagenet-cache-val.pkl and mini-imagenet-cache-test.pkl; (2) folders train/, val/, test/ with "
            f"one folder of JPEGs per wnid; (3) train.csv, val.csv, test.csv (filename,label) and an images/ "
            f"folder. Point --data.init_args.source.init_args.root at that folder."
        )

    def read_split(self, split: str) -> Pool:
        layout = self.detect_layout()
        if layout == "pickle":
            return self._read_pickle(split)
        if layout == "folders":
            return self._read_folders(split)
        return self._read_csv(split)

    def _read_pickle(self, split: str) -> Pool:
        path = next((self.root / n for n in PICKLE_NAMES[split] if (self.root / n).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"miniImageNet: {self.root / PICKLE_NAMES[split][0]} is missing.")
        cache = load_pickle(path)
        try:
            data = np.asarray(text_key(cache, "image_data"))
            class_dict = text_key(cache, "class_dict")
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a miniImageNet cache (a dict with image_data and class_dict).") from err
        names = sorted(str(k.decode() if isinstance(k, bytes) else k) for k in class_dict)
        by_name = {str(k.decode() if isinstance(k, bytes) else k): v for k, v in class_dict.items()}
        order = np.concatenate([np.asarray(by_name[n], dtype=np.int64) for n in names])
        labels = torch.cat([torch.full((len(by_name[n]),), c, dtype=torch.long) for c, n in enumerate(names)])
        return hwc_to_tensor(data[order], self.image_size), labels, names

    def _read_folders(self, split: str) -> Pool:
        folder = self.root / split
        classes = sorted(p for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise FileNotFoundError(f"miniImageNet: {folder} has no class folders (expected one folder per wnid).")
        return read_class_folders(classes, self.image_size, self.title)

    def _read_csv(self, split: str) -> Pool:
        table = self.root / f"{split}.csv"
        with table.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
        if rows and rows[0][:2] == ["filename", "label"]:
            rows = rows[1:]
        if not rows or any(len(row) < 2 for row in rows):
            raise ValueError(f"{table} must hold filename,label rows (Ravi & Larochelle's split files).")
        names = sorted({row[1] for row in rows})
        index = {name: c for c, name in enumerate(names)}
        rows.sort(key=lambda row: (index[row[1]], row[0]))
        missing = [row[0] for row in rows if not (self.root / "images" / row[0]).is_file()]
        if missing:
            raise FileNotFoundError(
                f"miniImageNet: {len(missing)} images listed in {table.name} are not in {self.root / 'images'} "
                f"(first: {missing[0]}). Put every image of the CSVs in that folder."
            )
        arrays = [decode_image(self.root / "images" / row[0], self.image_size, colour=True) for row in rows]
        labels = torch.tensor([index[row[1]] for row in rows])
        return hwc_to_tensor(arrays, self.image_size), labels, names
