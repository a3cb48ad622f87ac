"""Semi-supervised text: seeded weak/strong views, unlabelled files, FixMatch/FlexMatch on token batches."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from ssl_lightning.data.text import TextClassificationDataModule
from ssl_lightning.data.text.semisup import UnlabelledTextPool
from ssl_lightning.data.text_augment import EDA
from ssl_lightning.methods import Classifier
from ssl_lightning.methods.fixmatch import FixMatch
from ssl_lightning.methods.flexmatch import FlexMatch
from ssl_lightning.methods.inputs import cat_inputs
from ssl_lightning.nets.bilstm import BiLSTMClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

POSITIVE = ["good", "great", "lovely", "fine", "superb"]
NEGATIVE = ["bad", "awful", "dull", "boring", "terrible"]


def write_csv(path: Path, per_class: int = 12) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(per_class):
            writer.writerow([f"a {POSITIVE[i % 5]} film with a story number {i}", "positive"])
            writer.writerow([f"a {NEGATIVE[i % 5]} movie with actors number {i}", "negative"])
    return str(path)


def datamodule(folder: Path, **pool_args) -> TextClassificationDataModule:
    strong = EDA(alpha_sr=0.0, alpha_ri=0.2, alpha_rs=0.2, p_rd=0.2)
    pool = UnlabelledTextPool(**{"mu": 2, "strong": strong, **pool_args})
    return TextClassificationDataModule(
        train_file=write_csv(folder / "train.csv"), batch_size=2, val_size=4, test_size=4, labels_per_class=2,
        unlabelled=pool,
    )  # fmt: skip


def bilstm() -> BiLSTMClassifier:
    return BiLSTMClassifier(vocab_size=100, num_classes=2, embed_dim=8, hidden_size=8, dropout=0.0)


def first_batch(dm: TextClassificationDataModule) -> dict:
    return training_views(dm, next(iter(dm.train_dataloader()))[0])


def training_views(dm: TextClassificationDataModule, batch: dict) -> dict:
    assert dm.unlabelled is not None and dm.tokenizer is not None
    return dm.unlabelled.training_views(batch, dm.tokenizer.pad_id)


def test_weak_and_strong_views_differ_and_are_seeded_by_seed_epoch_and_index(tmp_path):
    dm = datamodule(tmp_path, weak=EDA(alpha_sr=0.0, alpha_ri=0.0, alpha_rs=0.1, p_rd=0.0))
    dm.setup("fit")
    pool = dm.unlabelled.build(dm)
    views = [pool[(0, i)] for i in range(len(pool))]
    assert views == [pool[(0, i)] for i in range(len(pool))]  # same (seed, epoch, index): same views
    assert sum(weak != strong for weak, strong, *_ in views) >= len(pool) - 1
    assert sum(weak != pool.texts[i] for i, (weak, *_) in enumerate(views)) > len(pool) // 2  # light EDA
    assert [pool[(1, i)][1] for i in range(len(pool))] != [v[1] for v in views]  # another epoch: other views
    other = datamodule(tmp_path, weak=dm.unlabelled.weak)
    other.seed = 1
    other.setup("fit")
    assert [other.unlabelled.build(other)[(0, i)][1] for i in range(len(pool))] != [v[1] for v in views]
    # token dropout is seeded the same way: the collated strong ids repeat for (epoch, index), not across epochs
    dm.unlabelled.token_dropout, dm.unlabelled.strong = 0.5, None
    collate = dm.train_dataloader().iterables["unlabelled"].collate_fn
    items = [(text, text, None, i, 0) for i, text in enumerate(pool.texts[:6])]
    strong_a, strong_b = collate(items)[1]["input_ids"], collate(items)[1]["input_ids"]
    later = collate([(*item[:4], 1) for item in items])[1]["input_ids"]
    assert torch.equal(strong_a, strong_b) and not torch.equal(strong_a, later)
    assert (strong_a == 1).any() and not torch.equal(strong_a, collate(items)[0]["input_ids"])  # <unk> masks


def test_batches_have_the_fixmatch_structure_padded_to_one_length(tmp_path):
    dm = datamodule(tmp_path, indices=True)
    dm.setup("fit")
    batch = first_batch(dm)
    (x, y), (weak, strong, y_u, index) = batch["labelled"], batch["unlabelled"]
    assert len(y) == 2 and len(y_u) == len(index) == 4 and y_u.min() >= 0
    assert x["input_ids"].shape[1] == weak["input_ids"].shape[1] == strong["input_ids"].shape[1]
    assert cat_inputs([x, weak, strong])["input_ids"].shape[0] == 10
    assert dm.num_unlabelled == len(dm.datasets["all"]) == 16  # every training text, labelled ones too
    texts = dm.datasets["all"].texts
    assert all(dm.unlabelled.views[(0, int(i))][0] == texts[int(i)] for i in index)  # weak=None: the text itself


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_unlabelled_file_is_the_pool_without_labels(tmp_path, suffix):
    path = tmp_path / f"unlabelled{suffix}"
    lines = ["an unseen good film", "", "an unseen bad movie", "another text"]
    path.write_text("\n".join(["text", *lines] if suffix == ".csv" else lines) + "\n")
    dm = datamodule(tmp_path, file=str(path))
    assert dm.num_unlabelled == 3
    assert dm.unlabelled.views.texts == ["an unseen good film", "an unseen bad movie", "another text"]
    assert (first_batch(dm)["unlabelled"][2] == -1).all()  # no labels: pseudo-label accuracy leaves them out


def test_bad_input_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match="has no texts"):
        datamodule(tmp_path, file=str(empty)).setup("fit")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        datamodule(tmp_path, file=str(tmp_path / "empty.csv")).setup("fit")
    (tmp_path / "other.csv").write_text("sentence\nsome text\n")
    with pytest.raises(ValueError, match="no column 'text'.*text_column"):
        datamodule(tmp_path, file=str(tmp_path / "other.csv")).setup("fit")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datamodule(tmp_path, file=str(tmp_path / "missing.txt")).setup("fit")
    plain = TextClassificationDataModule(train_file=write_csv(tmp_path / "plain.csv"), val_size=4, test_size=4)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="unlabelled pool.*data.init_args.unlabelled"):
        trainer.fit(FixMatch(bilstm()), plain)  # FixMatch on labelled batches only
    assert plain.num_unlabelled == 0 and not plain.unlabelled_indices
    with pytest.raises(ValueError, match="strong view would equal"):
        datamodule(tmp_path, strong=None, token_dropout=0.0)
    with pytest.raises(ValueError, match="pad them to one length"):
        cat_inputs([{"input_ids": torch.zeros(2, 3)}, {"input_ids": torch.zeros(2, 4)}])


@pytest.mark.parametrize("method", [FixMatch, FlexMatch])
def test_fixmatch_and_flexmatch_train_on_text(tmp_path, method):
    dm = datamodule(tmp_path, indices=method is FlexMatch)
    model = method(bilstm(), threshold=0.0, ema_decay=0.9)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, dm)
    metrics = trainer.callback_metrics
    assert metrics["train/mask_rate"] > 0 and "train/pseudo_acc" in metrics and metrics["train/loss_u"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters(), strict=True))
    if method is FlexMatch:  # per-sample pseudo-labels indexed by the text pool
        assert len(model.selected_label) == dm.num_unlabelled and (model.selected_label >= 0).any()
    assert trainer.validate(model, dm, verbose=False)[0]["val/acc"] >= 0  # val batches are the source's


def test_lambda_u_zero_trains_like_the_supervised_classifier_on_the_same_labelled_batches(tmp_path):
    dm = datamodule(tmp_path)
    dm.setup("fit")
    torch.manual_seed(0)
    fixmatch = FixMatch(bilstm(), lambda_u=0.0, threshold=0.0, ema_decay=None)
    supervised = Classifier(bilstm())
    supervised.backbone.load_state_dict(fixmatch.backbone.state_dict())
    initial = [p.detach().clone() for p in fixmatch.backbone.parameters()]
    optimizers = [torch.optim.SGD(m.backbone.parameters(), lr=0.5) for m in (fixmatch, supervised)]
    batches = list(dm.train_dataloader())[:4]
    labelled = list(dm.train_dataloader().iterables["labelled"])[:4]  # the labelled loader alone, own padding
    for (batch, *_), plain in zip(batches, labelled, strict=True):
        views = (training_views(dm, batch), plain)
        for model, opt, step_batch in zip((fixmatch, supervised), optimizers, views, strict=True):
            opt.zero_grad()
            model.training_step(step_batch, 0).backward()
            opt.step()
    for p, q in zip(fixmatch.backbone.parameters(), supervised.backbone.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    assert any(not torch.allclose(p, q) for p, q in zip(initial, fixmatch.backbone.parameters(), strict=True))
    with_u = FixMatch(bilstm(), lambda_u=1.0, threshold=0.0, ema_decay=None)
    with_u.backbone.load_state_dict(supervised.backbone.state_dict())
    batch = training_views(dm, batches[0][0])
    assert not torch.allclose(with_u.training_step(batch, 0), supervised.training_step(batch["labelled"], 0))
