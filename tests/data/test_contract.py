"""The data/model contract: Protocols are satisfied by members alone, and a missing one is an error naming it."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest

from ssl_lightning.data.contract import (
    ClassificationData,
    EpisodicData,
    LabelledFeatureSource,
    attached_data,
    require_data,
)
from ssl_lightning.data.semisup import TwoViewDataModule
from ssl_lightning.methods import Classifier
from ssl_lightning.nets import LeNet


class Named(pl.LightningDataModule):
    num_classes = 3
    class_names = ["cat", "dog", "fox"]


def test_protocols_are_structural():
    assert isinstance(Named(), ClassificationData)
    assert not isinstance(Named(), EpisodicData) and not isinstance(Named(), LabelledFeatureSource)
    assert issubclass(TwoViewDataModule, LabelledFeatureSource)  # the kNN bank of SimCLR


def test_attached_data_and_a_clear_error_naming_the_protocol():
    module = Classifier(LeNet(num_classes=3, in_chans=1, input_size=8, padding=2))
    assert attached_data(module) is None
    module.trainer = pl.Trainer(accelerator="cpu", logger=False)
    module.trainer.datamodule = Named()
    assert require_data(module, ClassificationData, "test").class_names == ["cat", "dog", "fox"]
    with pytest.raises(ValueError, match=r"contract\.EpisodicData \(n_way\), got Named\. Use episodes"):
        require_data(module, EpisodicData, "MAML", "Use episodes.")
