"""The one place where methods read statistics of the global batch across DDP ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_rows"]


def gather_rows(tensor: Tensor) -> Tensor:
    """The rows of ``tensor`` from every DDP rank, concatenated in rank order; ``tensor`` itself without DDP.

    For state that every rank must update the same way (the EMAs and per-sample predictions of the
    adaptive-threshold methods): each rank computes the update from the same global batch, so
    the ranks' states stay equal without broadcasting them. Ranks may hold different numbers of
    rows (a short last batch): rows are padded to the largest count for ``all_gather`` and the
    padding is dropped after. No gradient flows back through the result.

    Shapes: ``float[M_r, ...]`` on rank ``r`` -> ``float[sum_r M_r, ...]`` on every rank.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    world_size = dist.get_world_size()
    count = torch.tensor([len(tensor)], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: len(tensor)] = tensor.detach()
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([rows[:size] for rows, size in zip(gathered, sizes, strict=True)])
