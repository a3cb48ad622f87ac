"""Trainability has one owner: what a backbone was built frozen stays frozen under every method and mode.

A backbone declares what it trains by its parameters' ``requires_grad`` when it is built
(``HFEncoder(freeze_layers=2)`` / ``freeze_encoder=True``, ``BiLSTMClassifier(freeze_embeddings=True)``,
a LeNet handed over with a frozen layer as an adapter wrapper would). Classifier's linear probe,
SetFit's head phase, FeatureProbe and GradualUnfreezing may freeze more for a while, and must
thaw only that. The HFEncoder is a tiny randomly initialised BERT saved to a temporary folder.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader

from ssl_lightning.callbacks.finetuning import GradualUnfreezing
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.methods.feature_cache import FeatureProbe
from ssl_lightning.methods.fixmatch import FixMatch
from ssl_lightning.methods.flexmatch import FlexMatch
from ssl_lightning.methods.freematch import FreeMatch
from ssl_lightning.methods.setfit import SetFitClassifier
from ssl_lightning.methods.softmatch import SoftMatch
from ssl_lightning.nets import LeNet
from ssl_lightning.nets.bilstm import BiLSTMClassifier
from ssl_lightning.nets.conv4 import Conv4
from ssl_lightning.nets.hf_encoder import HFEncoder
from ssl_lightning.nets.pretrained import TimmBackbone
from ssl_lightning.utils.freezing import Freezer
from tests.methods.test_transfer import trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

NUM_CLASSES, VOCAB, BATCH, LENGTH = 3, 40, 6, 7
# How each HFEncoder variant is built, and which of its parameter names it declares frozen.
HF_OPTIONS = {"freeze_layers": {"freeze_layers": 2}, "freeze_encoder": {"freeze_encoder": True}, "lora": {}}
HF_FROZEN: dict[str, Callable[[str], bool]] = {
    "freeze_layers": lambda n: n.startswith(
        ("encoder.embeddings.", "encoder.encoder.layer.0.", "encoder.encoder.layer.1.")
    ),
    "freeze_encoder": lambda n: n.startswith("encoder."),
    "lora": lambda n: n.startswith("encoder.") and ".lora_" not in n,
}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 3-layer BERT (hidden size 32) as a local Hugging Face model folder."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    path = Path(tmp_path_factory.mktemp("tiny_bert"))
    BertModel(config).save_pretrained(path)
    return str(path)


def hf_encoder(bert: str, option: str, dropout: float = 0.1) -> HFEncoder:
    """The tiny BERT as an HFEncoder; ``"lora"``: with peft LoRA adapters on its attention's query and
    value, injected in place (peft freezes the base weights, the adapters train), as a user would."""
    net = HFEncoder(bert, NUM_CLASSES, dropout=dropout, **HF_OPTIONS[option])
    if option == "lora":
        peft = pytest.importorskip("peft")
        peft.inject_adapter_in_model(peft.LoraConfig(r=2, target_modules=["query", "value"]), net.encoder)
    return net


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1)


def trainable(module: nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def values(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, value in after.items() if not torch.equal(before[name], value)}


def fit(model: pl.LightningModule, batches: list, callbacks: list[Callback] | None = None, epochs: int = 1) -> None:
    """Train on these ready-made batches (``batch_size=None``: the loader yields them as they are)."""
    trainer(max_epochs=epochs, callbacks=callbacks or []).fit(
        model, train_dataloaders=DataLoader(batches, batch_size=None)
    )


def text_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """``{"input_ids": long[B, L], "attention_mask": long[B, L], "lengths": long[B]}``, no padding."""
    ids = torch.randint(1, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "lengths": torch.full((BATCH,), LENGTH)}


def pooled(model: FlexMatch) -> FlexMatch:
    """FlexMatch on ready-made batches (no DataModule): a pool of one batch, indexed 0..BATCH-1."""
    model.track_pool(BATCH)
    return model


def labels() -> torch.Tensor:
    return torch.arange(BATCH) % NUM_CLASSES


def test_freezer_thaws_only_what_it_froze():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    net[0].weight.requires_grad_(False)
    freezer = Freezer()
    freezer.freeze(net.named_parameters())
    freezer.freeze(net.named_parameters())  # twice: still knows what it switched off
    assert trainable(net) == set() and freezer.frozen
    freezer.unfreeze(net.named_parameters())
    assert trainable(net) == {"0.bias", "1.weight", "1.bias"} and not freezer.frozen


def test_a_pickled_linear_probe_still_thaws_only_what_it_froze():
    """The record is of names, so a copy (pickle, deepcopy, a DDP spawn) unfreezes its own parameters."""
    model = pickle.loads(pickle.dumps(Classifier(partly_frozen_lenet(), finetune="linear_probe")))
    assert trainable(model) == {"backbone.head.weight", "backbone.head.bias"}
    model.set_backbone_frozen(False)
    assert trainable(model) == {f"backbone.{n}" for n in trainable(partly_frozen_lenet())}


# ---- Classifier(HFEncoder(...)): the case, through real fit runs ----------------------------
class Record(Callback):
    """Per epoch: the backbone's frozen parameter names and whether its encoder trains, then its values."""

    def __init__(self) -> None:
        self.frozen: dict[int, set[str]] = {}
        self.encoder_training: dict[int, bool] = {}
        self.after_epoch: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        backbone = pl_module.backbone
        self.frozen[trainer.current_epoch] = {n for n, p in backbone.named_parameters() if not p.requires_grad}
        self.encoder_training[trainer.current_epoch] = backbone.encoder.training

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.after_epoch[trainer.current_epoch] = values(pl_module.backbone)


def hf_classifier(tiny_bert: str, option: str, finetune: str) -> tuple[Classifier, set[str], set[str]]:
    """The model, the names the backbone declared frozen, and the names of its body (all but the head)."""
    torch.manual_seed(0)
    backbone = hf_encoder(tiny_bert, option, dropout=0.0)
    declared = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    body = {n for n, _ in backbone.named_parameters() if not n.startswith("head.")}
    assert declared == {n for n in body if HF_FROZEN[option](n)}
    model = Classifier(backbone, finetune=finetune, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2))
    return model, declared, body


@pytest.mark.parametrize("finetune", ["full", "linear_probe"])
@pytest.mark.parametrize("option", list(HF_OPTIONS))
def test_classifier_keeps_the_encoders_frozen_layers_through_fit(tiny_bert, option, finetune):
    model, declared, body = hf_classifier(tiny_bert, option, finetune)
    frozen = declared if finetune == "full" else body
    assert {n for n, p in model.backbone.named_parameters() if not p.requires_grad} == frozen
    start, record = values(model.backbone), Record()
    fit(model, [(text_batch(seed), labels()) for seed in range(3)], callbacks=[record])
    assert record.frozen[0] == frozen
    assert {n for n, p in model.backbone.named_parameters() if not p.requires_grad} == frozen
    moved = changed(start, values(model.backbone))
    assert not moved & frozen
    assert {"head.weight", "head.bias"} <= moved
    if finetune == "full" and option != "freeze_encoder":  # what the backbone left trainable trains
        assert moved & (body - declared)
    # HFEncoder keeps its frozen encoder's dropout off; a linear probe keeps the whole body in eval mode.
    assert record.encoder_training[0] is (finetune == "full" and option != "freeze_encoder")


@pytest.mark.parametrize("finetune", ["full", "linear_probe"])
@pytest.mark.parametrize("option", list(HF_OPTIONS))
def test_gradual_unfreezing_thaws_only_what_it_froze(tiny_bert, option, finetune):
    model, declared, body = hf_classifier(tiny_bert, option, finetune)
    start, record = values(model.backbone), Record()
    fit(model, [(text_batch(seed), labels()) for seed in range(2)], [GradualUnfreezing(1), record], epochs=2)
    assert record.frozen == {0: body, 1: declared}
    assert not model.backbone_frozen
    assert {n for n, p in model.backbone.named_parameters() if not p.requires_grad} == declared
    end = values(model.backbone)
    assert not changed(start, end) & declared
    assert not changed(start, record.after_epoch[0]) & body  # epoch 0: only the head trains
    if option != "freeze_encoder":  # what the backbone left trainable trains once unfrozen
        assert changed(record.after_epoch[0], end) & (body - declared)
    assert record.encoder_training == {0: False, 1: option != "freeze_encoder"}


class RecordModes(Callback):
    """Per epoch: whether any body module that is not batch norm is in training mode, and any batch norm."""

    def __init__(self) -> None:
        self.modes: dict[int, tuple[bool, bool]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        body = [m for name, m in pl_module.backbone.named_modules() if name and not name.startswith("head")]
        is_bn = [isinstance(m, nn.modules.batchnorm._BatchNorm) for m in body]
        self.modes[trainer.current_epoch] = (
            any(m.training for m, bn in zip(body, is_bn, strict=True) if not bn),
            any(m.training for m, bn in zip(body, is_bn, strict=True) if bn),
        )


def test_eval_modes_compose_frozen_batchnorm_stays_in_eval_after_unfreezing():
    torch.manual_seed(0)
    backbone = TimmBackbone("test_efficientnet", num_classes=NUM_CLASSES, in_chans=1, input_size=32)
    model = Classifier(backbone, finetune="linear_probe", freeze_batchnorm=True, optimizer=sgd)
    record = RecordModes()
    fit(model, [batch_for("image", "classifier_full", backbone)], [GradualUnfreezing(1), record], epochs=2)
    assert record.modes == {0: (False, False), 1: (True, False)}


def test_setfit_pair_phase_refuses_a_body_built_frozen(tiny_bert):
    model = SetFitClassifier(HFEncoder(tiny_bert, num_classes=NUM_CLASSES, freeze_encoder=True), contrastive_epochs=1)
    with pytest.raises(ValueError, match="built with all of it frozen"):
        fit(model, [(text_batch(), labels())])


# ---- every backbone x method pair: trainable = declared (+ head) minus what the mode froze ------------
def partly_frozen_lenet() -> LeNet:
    """A LeNet handed over with its first convolution frozen, as a user (or an adapter wrapper) would."""
    net = LeNet(NUM_CLASSES, in_chans=1, input_size=16, padding=2)
    net.features[0].requires_grad_(False)
    return net


BACKBONES: dict[str, tuple[str, Callable[[str], nn.Module]]] = {
    "lenet": ("image", lambda bert: LeNet(NUM_CLASSES, in_chans=1, input_size=16, padding=2)),
    "lenet_conv1_frozen": ("image", lambda bert: partly_frozen_lenet()),
    "conv4": ("image", lambda bert: Conv4(NUM_CLASSES, in_chans=1, input_size=16, hidden=8)),
    "timm": (
        "image",
        lambda bert: TimmBackbone("test_efficientnet", num_classes=NUM_CLASSES, in_chans=1, input_size=32),
    ),
    "bilstm_fixed_embeddings": (
        "text",
        lambda bert: BiLSTMClassifier(VOCAB, NUM_CLASSES, embed_dim=8, hidden_size=8, freeze_embeddings=True),
    ),
    "hf_freeze_layers": ("text", lambda bert: hf_encoder(bert, "freeze_layers")),
    "hf_freeze_encoder": ("text", lambda bert: hf_encoder(bert, "freeze_encoder")),
    "hf_lora": ("text", lambda bert: hf_encoder(bert, "lora")),
}
# name -> (build the method around a backbone, whether the mode trains the body)
METHODS: dict[str, tuple[Callable[[nn.Module], pl.LightningModule], bool]] = {
    "classifier_full": (lambda b: Classifier(b, optimizer=sgd), True),
    "classifier_lr_groups": (lambda b: Classifier(b, optimizer=sgd, backbone_lr_multiplier=0.5), True),
    "classifier_linear_probe": (lambda b: Classifier(b, optimizer=sgd, finetune="linear_probe"), False),
    "fixmatch": (lambda b: FixMatch(b, optimizer=sgd, threshold=0.0, ema_decay=0.5), True),
    "flexmatch": (lambda b: pooled(FlexMatch(b, optimizer=sgd, threshold=0.0, ema_decay=0.5)), True),
    "freematch": (lambda b: FreeMatch(b, optimizer=sgd, ema_decay=0.5), True),
    "softmatch": (lambda b: SoftMatch(b, optimizer=sgd, ema_decay=0.5), True),
    "setfit_pair_phase": (
        lambda b: SetFitClassifier(b, optimizer=sgd, contrastive_epochs=1, backbone_lr_multiplier=1.0),
        True,
    ),
    "setfit_head_phase": (lambda b: SetFitClassifier(b, optimizer=sgd, contrastive_epochs=0), False),
    "feature_probe": (lambda b: FeatureProbe(b, optimizer=sgd), False),
}
SEMISUPERVISED = ("fixmatch", "flexmatch", "freematch", "softmatch")
PAIRS = [
    (backbone, method)
    for backbone, (kind, _) in BACKBONES.items()
    for method in METHODS
    # FixMatch concatenates image batches; SetFit's pair phase has nothing to train in a frozen encoder
    # (test_setfit_pair_phase_refuses_a_body_built_frozen).
    if not (method in SEMISUPERVISED and kind == "text")
    and (backbone, method) != ("hf_freeze_encoder", "setfit_pair_phase")
]


def batch_for(kind: str, method: str, backbone: nn.Module) -> object:
    generator = torch.Generator().manual_seed(0)
    x: object
    if method == "feature_probe":
        x = torch.randn(BATCH, backbone.num_features, generator=generator)
    elif kind == "image":
        x = torch.rand(BATCH, 1, 16, 16, generator=generator)
    else:
        x = text_batch()
    if method in SEMISUPERVISED:
        assert isinstance(x, torch.Tensor)
        return {"labelled": (x, labels()), "unlabelled": (x, x.flip(-1), labels(), torch.arange(BATCH))}
    return (x, labels())


@pytest.mark.parametrize(("backbone_name", "method_name"), PAIRS)
def test_trainable_parameters_are_the_backbones_declaration_minus_the_modes(tiny_bert, backbone_name, method_name):
    kind, build_backbone = BACKBONES[backbone_name]
    build_method, trains_body = METHODS[method_name]
    torch.manual_seed(0)
    backbone = build_backbone(tiny_bert)
    declared = trainable(backbone)
    expected = {f"backbone.{n}" for n in declared if trains_body or n.startswith("head.")}
    model = build_method(backbone)
    assert trainable(model) == expected  # FixMatch's EMA copy is never trainable
    start = values(model.backbone)
    fit(model, [batch_for(kind, method_name, backbone)])
    assert trainable(model) == expected
    moved = {f"backbone.{n}" for n in changed(start, values(model.backbone))}
    assert moved and moved <= expected
