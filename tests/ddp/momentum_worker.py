"""Run by tests/test_ddp.py as a script: BYOL, MoCo, DINO for a few steps under DDP (2 CPU processes).

Each rank writes its teachers' state and the method's own state (MoCo's queue and pointer, DINO's centre)
to ``<out>/<method>_rank<r>.pt``, with the first training images it saw; the test checks that the
ranks trained on different images and still hold the same teachers, queue and centre.

    python tests/ddp/momentum_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

METHODS = {
    "BYOL": {"projection_dim": 16},
    "MoCo": {"projection_dim": 16, "queue_size": 40, "batch_norm": True},  # shuffled BN across the ranks
    "DINO": {"hidden_dim": 32, "bottleneck_dim": 8, "output_dim": 32, "batch_norm": True},
}


class FirstImages(pl.Callback):
    """The first view of every training batch of this rank."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(batch[0].detach().cpu())


def main(out: Path) -> None:
    import ssl_lightning.methods as methods
    from ssl_lightning.data import DigitsDataModule
    from ssl_lightning.data.two_view import TwoViewDataModule
    from ssl_lightning.nets import LeNet

    for name, args in METHODS.items():
        pl.seed_everything(0)
        model = getattr(methods, name)(LeNet(num_classes=0, in_chans=1, input_size=8, padding=2), knn_k=0, **args)
        source = DigitsDataModule(batch_size=8, val_size=300, test_size=360, labels_per_class=2)
        seen = FirstImages()
        trainer = pl.Trainer(
            strategy="ddp", accelerator="cpu", devices=2, max_steps=3, limit_val_batches=0, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[seen],
        )  # fmt: skip
        trainer.fit(model, datamodule=TwoViewDataModule(source, flip=False))
        state = {k: v for k, v in model.state_dict().items() if "_momentum." in k or k.startswith("criterion.")}
        record = {"state": state, "seen": torch.cat(seen.seen), "world_size": trainer.world_size}
        torch.save(record, out / f"{name}_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
