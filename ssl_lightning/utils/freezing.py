"""Freeze part of a network for a while, then thaw exactly that: never what the network itself froze."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


class Freezer:
    """Turns ``requires_grad`` off for parameters and later back on for exactly those it turned off.

    Trainability has one owner per parameter. A network declares what it trains by its
    parameters' ``requires_grad`` when it is built: ``HFEncoder(freeze_layers=2)`` or
    ``freeze_encoder=True``, ``BiLSTMClassifier(freeze_embeddings=True)``, a peft LoRA model
    (base weights ``False``, adapter weights ``True``). A method or callback that freezes more for
    a while (a linear probe, SetFit's head phase, gradual unfreezing) owns only what it froze: a
    blanket ``requires_grad_(True)`` when it unfreezes would silently train what the network
    declared fixed. A ``Freezer`` records the names of the parameters it switched off (those that
    were trainable), so :meth:`unfreeze` restores the network's own declaration, whatever it was.

    Names rather than tensors are kept, so the record survives ``.to(device)``, ``deepcopy``
    and pickling of the module that holds it; pass the same module's ``named_parameters()``
    (or a filtered list of them) to both calls.

    Example::

        freezer = Freezer()
        body = [(n, p) for n, p in backbone.named_parameters() if not n.startswith("head.")]
        freezer.freeze(body)    # the body stops training; what was already frozen is not recorded
        freezer.unfreeze(body)  # back to what the backbone declared, its frozen layers still frozen
    """

    def __init__(self) -> None:
        self.frozen = False
        self.names: set[str] = set()

    def freeze(self, named_parameters: Iterable[tuple[str, nn.Parameter]]) -> None:
        """Switch off the trainable ones among ``(name, parameter)`` pairs and remember their names."""
        for name, parameter in named_parameters:
            if parameter.requires_grad:
                parameter.requires_grad_(False)
                self.names.add(name)
        self.frozen = True

    def unfreeze(self, named_parameters: Iterable[tuple[str, nn.Parameter]]) -> None:
        """Switch back on only the parameters that :meth:`freeze` switched off."""
        for name, parameter in named_parameters:
            if name in self.names:
                parameter.requires_grad_(True)
        self.names.clear()
        self.frozen = False
