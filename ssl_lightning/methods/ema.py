"""An exponential moving average of a network's weights and batch-norm statistics, on torch's ``AveragedModel``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMAUpdate:
    """``AveragedModel``'s ``multi_avg_fn``: torch's EMA for floating-point tensors, a copy for the others.

    ``get_ema_multi_avg_fn`` gives ``ema = decay * ema + (1 - decay) * online`` (one ``lerp`` per
    tensor) for parameters and floating-point buffers (batch-norm running statistics), but for an
    integer buffer it writes ``int(decay * ema + (1 - decay) * online)``, which keeps
    ``num_batches_tracked`` below the online count; that counter is copied instead. A class, not a
    closure, so the module pickles (DDP spawn, ``copy.deepcopy``).

    Args:
        decay: weight of the running average, in ``[0, 1)``.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, averaged: list[Tensor], current: list[Tensor], n_averaged: Tensor | int) -> None:
        # AveragedModel groups the tensors by device and dtype: one call holds one dtype.
        if averaged[0].is_floating_point() or averaged[0].is_complex():
            get_ema_multi_avg_fn(self.decay)(averaged, current, n_averaged)
        else:
            for tensor, online in zip(averaged, current, strict=True):
                tensor.copy_(online)


def _load_pre_averaged_model_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """Load a state dict written before the EMA was an ``AveragedModel`` (keys without ``module.``).

    Such checkpoints hold the averaged network's tensors directly under ``prefix``; they move
    under ``prefix + "module."``, and ``n_averaged`` (absent there) becomes 1, since those EMAs
    started as a copy of the network and so had averaged at least once.
    """
    old = [key for key in state_dict if key.startswith(prefix) and not key.startswith(f"{prefix}module.")]
    old = [key for key in old if key != f"{prefix}n_averaged"]
    if not old:
        return
    for key in old:
        state_dict[f"{prefix}module.{key[len(prefix) :]}"] = state_dict.pop(key)
    state_dict.setdefault(f"{prefix}n_averaged", torch.tensor(1, dtype=torch.long))


def exponential_moving_average(network: nn.Module, decay: float) -> AveragedModel:
    """A frozen copy of ``network`` that ``update_parameters(network)`` moves towards it by ``1 - decay``.

    ``AveragedModel(use_buffers=True)``, so batch-norm running statistics are averaged like the
    weights and the evaluated weights meet statistics of the same horizon (as Lightning's
    ``WeightAveraging`` does); ``num_batches_tracked`` is copied (:class:`EMAUpdate`). The copy
    counts as already averaged once (``n_averaged = 1``): ``AveragedModel``'s first update would
    otherwise overwrite it with the network instead of averaging. State-dict keys are
    ``module.<name>`` and ``n_averaged``; the plain keys of older checkpoints still load.

    Example::

        ema = exponential_moving_average(backbone, decay=0.999)
        optimizer.step()
        ema.update_parameters(backbone)   # ema = 0.999 * ema + 0.001 * backbone
        logits = ema(x)                   # forward of the averaged copy
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    ema = AveragedModel(network, multi_avg_fn=EMAUpdate(decay), use_buffers=True)
    ema.requires_grad_(False)
    ema.n_averaged.fill_(1)
    ema.register_load_state_dict_pre_hook(_load_pre_averaged_model_keys)
    return ema
