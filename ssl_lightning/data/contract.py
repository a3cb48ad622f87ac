"""What methods read from the DataModule they train on, written down once as typed Protocols.

Data facts reach a method through its config (e.g. the backbone's ``num_classes``; ``cli.py`` says
why no LightningCLI ``link_arguments`` are set) or are read from the attached DataModule at run
time; the latter are these, and methods read them only through :func:`attached_data` and
:func:`require_data`, so a DataModule that lacks one gets an error naming the Protocol:

- :class:`ClassificationData` (``num_classes``, ``class_names``): ``Classifier`` checks its head
  against ``num_classes`` and labels its test confusion matrix with ``class_names``; SimCLR's
  kNN monitor counts classes with it.
- :class:`EpisodicData` (``n_way``): MAML-style methods check that their head has ``n_way`` outputs.
- :class:`LabelledFeatureSource` (``labelled_features``): SimCLR embeds the labelled training set as
  its kNN memory bank.
- :class:`BaseClassData` (``train_mode``, ``num_base_classes``, ``labelled_features``): the
  pretrain-then-adapt few-shot methods train a head over the base (training) classes on plain
  batches and SimpleShot centres features on the base classes' mean.
- :class:`UnlabelledPoolData` (``num_unlabelled``, ``unlabelled_indices``): FlexMatch keeps one
  prediction per unlabelled sample, tracked by the samples' indices in the pool.

A DataModule satisfies a Protocol by having the members (no base class to inherit), e.g.::

    class MyData(pl.LightningDataModule):
        num_classes = 3
        class_names = ["cat", "dog", "fox"]

    isinstance(MyData(), ClassificationData)  # True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

import lightning.pytorch as pl
import torch
from torch import Tensor


@runtime_checkable
class ClassificationData(Protocol):
    """Data over a fixed, named set of classes (labels ``0..num_classes-1``)."""

    @property
    def num_classes(self) -> int | None:
        """``None`` only while unknown: a predict-only text DataModule before the checkpoint's label map is restored."""

    @property
    def class_names(self) -> list[str]: ...


@runtime_checkable
class EpisodicData(Protocol):
    """Episodes of ``n_way`` classes each (labels ``0..n_way-1`` within an episode)."""

    @property
    def n_way(self) -> int: ...


@runtime_checkable
class LabelledFeatureSource(Protocol):
    """Data that can embed its labelled training set, e.g. as a kNN memory bank."""

    def labelled_features(self, embed: Callable[[Tensor], Tensor], device: torch.device | str) -> tuple[Tensor, Tensor]:
        """``embed`` every labelled training image (no augmentation).

        Returns:
            ``(features: float[N, D], labels: long[N])`` on ``device``.
        """
        ...


@runtime_checkable
class BaseClassData(Protocol):
    """Few-shot data that can train on plain ``(x, y)`` batches of its base (training) classes.

    ``train_mode`` is ``"batches"`` when training batches are ``(x: float[B, C, H, W], y: long[B])`` with
    ``y`` in ``0..num_base_classes-1``, ``"episodes"`` when they are episodes; validation and test are
    always episodes of the disjoint val/test classes.
    """

    @property
    def train_mode(self) -> str: ...

    @property
    def num_base_classes(self) -> int: ...

    def labelled_features(self, embed: Callable[[Tensor], Tensor], device: torch.device | str) -> tuple[Tensor, Tensor]:
        """``embed`` every base-class training image (no augmentation): ``(float[N, D], long[N])`` on ``device``."""
        ...


@runtime_checkable
class UnlabelledPoolData(Protocol):
    """Semi-supervised data whose unlabelled batches can carry each sample's index in a fixed pool.

    With ``unlabelled_indices`` true, the unlabelled part of a training batch ends with
    ``index: long[M]`` in ``0..num_unlabelled-1``.
    """

    @property
    def num_unlabelled(self) -> int: ...

    @property
    def unlabelled_indices(self) -> bool: ...


#: The members of each Protocol, for error messages.
MEMBERS: dict[type, str] = {
    ClassificationData: "num_classes, class_names",
    EpisodicData: "n_way",
    LabelledFeatureSource: "labelled_features(embed, device)",
    BaseClassData: "train_mode, num_base_classes, labelled_features(embed, device)",
    UnlabelledPoolData: "num_unlabelled, unlabelled_indices",
}

ProtocolT = TypeVar("ProtocolT")


def attached_data(module: pl.LightningModule) -> object | None:
    """The DataModule of the Trainer ``module`` is attached to, or ``None``.

    ``None`` outside a Trainer and when the Trainer was given dataloaders instead of a DataModule.
    (``LightningModule.trainer`` raises when detached, hence the ``_trainer`` attribute.)
    """
    trainer = module._trainer
    return getattr(trainer, "datamodule", None) if trainer is not None else None


def require_data(module: pl.LightningModule, protocol: type[ProtocolT], needed_for: str, remedy: str = "") -> ProtocolT:
    """The attached DataModule as ``protocol``, or a ``ValueError`` naming the Protocol and its members.

    Args:
        module: the LightningModule asking.
        protocol: one of this module's Protocols.
        needed_for: what needs it, for the message (``"SimCLR's kNN monitor"``).
        remedy: how to do without it, appended to the message.
    """
    data = attached_data(module)
    if not isinstance(data, protocol):
        raise ValueError(
            f"{needed_for} needs a DataModule that is a ssl_lightning.data.contract.{protocol.__name__} "
            f"({MEMBERS.get(protocol, '')}), got {type(data).__name__}. {remedy}".rstrip()
        )
    return data
