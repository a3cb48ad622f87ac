"""Run by tests/test_ddp.py as a script: 2 CPU processes (gloo) under strategy="ddp".

Lightning's DDP launcher re-executes this script for rank 1, which is why it is a script and not
a test function. Each rank writes what it saw to ``<out>/<kind>_rank<r>.json``.

    python tests/ddp/worker.py classifier OUT_DIR
    python tests/ddp/worker.py episodic OUT_DIR
    python tests/ddp/worker.py classifier OUT_DIR gpu     # 2 GPUs, NCCL (tests/gpu/test_gpu.py)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger


def fingerprint(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class Recorder(pl.Callback):
    """Fingerprints of every training item (or episode) and validation item this rank saw."""

    def __init__(self, episodic: bool) -> None:
        self.episodic = episodic
        self.seen: dict[str, list[str]] = {"train": [], "val": []}

    def _record(self, stage: str, batch) -> None:
        items = batch[0] if not self.episodic else batch[0]  # images, or support_x[T, N*K, ...]
        self.seen[stage] += [fingerprint(item) for item in items]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record("train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._record("val", batch)


def build(kind: str):
    from ssl_lightning.data import DigitsDataModule

    if kind == "classifier":
        from ssl_lightning.methods import Classifier
        from ssl_lightning.nets import LeNet

        model = Classifier(LeNet(num_classes=10, in_chans=1, input_size=8, padding=2))
        data = DigitsDataModule(batch_size=32, val_size=100, labels_per_class=20)
        return model, data
    from ssl_lightning.data.episodic import EpisodicDataModule
    from ssl_lightning.methods.protonet import ProtoNet
    from ssl_lightning.nets.conv4 import Conv4

    model = ProtoNet(Conv4(num_classes=0, in_chans=1, input_size=16))
    data = EpisodicDataModule(
        source=DigitsDataModule(val_size=0, normalize=False),
        image_size=16,
        class_split=(0.4, 0.3, 0.3),
        n_way=2, k_shot=1, n_query=3, train_episodes=8, eval_episodes=10, seed=0,
    )  # fmt: skip
    return model, data


def main(kind: str, out: Path, accelerator: str = "cpu") -> None:
    pl.seed_everything(0)
    model, data = build(kind)
    recorder = Recorder(episodic=kind == "episodic")
    checkpoint = ModelCheckpoint(dirpath=out / f"{kind}_ckpt", monitor="val/acc", mode="max", save_last=True)
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator=accelerator,
        devices=2,
        max_epochs=1,
        limit_train_batches=4,
        logger=CSVLogger(out, name=kind),
        callbacks=[recorder, checkpoint],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "seen": recorder.seen, "metrics": metrics}
    (out / f"{kind}_rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:4])
