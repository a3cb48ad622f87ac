"""Linear probe on cached features: run a frozen backbone once, then train only its head.

A linear probe with a frozen backbone (BN statistics included) and no augmentation sees the
same features for an image in every epoch, so computing them once gives the same training
run as going through the network every step, at a fraction of the cost. Two pieces:

- :class:`FeatureCacheDataModule` wraps an image DataModule; when the loaders are first asked
  for (the model is then on its device) it computes ``backbone.forward_features`` for every
  image of each split and serves ``(features: float[B, D], y: long[B])`` batches, shuffled by
  the same epoch-seeded sampler as the image loader, so the head sees the same batches.
- :class:`FeatureProbe` is a :class:`~ssl_lightning.methods.classifier.Classifier` that is
  always a linear probe and applies only ``backbone.forward_head`` to its inputs. Its
  checkpoints hold the whole backbone, so ``Classifier.load_from_checkpoint`` gives a model
  that classifies images.

Example config::

    model:
      class_path: ssl_lightning.methods.feature_cache.FeatureProbe
      init_args:
        optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.01}}   # Classifier's arguments
        backbone:
          class_path: ssl_lightning.nets.pretrained.TimmBackbone
          init_args: {model_name: tf_efficientnet_lite0, pretrained: "package:efficientnet_lite0",
                      num_classes: 10, in_chans: 1, input_size: 64}
    data:
      class_path: ssl_lightning.methods.feature_cache.FeatureCacheDataModule
      init_args:
        source: {class_path: ssl_lightning.data.DigitsDataModule, init_args: {labels_per_class: 10, normalize: false}}
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_lightning.data.samplers import EpochSeededSampler
from ssl_lightning.data.wrapper import WrappedDataModule
from ssl_lightning.methods.classifier import Classifier

log = logging.getLogger(__name__)


class FeatureProbe(Classifier):
    """A linear probe whose batches are cached features: ``(features: float[B, num_features], y)``.

    Use it with :class:`FeatureCacheDataModule` (module docstring has an example config).

    Args:
        backbone: the network; only its head trains, its ``forward_features`` fills the cache.
        **classifier_args: :class:`~ssl_lightning.methods.classifier.Classifier`'s other arguments
            (``optimizer``, ``label_smoothing``, ...; ``finetune`` is always ``linear_probe``), documented
            and checked there (see "Subclasses" in its docstring).
    """

    derived_arguments = ("finetune",)

    def __init__(self, backbone: nn.Module, **classifier_args: Any) -> None:
        super().__init__(backbone, finetune="linear_probe", **classifier_args)

    def forward(self, features: Tensor) -> Tensor:
        """float[B, num_features] -> logits float[B, num_classes]."""
        if features.ndim != 2:
            raise ValueError(
                f"FeatureProbe takes cached features float[B, num_features], got {list(features.shape)}. Wrap the "
                f"data in ssl_lightning.methods.feature_cache.FeatureCacheDataModule."
            )
        return self.backbone.forward_head(features)

    @torch.no_grad()
    def extract_features(self, images: Tensor) -> Tensor:
        """float[B, C, H, W] model inputs -> float[B, num_features], with the backbone in eval mode."""
        self.backbone.eval()
        try:
            return self.backbone.forward_features(images)
        finally:
            # Back through the module's own train(), which keeps the frozen body in eval mode: the backbone's
            # train() alone would switch e.g. HFEncoder's pre-head dropout back on while the head trains.
            self.train(self.training)

    def set_backbone_frozen(self, frozen: bool) -> None:
        if not frozen:
            raise ValueError("FeatureProbe is always a linear probe: its cached features need a frozen backbone.")
        super().set_backbone_frozen(frozen)


class FeatureCacheDataModule(WrappedDataModule):
    """Serves the frozen backbone's features of an image DataModule's images, computed once.

    ``source`` must be an :class:`~ssl_lightning.data.base.ImageDataModule` (or a wrapper with
    the same ``datasets``/``train_pool``/``to_float``/``standardize`` members, such as
    :class:`~ssl_lightning.data.class_subset.ClassSubsetDataModule`) whose training transform
    is the identity: augmentation or mixing would make the features change from epoch to
    epoch, and caching would silently train on something else, so it is refused.

    Batches: ``(features: float[B, num_features], y: long[B])``.

    Args:
        source: the image DataModule (its batch size, seed and splits are used).
        extract_batch_size: images per forward pass while filling the cache.
    """

    def __init__(self, source: pl.LightningDataModule, extract_batch_size: int = 256) -> None:
        super().__init__(source)
        self.extract_batch_size = extract_batch_size
        self.cache: dict[str, TensorDataset] = {}

    def _probe(self) -> FeatureProbe:
        module = self.trainer.lightning_module if self.trainer is not None else None
        if not isinstance(module, FeatureProbe):
            raise ValueError(
                f"FeatureCacheDataModule serves features, which only FeatureProbe takes; the model is "
                f"{type(module).__name__}. Use ssl_lightning.methods.feature_cache.FeatureProbe."
            )
        return module

    def _check_no_training_transform(self, images: Tensor, labels: Tensor) -> None:
        x = self.source.to_float(images)
        out_x, out_y = self.source.train_batch_transform(x.clone(), labels.clone())
        if not (torch.equal(out_x, x) and torch.equal(out_y, labels)):
            raise ValueError(
                f"{type(self.source).__name__} changes training images (augmentation or mixing); cached features "
                f"would differ from what the network sees. Turn augmentation off, or use Classifier with "
                f"finetune: linear_probe instead of the cache."
            )

    @torch.no_grad()
    def features(self, split: str) -> TensorDataset:
        """Features and labels of ``split`` (``labelled``, ``all``, ``val`` or ``test``), computed once."""
        if split not in self.cache:
            probe = self._probe()
            dataset = self.source.datasets[split]
            images, labels = dataset.images, dataset.labels
            if split == self.train_pool and len(images):
                self._check_no_training_transform(images[:8], labels[:8])
            device = next(probe.parameters()).device
            chunks = []
            for start in range(0, len(images), self.extract_batch_size):
                batch = images[start : start + self.extract_batch_size].to(device)
                chunks.append(probe.extract_features(self.source.standardize(self.source.to_float(batch))))
            features = torch.cat(chunks) if chunks else torch.zeros(0, probe.backbone.num_features, device=device)
            # Kept on the CPU: indexing single rows of a CPU tensor is cheap; Lightning moves the batches.
            self.cache[split] = TensorDataset(features.cpu(), labels.cpu())
            log.info(
                "FeatureCacheDataModule: cached %s features of %d %s images", list(features.shape), len(labels), split
            )
        return self.cache[split]

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> DataLoader:
        if shuffle:  # the image loader's epoch-seeded order: the head sees the same batches
            return self._train_loader(
                dataset, self.batch_size, EpochSeededSampler(len(dataset), self.seed), num_workers=0
            )
        return DataLoader(dataset, batch_size=self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.features(self.train_pool), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.features("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.features("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
