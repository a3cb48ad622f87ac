"""Run by tests/test_ddp.py as a script: FlexMatch, FreeMatch, SoftMatch for a few steps under DDP (2 CPU processes).

Each rank writes its method state (the buffers that are not the network's) and the unlabelled pool
indices it trained on to ``<out>/<method>_rank<r>.pt``; the test checks the ranks saw different
samples and still hold the same state.

    python tests/ddp/adaptive_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

METHODS = ("FlexMatch", "FreeMatch", "SoftMatch")


class Indices(pl.Callback):
    """The pool indices of the unlabelled samples of every training batch of this rank."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += batch["unlabelled"][3].tolist()


def main(out: Path) -> None:
    import ssl_lightning.methods as methods
    from ssl_lightning.data import DigitsDataModule
    from ssl_lightning.data.semisup import SemiSupervisedDataModule
    from ssl_lightning.nets import LeNet

    for name in METHODS:
        pl.seed_everything(0)
        # threshold 0.1: every max probability of 10 classes reaches it, so FlexMatch's state moves at once
        extra = {"threshold": 0.1} if name == "FlexMatch" else {"momentum": 0.5}
        model = getattr(methods, name)(LeNet(num_classes=10, in_chans=1, input_size=8, padding=2), **extra)
        source = DigitsDataModule(batch_size=8, val_size=300, test_size=360, labels_per_class=2)
        data = SemiSupervisedDataModule(source, mu=2, flip=False, unlabelled_indices=True)
        indices = Indices()
        trainer = pl.Trainer(
            strategy="ddp", accelerator="cpu", devices=2, max_steps=3, limit_val_batches=0, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[indices],
        )  # fmt: skip
        trainer.fit(model, datamodule=data)
        state = {k: v for k, v in model.state_dict().items() if k in dict(model.named_buffers())}
        state = {k: v for k, v in state.items() if not k.startswith(("backbone.", "ema_backbone."))}
        record = {"state": state, "seen": torch.tensor(indices.seen), "world_size": trainer.world_size}
        torch.save(record, out / f"{name}_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
