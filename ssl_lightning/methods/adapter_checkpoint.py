"""Checkpoints that hold only what trained: adapters, head and buffers, plus a checksummed reference to the base.

A LoRA-wrapped mpnet trains ~1 % of its 110M weights; a Lightning checkpoint of the whole module
would still hold all of them (440 MB per file, one per saved epoch). :class:`FrozenBaseCheckpoint`
(a base of :class:`~ssl_lightning.methods.classifier.Classifier`, so of SetFit and FixMatch too)
drops the backbone's frozen parameters from the checkpoint's ``state_dict`` in
``on_save_checkpoint`` and stores instead::

    checkpoint["frozen_base"] = {
        "name_or_path": "package:all_mpnet_base_v2",    # informational: where the base weights come from
        "sha256": "...",                                # of the dropped tensors (frozen_base_checksum)
        "keys": ["backbone.body.base_model.model....weight", ...],
        "copies": {"ema_backbone.module.<name>": "backbone.<name>", ...},   # identical copies (an EMA's)
    }

Only plain types, so ``torch.load(path, weights_only=True)`` reads it. Everything else stays:
adapter and head weights, every buffer (batch-norm running statistics, which a CNN updates in
training although its weights are frozen; metric states), and the optimizer state, which only
trainable parameters ever have, so ``fit(ckpt_path=...)`` resumes as from a full checkpoint.

Which parameters are "frozen base": those of the backbone that were frozen when the module was
built (the backbone's own declaration, e.g. peft's base weights, ``HFEncoder(freeze_layers=2)``;
or a linear probe's body, frozen from the start) and are still frozen. A parameter that a method
thaws (``GradualUnfreezing``, SetFit's phases) may train and is saved in full from then on. As a
last guard against saving trained weights as "base", the checksum is over the tensors as they are
at save time: if they ever moved, loading refuses the checkpoint rather than using other weights.

On load (``on_load_checkpoint``, which Lightning calls before loading the state dict, in both
``load_from_checkpoint`` and ``fit/validate/test(ckpt_path=...)``) the module has just been built
from its config, so its backbone holds the pretrained base weights again; their checksum is
compared with the stored one (a clear error naming both when they differ), and the dropped keys are
filled in from the module's own state dict. Filling in, rather than ``strict_loading = False``,
keeps Lightning's strict check for every other key: a checkpoint of another adapter config or head
still fails loudly, which non-strict loading would hide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ssl_lightning.nets.peft_backbone import PeftBackbone

PREFIX = "backbone."


def frozen_base_checksum(state: Mapping[str, Tensor], keys: Sequence[str]) -> str:
    """sha256 over ``keys`` in sorted order: each key's name, dtype, shape and raw bytes (device independent)."""
    digest = hashlib.sha256()
    for key in sorted(keys):
        tensor = state[key].detach()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _find_pretrained(config: Any) -> str | None:
    """The first ``pretrained`` string in a (nested) LightningCLI config of the backbone."""
    if isinstance(config, Mapping):
        if isinstance(config.get("pretrained"), str):
            return config["pretrained"]
        for value in config.values():
            found = _find_pretrained(value)
            if found is not None:
                return found
    return None


def base_weights_name(backbone: nn.Module, hparams: Mapping[str, Any]) -> str:
    """Where the base weights come from, for the checkpoint's reference and error messages.

    The ``pretrained`` of the backbone (``HFEncoder.pretrained``) or of its config (a TimmBackbone's
    ``package:efficientnet_lite0``), else its class name; with the ``backbone_checkpoint`` it started from.
    """
    name = next((m.pretrained for m in backbone.modules() if isinstance(getattr(m, "pretrained", None), str)), None)
    name = name or _find_pretrained(hparams.get("backbone")) or type(backbone).__name__
    checkpoint = hparams.get("backbone_checkpoint")
    return f"{name} + backbone_checkpoint {checkpoint}" if checkpoint else name


class FrozenBaseCheckpoint(pl.LightningModule):
    """Checkpoint hooks that leave the backbone's frozen base weights out (module docstring).

    The module sets ``self.backbone`` and ``self.save_frozen_weights`` (``None``: leave them out
    when the backbone is a :class:`~ssl_lightning.nets.peft_backbone.PeftBackbone`; ``True``: always
    save everything; ``False``: leave them out whenever some are frozen) and calls
    :meth:`remember_frozen_base` at the end of ``__init__`` and :meth:`forget_thawed` before it
    re-freezes parameters.
    """

    backbone: nn.Module
    save_frozen_weights: bool | None

    def remember_frozen_base(self) -> None:
        """Record the backbone's parameters frozen now, when the module is built: they never trained."""
        self._frozen_base = {name for name, p in self.backbone.named_parameters() if not p.requires_grad}
        self._checksum_cache: tuple[tuple, str] | None = None

    def forget_thawed(self) -> None:
        """Drop from the frozen base what trains now (it may have changed since it was built)."""
        if hasattr(self, "_frozen_base"):
            self._frozen_base -= {name for name, p in self.backbone.named_parameters() if p.requires_grad}

    def trims_frozen_base(self) -> bool:
        """Whether checkpoints leave the frozen base weights out (``save_frozen_weights``)."""
        if self.save_frozen_weights is None:
            return isinstance(self.backbone, PeftBackbone)
        return not self.save_frozen_weights

    def frozen_base_keys(self) -> list[str]:
        """The module's state-dict keys of the frozen base weights, sorted (empty when nothing is left out)."""
        if not self.trims_frozen_base():
            return []
        self.forget_thawed()
        return sorted(PREFIX + name for name in self._frozen_base)

    def frozen_base_checksum(self, state: Mapping[str, Tensor], keys: list[str]) -> str:
        """:func:`frozen_base_checksum`, cached while the tensors are the same, unmodified ones.

        A tensor's ``_version`` counts its in-place changes (``copy_``, optimizer steps) and its
        ``data_ptr`` changes with the device, so hashing 440 MB again at every save is skipped only
        when nothing can have changed.
        """
        tag = tuple((key, state[key].data_ptr(), state[key]._version, state[key].dtype) for key in keys)
        if self._checksum_cache is None or self._checksum_cache[0] != tag:
            self._checksum_cache = (tag, frozen_base_checksum(state, keys))
        return self._checksum_cache[1]

    def _frozen_copies(self, state: Mapping[str, Tensor], keys: list[str]) -> dict[str, str]:
        """Copies of frozen base tensors elsewhere in the module (an ``AveragedModel`` EMA of the backbone)
        that equal them, by key: those are left out too and restored from the base."""
        prefixes = [
            f"{name}.module."
            for name, module in self.named_modules()
            if isinstance(module, AveragedModel) and type(module.module) is type(self.backbone)
        ]
        copies = {}
        for prefix in prefixes:
            for key in keys:
                copy = prefix + key[len(PREFIX) :]
                if copy in state and torch.equal(state[copy], state[key]):
                    copies[copy] = key
        return copies

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        keys = [key for key in self.frozen_base_keys() if key in state]
        if not keys:
            return
        copies = self._frozen_copies(state, keys)
        checkpoint["frozen_base"] = {
            "name_or_path": base_weights_name(self.backbone, self.hparams),
            "sha256": self.frozen_base_checksum(state, keys),
            "keys": keys,
            "copies": copies,
        }
        for key in [*keys, *copies]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        reference = checkpoint.get("frozen_base")
        if reference is None:
            return
        own = self.state_dict()
        missing = [key for key in reference["keys"] if key not in own]
        if missing:
            raise KeyError(
                f"The checkpoint left out the frozen base weights of {reference['name_or_path']}, but this "
                f"{type(self).__name__} has no {missing[:3]}: build it with the backbone the checkpoint was trained on."
            )
        checksum = frozen_base_checksum(own, reference["keys"])
        if checksum != reference["sha256"]:
            raise ValueError(
                f"The checkpoint's adapters were trained on other base weights: the checkpoint's base "
                f"{reference['name_or_path']} has sha256 {reference['sha256']}, this model's base "
                f"{base_weights_name(self.backbone, self.hparams)} has sha256 {checksum}. Build the model with the "
                f"same pretrained weights (and backbone_checkpoint) as the run that wrote the checkpoint."
            )
        state = checkpoint["state_dict"]
        for key in reference["keys"]:
            state[key] = own[key]
        for copy, key in reference["copies"].items():
            state[copy] = own[key]
