"""Run by tests/test_ddp.py as a script: FlexMatch on text batches for a few steps under DDP (2 CPU processes).

Each rank writes the unlabelled pool indices it trained on (two epochs), the strong views' token ids
of its first batch and FlexMatch's per-sample state to ``<out>/text_rank<r>.pt``; the test checks the
ranks drew different texts and still hold the same state.

    python tests/ddp/text_semisup_worker.py OUT_DIR
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch


class Seen(pl.Callback):
    """The pool indices of every training batch of this rank, by epoch."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.seen.append([])
        self.seen[-1] += batch["unlabelled"][3].tolist()


def main(out: Path) -> None:
    from ssl_lightning.data.text import TextClassificationDataModule
    from ssl_lightning.data.text.semisup import UnlabelledTextPool
    from ssl_lightning.data.text_augment import EDA
    from ssl_lightning.methods.flexmatch import FlexMatch
    from ssl_lightning.nets.bilstm import BiLSTMClassifier

    train = out / "train.csv"
    with open(train, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(
            [(f"a good film number {i}", "pos") if i % 2 else (f"a bad movie {i}", "neg") for i in range(40)]
        )
    pl.seed_everything(0)
    strong = EDA(alpha_sr=0.0, alpha_ri=0.2, alpha_rs=0.2, p_rd=0.2)
    data = TextClassificationDataModule(
        train_file=str(train), batch_size=2, val_size=4, test_size=4, labels_per_class=2,
        unlabelled=UnlabelledTextPool(mu=2, strong=strong, indices=True),
    )  # fmt: skip
    model = FlexMatch(BiLSTMClassifier(vocab_size=100, embed_dim=8, hidden_size=8), threshold=0.1)
    seen = Seen()
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[seen],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    record = {"seen": seen.seen, "selected_label": model.selected_label, "world_size": trainer.world_size}
    torch.save(record, out / f"text_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
