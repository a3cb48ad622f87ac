"""BiLSTMClassifier: shapes with variable lengths, padding invariance, backbone contract, GloVe vectors."""

from __future__ import annotations

import pickle

import pytest
import torch

from ssl_lightning.nets.bilstm import BiLSTMClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def batch(lengths: list[int], width: int | None = None, vocab: int = 50, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(2, vocab, (n,), generator=generator)
    lengths_t = torch.tensor(lengths)
    mask = (torch.arange(width)[None] < lengths_t[:, None]).long()
    return {"input_ids": ids, "attention_mask": mask, "lengths": lengths_t}


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_shapes_with_variable_lengths(pooling):
    model = BiLSTMClassifier(vocab_size=50, num_classes=3, embed_dim=8, hidden_size=6, num_layers=2, pooling=pooling)
    inputs = batch([5, 1, 3])
    assert model(inputs).shape == (3, 3)
    assert model.forward_features(inputs).shape == (3, 12) == (3, model.num_features)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_padding_does_not_change_a_text_features(pooling):
    model = BiLSTMClassifier(vocab_size=50, num_classes=2, embed_dim=8, hidden_size=6, pooling=pooling).eval()
    short = batch([3], seed=1)
    padded = batch([3], width=9, seed=1)  # the same text with 6 extra pad positions
    assert torch.allclose(model(short), model(padded), atol=1e-6)


def test_backbone_contract_and_backward():
    model = BiLSTMClassifier(vocab_size=50, num_classes=4, embed_dim=8, hidden_size=6)
    inputs = batch([4, 2])
    model(inputs).sum().backward()
    assert model.embedding.weight.grad is not None and model.head.weight.grad is not None
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(inputs).shape == (2, 12)
    model.reset_classifier(7)
    assert model.forward_head(model.forward_features(inputs)).shape == (2, 7)
    assert pickle.loads(pickle.dumps(model)).num_classes == 7


def test_lengths_default_to_the_attention_mask_and_large_ids_are_an_error():
    model = BiLSTMClassifier(vocab_size=50, num_classes=2, embed_dim=8, hidden_size=6).eval()
    inputs = batch([4, 2])
    without = {k: v for k, v in inputs.items() if k != "lengths"}
    assert torch.allclose(model(inputs), model(without))
    inputs["input_ids"][0, 0] = 50
    with pytest.raises(ValueError, match="vocab_size"):
        model(inputs)


def test_glove_vectors_fill_the_vocabulary_rows(tmp_path):
    vectors = tmp_path / "glove.txt"
    vectors.write_text("good 1.0 2.0 3.0\nunused 9 9 9\nbad -1 -2 -3\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<pad>\n<unk>\nbad\ngood\nrare\n")
    model = BiLSTMClassifier(
        vocab_size=10,
        num_classes=2,
        embed_dim=3,
        hidden_size=4,
        pretrained_vectors=str(vectors),
        vocabulary_file=str(vocab),
        freeze_embeddings=True,
    )
    weight = model.embedding.weight
    assert torch.equal(weight[2], torch.tensor([-1.0, -2.0, -3.0])) and torch.equal(
        weight[3], torch.tensor([1.0, 2, 3])
    )
    assert not weight.requires_grad
    with pytest.raises(ValueError, match="embed_dim"):
        BiLSTMClassifier(vocab_size=10, embed_dim=4, pretrained_vectors=str(vectors), vocabulary_file=str(vocab))
    with pytest.raises(ValueError, match="vocabulary_file"):
        BiLSTMClassifier(vocab_size=10, embed_dim=3, pretrained_vectors=str(vectors))
