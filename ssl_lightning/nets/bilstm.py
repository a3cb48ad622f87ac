"""Bidirectional-LSTM text classifier, the seed material's text baseline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ssl_lightning.nets.head import ClassifierHeadMixin

log = logging.getLogger(__name__)


def read_word_vectors(path: str | Path, vocabulary: list[str], embed_dim: int) -> tuple[Tensor, Tensor]:
    """Read a GloVe-format text file (``word v1 v2 ... vD`` a line) for the words of ``vocabulary``.

    Returns:
        ``(vectors: float[V, D], found: bool[V])``; rows of words absent from the file are zero.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line's dimension differs from ``embed_dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word vectors file {path} does not exist (GloVe text format: word v1 ... vD).")
    row_of = {word: i for i, word in enumerate(vocabulary)}
    vectors = torch.zeros(len(vocabulary), embed_dim)
    found = torch.zeros(len(vocabulary), dtype=torch.bool)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            # Split from the right: some GloVe files have words containing spaces.
            parts = line.rstrip("\n").rsplit(" ", embed_dim)
            if len(parts) != embed_dim + 1:
                raise ValueError(
                    f"{path} line {number} has {len(parts) - 1} numbers but embed_dim is {embed_dim}. "
                    f"Set embed_dim to the file's vector size."
                )
            row = row_of.get(parts[0])
            if row is not None:
                vectors[row] = torch.tensor([float(v) for v in parts[1:]])
                found[row] = True
    return vectors, found


class BiLSTMClassifier(ClassifierHeadMixin, nn.Module):
    """Embedding -> bidirectional LSTM over packed sequences -> mean/max pooling -> linear head.

    Padding never reaches the LSTM (sequences are packed by length) nor the pooling (masked),
    so a text's features do not depend on how long the other texts of its batch are.
    Follows the backbone contract (:mod:`ssl_lightning.nets.head`): ``num_features``
    (``2 * hidden_size``), ``forward_features``, ``forward_head``, ``reset_classifier``;
    ``num_classes=0`` makes the head the identity.

    Shapes: ``inputs = {"input_ids": long[B, L], "lengths": long[B], ...}`` -> ``float[B, num_classes]``.

    Example config::

        backbone:
          class_path: ssl_lightning.nets.bilstm.BiLSTMClassifier
          init_args: {vocab_size: 20000, num_classes: 4, embed_dim: 100, hidden_size: 128, pooling: max}

    Args:
        vocab_size: rows of the embedding; at least the DataModule's vocabulary size.
        num_classes: output classes; 0 for no head.
        embed_dim: word vector size.
        hidden_size: LSTM units per direction.
        num_layers: stacked LSTM layers.
        dropout: dropout on the embeddings, between LSTM layers and before the head.
        pooling: ``mean`` or ``max`` over the non-padded time steps.
        padding_idx: the ``<pad>`` index (its embedding stays zero).
        pretrained_vectors: GloVe-format word vectors file; needs ``vocabulary_file``.
        vocabulary_file: the DataModule's vocabulary (one token a line, line ``i`` is index ``i``),
            to know which row each pretrained vector goes to.
        freeze_embeddings: keep the embedding fixed (useful with pretrained vectors).
    """

    def __init__(
        self,
        vocab_size: int = 20000,
        num_classes: int = 2,
        embed_dim: int = 100,
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.3,
        pooling: Literal["mean", "max"] = "max",
        padding_idx: int = 0,
        pretrained_vectors: str | None = None,
        vocabulary_file: str | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {pooling!r}")
        self.vocab_size = vocab_size
        self.pooling = pooling
        self.num_features = 2 * hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.reset_classifier(num_classes)
        if pretrained_vectors is not None:
            if vocabulary_file is None:
                raise ValueError(
                    "pretrained_vectors needs vocabulary_file (the DataModule's vocabulary, one token a line) to "
                    "place each vector; give the same file to the DataModule's vocabulary_file."
                )
            self.load_vectors(pretrained_vectors, Path(vocabulary_file).read_text(encoding="utf-8").splitlines())
        self.embedding.weight.requires_grad_(not freeze_embeddings)

    @torch.no_grad()
    def load_vectors(self, path: str | Path, vocabulary: list[str]) -> int:
        """Copy the vectors of ``path`` (GloVe format) into the rows of ``vocabulary``'s words.

        Returns the number of words found. Words without a vector keep their random init.
        """
        if len(vocabulary) > self.vocab_size:
            raise ValueError(f"vocabulary has {len(vocabulary)} tokens but vocab_size is {self.vocab_size}.")
        vectors, found = read_word_vectors(path, vocabulary, self.embedding.embedding_dim)
        rows = torch.nonzero(found).flatten()
        self.embedding.weight[rows] = vectors[rows]
        log.info("%s: %d of %d vocabulary words have pretrained vectors", path, len(rows), len(vocabulary))
        return len(rows)

    def forward_features(self, inputs: dict[str, Tensor]) -> Tensor:
        """``{"input_ids": long[B, L], "lengths": long[B]}`` -> pooled float[B, 2 * hidden_size]."""
        ids = inputs["input_ids"]
        lengths = inputs.get("lengths")
        if lengths is None:
            lengths = inputs["attention_mask"].sum(dim=1)
        if int(ids.max()) >= self.vocab_size:
            raise ValueError(
                f"token id {int(ids.max())} >= vocab_size {self.vocab_size}: the vocabulary is larger than the "
                f"embedding. Set vocab_size to at least the DataModule's vocabulary size (max_vocab_size)."
            )
        lengths = lengths.clamp_min(1)
        embedded = self.dropout(self.embedding(ids))
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        # total_length keeps the time dimension equal to the batch's L even if every text is shorter.
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=ids.shape[1])
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        if self.pooling == "max":
            pooled = output.masked_fill(~mask, float("-inf")).amax(dim=1)
        else:
            pooled = (output * mask).sum(dim=1) / lengths[:, None].to(output.dtype)
        return self.dropout(pooled)
