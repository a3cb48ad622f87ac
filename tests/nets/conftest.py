"""Fixtures of the net tests: a tiny randomly initialised BERT on disk and a text batch for it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def text_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 64, (4, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[2:, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}
