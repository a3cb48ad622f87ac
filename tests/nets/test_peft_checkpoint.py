"""Checkpoints of a PeftBackbone's module hold only what trained, a checksummed base reference, and reload.

Classifier and FixMatch on the tiny random BERT of ``tests/nets/conftest.py``, trained with a real
``Trainer.fit`` for a couple of steps; the merged export of ``methods/export.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from ssl_lightning.methods import Classifier, FixMatch, SetFitClassifier
from ssl_lightning.methods.export import save_merged_backbone
from ssl_lightning.nets import HFEncoder
from tests.nets.test_peft_backbone import LABELS, is_adapter, wrap_bert

pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-2)


def classifier(bert: str, **options) -> Classifier:
    torch.manual_seed(2)
    return Classifier(wrap_bert(bert), optimizer=adamw, **options)


def fit(model: pl.LightningModule, batch, steps: int, folder, ckpt_path: str | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, logger=CSVLogger(folder), enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=DataLoader([(batch, LABELS)] * 2, batch_size=None), ckpt_path=ckpt_path)
    return trainer


def base_keys(model: Classifier) -> set[str]:
    return {f"backbone.{n}" for n, p in model.backbone.named_parameters() if not p.requires_grad}


@pytest.fixture
def trained(tiny_bert, text_batch, tmp_path, caplog) -> tuple[Classifier, str]:
    model = classifier(tiny_bert)
    with caplog.at_level(logging.INFO, logger="ssl_lightning.methods.classifier"):
        trainer = fit(model, text_batch, 2, tmp_path)
    trainable, total = model.backbone.parameter_counts()
    assert f"{trainable:,} of {total:,} backbone parameters train" in caplog.text
    metrics = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "params/trainable" in metrics and f"{float(trainable)}" in metrics
    trainer.save_checkpoint(tmp_path / "trimmed.ckpt")
    return model.eval(), str(tmp_path / "trimmed.ckpt")


def test_trimmed_checkpoint_holds_only_what_trained_and_reproduces_the_logits(trained, tiny_bert, text_batch):
    model, path = trained
    checkpoint = torch.load(path, weights_only=True)  # plain types only
    state = checkpoint["state_dict"]
    params = {f"backbone.{n}" for n, _ in model.backbone.named_parameters()}
    saved_params = {key for key in state if key in params}
    assert saved_params == {key for key in params if is_adapter(key) or key.startswith("backbone.head.")}
    assert not base_keys(model) & set(state)
    reference = checkpoint["frozen_base"]
    assert reference["name_or_path"] == tiny_bert and len(reference["sha256"]) == 64
    assert reference["keys"] == sorted(base_keys(model))
    assert len(checkpoint["optimizer_states"][0]["state"]) == len(saved_params)  # moments of what trains only
    reloaded = Classifier.load_from_checkpoint(path, backbone=wrap_bert(tiny_bert), optimizer=adamw).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(text_batch), model(text_batch))


def test_other_base_weights_are_a_clear_checksum_error(trained, tiny_bert):
    _, path = trained
    backbone = wrap_bert(tiny_bert)
    with torch.no_grad():
        backbone.base.encoder.encoder.layer[0].attention.self.query.base_layer.weight[0, 0] += 1e-3
    stored = torch.load(path, weights_only=True)["frozen_base"]["sha256"]
    with pytest.raises(ValueError, match=f"trained on other base weights.*{tiny_bert} has sha256 {stored}.*sha256 "):
        Classifier.load_from_checkpoint(path, backbone=backbone, optimizer=adamw)


def test_resume_from_a_trimmed_checkpoint_continues_training(trained, tiny_bert, text_batch, tmp_path):
    model, path = trained
    resumed = classifier(tiny_bert)
    trainer = fit(resumed, text_batch, 4, tmp_path / "resumed", ckpt_path=path)
    assert trainer.global_step == 4
    before, after = model.state_dict(), resumed.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in base_keys(model))
    assert not torch.equal(before["backbone.head.weight"], after["backbone.head.weight"])


def test_full_checkpoint_when_asked_and_trimmed_whenever_frozen_when_asked(tiny_bert, text_batch, tmp_path):
    full = classifier(tiny_bert, save_frozen_weights=True)
    fit(full, text_batch, 1, tmp_path).save_checkpoint(tmp_path / "full.ckpt")
    checkpoint = torch.load(tmp_path / "full.ckpt", weights_only=True)
    assert "frozen_base" not in checkpoint and set(checkpoint["state_dict"]) == set(full.state_dict())
    # A plain HFEncoder with frozen layers: kept by default, left out with save_frozen_weights=False.
    torch.manual_seed(0)
    partly = Classifier(HFEncoder(tiny_bert, num_classes=3, freeze_layers=1), optimizer=adamw)
    assert partly.frozen_base_keys() == []
    partly.save_frozen_weights = False
    frozen = partly.frozen_base_keys()
    assert frozen and all(
        k.startswith(("backbone.encoder.embeddings.", "backbone.encoder.encoder.layer.0.")) for k in frozen
    )


def test_fixmatch_leaves_out_its_ema_copy_of_the_base_too(tiny_bert, text_batch):
    def fixmatch() -> FixMatch:
        torch.manual_seed(2)
        return FixMatch(wrap_bert(tiny_bert), ema_decay=0.9, optimizer=adamw)

    model = fixmatch()
    with torch.no_grad():
        model.backbone.head.weight.add_(1.0)
        model.ema_backbone.update_parameters(model.backbone)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    copies = checkpoint["frozen_base"]["copies"]
    assert len(copies) == len(checkpoint["frozen_base"]["keys"]) and not set(copies) & set(checkpoint["state_dict"])
    assert "ema_backbone.module.head.weight" in checkpoint["state_dict"]
    fresh = fixmatch()
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])  # strict
    with torch.no_grad():
        assert torch.equal(fresh.eval()(text_batch), model.eval()(text_batch))  # the EMA's logits


def test_setfit_checkpoints_are_trimmed_too(tiny_bert):
    model = SetFitClassifier(wrap_bert(tiny_bert), contrastive_epochs=1)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["frozen_base"]["keys"] == sorted(base_keys(model))
    assert not base_keys(model) & set(checkpoint["state_dict"])


def test_merged_export_equals_the_adapted_logits(trained, tiny_bert, text_batch, tmp_path):
    model, _ = trained
    path = save_merged_backbone(model, tmp_path / "merged.pt")
    plain = Classifier(HFEncoder(tiny_bert, num_classes=3, dropout=0.0), backbone_checkpoint=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(text_batch), model(text_batch), rtol=0, atol=1e-5)
    with pytest.raises(FileExistsError):
        save_merged_backbone(model, path)
    with pytest.raises(TypeError, match="not a PeftBackbone"):
        save_merged_backbone(plain, tmp_path / "other.pt")
