"""Model inputs of any modality: an image tensor ``float[B, ...]`` or a dict of token tensors.

Text backbones take ``{"input_ids": long[B, L], "attention_mask": long[B, L], "lengths": long[B]}``
(:class:`~ssl_lightning.data.text.TextCollator`). Methods that stack several inputs into one
forward pass (FixMatch's ``[x; x_weak; x_strong]``) use these two functions, so they never ask
which modality they train on.

Example::

    joint = cat_inputs([x, x_weak, x_strong])            # Tensor: torch.cat; dict: key by key
    logits_x, logits_w, logits_s = backbone(joint).split([num_rows(x), num_rows(x_weak), num_rows(x_strong)])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

Inputs = Tensor | Mapping[str, Tensor]


def num_rows(inputs: Inputs) -> int:
    """Batch size of a tensor (``len``) or of a dict of tensors (the rows of its first value)."""
    if isinstance(inputs, Tensor):
        return len(inputs)
    return len(next(iter(inputs.values())))


def cat_inputs(parts: Sequence[Inputs]) -> Inputs:
    """Concatenate inputs along the batch: ``torch.cat`` for tensors, key by key for dicts.

    Dicts must have the same keys and, per key, the same trailing shape (text batches padded to
    one length, as :class:`~ssl_lightning.data.text.semisup.UnlabelledTextPool` does).

    Raises:
        ValueError: the parts mix kinds, their keys differ, or their padded lengths differ.
    """
    if all(isinstance(part, Tensor) for part in parts):
        return torch.cat(list(parts))  # type: ignore[arg-type]
    if not all(isinstance(part, Mapping) for part in parts):
        raise ValueError(f"cannot concatenate inputs of different kinds: {[type(p).__name__ for p in parts]}")
    keys = list(parts[0])  # type: ignore[arg-type]
    if any(list(part) != keys for part in parts):  # type: ignore[arg-type]
        raise ValueError(f"inputs have different keys: {[list(p) for p in parts]}")  # type: ignore[arg-type]
    joint = {}
    for key in keys:
        values = [part[key] for part in parts]  # type: ignore[index]
        shapes = {tuple(v.shape[1:]) for v in values}
        if len(shapes) > 1:
            raise ValueError(
                f"inputs[{key!r}] have different shapes {sorted(shapes)} after the batch dimension: pad them to one "
                f"length first (UnlabelledTextPool does for text)."
            )
        joint[key] = torch.cat(values)
    return joint
