"""A tiny few-shot DataModule for the pretrain-then-adapt tests: plain batches of base classes, episodes of others.

It serves what ``EpisodicDataModule(train_mode="batches")`` does (``BaseClassData``): training batches
``(float[B, 1, S, S], long[B])`` over ``num_base_classes`` classes, fixed val/test episodes
``(support_x[1, N*K, 1, S, S], support_y[1, N*K], query_x[1, N*Q, 1, S, S], query_y[1, N*Q])`` of disjoint
novel classes, and ``labelled_features``. Each class is a fixed random pattern plus noise.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from tests.methods.test_protonet import synthetic_episodes


class FewShotData(pl.LightningDataModule):
    def __init__(
        self,
        num_base: int = 4,
        n_way: int = 2,
        k_shot: int = 2,
        n_query: int = 3,
        size: int = 16,
        per_class: int = 8,
        episodes: int = 3,
        train_mode: str = "batches",
        seed: int = 0,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        patterns = torch.randn(num_base, 1, size, size, generator=g)
        self.train_y = torch.arange(num_base).repeat_interleave(per_class)
        self.train_x = patterns[self.train_y] + 0.5 * torch.randn(len(self.train_y), 1, size, size, generator=g)
        self.num_base_classes = num_base
        self.n_way, self.k_shot, self.n_query, self.size, self.episodes = n_way, k_shot, n_query, size, episodes
        self.train_mode = train_mode
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        if self.train_mode == "episodes":
            return DataLoader(self._episodes(self.seed + 9), batch_size=None)
        return DataLoader(TensorDataset(self.train_x, self.train_y), batch_size=8, shuffle=False)

    def _episodes(self, seed: int) -> list:
        return synthetic_episodes(self.episodes, 1, self.n_way, self.k_shot, self.n_query, self.size, seed=seed)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._episodes(self.seed + 1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._episodes(self.seed + 2), batch_size=None)

    def labelled_features(self, embed: Callable[[Tensor], Tensor], device: torch.device | str) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return embed(self.train_x.to(device)), self.train_y.to(device)


class Identity(nn.Module):
    """Features = the flattened input (plus one unused weight so an optimizer can be built)."""

    num_classes = 0

    def __init__(self, num_features: int = 2) -> None:
        super().__init__()
        self.num_features = num_features
        self.unused = nn.Parameter(torch.zeros(1))
        self.head = nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return x.flatten(1)


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints, bars or summaries."""
    defaults = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    return pl.Trainer(**{**defaults, "enable_model_summary": False, **kwargs})
