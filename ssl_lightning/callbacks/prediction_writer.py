"""Write ``predict`` results to a CSV file with label names, not only class indices.

``ssl-lightning predict`` returns the predicted class indices of
:meth:`~ssl_lightning.methods.Classifier.predict_step` and writes nothing. This callback writes
one CSV row per predicted example: its position in the predict set, the input text (text
DataModules), the true label when the predict data has one, the predicted index and the
predicted label name. The names come from the DataModule's label map (``decode`` or
``class_names``); for a :class:`~ssl_lightning.data.text.TextClassificationDataModule` that map
is restored from the checkpoint (``--ckpt_path``), so the names are the ones the model was
trained with even if the files on the command line changed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor


def label_names(datamodule: Any, indices: list[int]) -> list[str]:
    """Class indices -> names via ``datamodule.decode`` or ``datamodule.class_names``; the index as text otherwise."""
    if datamodule is not None and hasattr(datamodule, "decode"):
        return list(datamodule.decode(indices))
    names = getattr(datamodule, "class_names", None)
    if names:
        return [str(names[i]) for i in indices]
    return [str(i) for i in indices]


class PredictionWriter(BasePredictionWriter):
    """Write ``ssl-lightning predict`` outputs to a CSV: ``index, [text, label,] pred_index, pred_label``.

    ``index`` is the example's position in the predict set (``predict_file`` rows with text, in
    file order, or the test set when no ``predict_file`` is given); ``text`` and ``label`` (the
    true label name; left out when the predict data has no labels) are written when the predict
    dataset has ``texts`` / ``labels`` (text DataModules; image DataModules have ``labels`` as a
    tensor of class indices, written as names). Predictions are the
    ``long[B]`` class indices that ``predict_step`` returns. Under DDP every rank writes its own
    file (``<stem>.rank<R>.csv``); the ``index`` column lets them be merged.

    Example (command line, appended to the config's callbacks)::

        ssl-lightning predict --config lightning_logs/version_0/config.yaml --ckpt_path best.ckpt \\
          --data.init_args.predict_file new_texts.csv \\
          --trainer.callbacks+=ssl_lightning.callbacks.prediction_writer.PredictionWriter \\
          --trainer.callbacks.output_file predictions.csv

    Example config::

        trainer:
          callbacks:
            - class_path: ssl_lightning.callbacks.prediction_writer.PredictionWriter
              init_args: {output_file: predictions.csv}

    Args:
        output_file: CSV path; ``None`` writes ``predictions.csv`` in the trainer's log directory
            (its ``default_root_dir`` without a logger).
        overwrite: replace an existing file; otherwise an existing file is an error.
    """

    def __init__(self, output_file: str | None = None, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_file = output_file
        self.overwrite = overwrite
        self.path: Path | None = None
        self._rows: list[list[Any]] = []
        self._has_text = self._has_labels = False

    def _resolve_path(self, trainer: pl.Trainer) -> Path:
        path = Path(self.output_file) if self.output_file else Path(trainer.log_dir or trainer.default_root_dir)
        if not self.output_file:
            path = path / "predictions.csv"
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path = self._resolve_path(trainer)
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{self.path} already exists; PredictionWriter does not overwrite it. Choose another "
                f"--trainer.callbacks.output_file or pass --trainer.callbacks.overwrite true."
            )
        self._rows = []
        self._has_text = self._has_labels = False

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(prediction, Tensor) or prediction.ndim != 1:
            raise ValueError(
                f"PredictionWriter expects predict_step to return class indices long[B], got "
                f"{type(prediction).__name__}{tuple(prediction.shape) if isinstance(prediction, Tensor) else ''}."
            )
        predicted = prediction.tolist()
        if batch_indices is None:  # a custom loader Lightning could not track: positions in arrival order
            start = len(self._rows)
            batch_indices = range(start, start + len(predicted))
        loader = trainer.predict_dataloaders
        if isinstance(loader, list | tuple):
            loader = loader[dataloader_idx]
        dataset = getattr(loader, "dataset", None)
        texts = getattr(dataset, "texts", None)
        labels = getattr(dataset, "labels", None)
        datamodule = getattr(trainer, "datamodule", None)
        names = label_names(datamodule, predicted)
        if batch_idx == 0:  # once per loader: the columns depend on the dataset, not the batch
            self._has_text = texts is not None
            self._has_labels = isinstance(labels, Tensor) or (
                labels is not None and any(label is not None for label in labels)
            )
        for index, pred, name in zip(batch_indices, predicted, names, strict=True):
            row: list[Any] = [int(index)]
            if texts is not None:
                row.append(texts[index])
            if self._has_labels:
                label = labels[index]
                if isinstance(label, Tensor):  # image datasets keep class indices: write the name
                    label = label_names(datamodule, [int(label)])[0]
                row.append("" if label is None else label)
            self._rows.append([*row, pred, name])

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.path is not None
        header = ["index"]
        if self._has_text:
            header.append("text")
        if self._has_labels:
            header.append("label")
        header += ["pred_index", "pred_label"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(sorted(self._rows, key=lambda row: row[0]))
        self._rows = []
