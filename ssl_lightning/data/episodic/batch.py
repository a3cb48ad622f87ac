"""Episode batches: the dataset indexed by whole episodes, the collation into task batches, uint8 -> float.

Batches are ``(support_x, support_y, query_x, query_y)`` (:data:`EpisodeBatch`); see
:class:`~ssl_lightning.data.episodic.datamodule.EpisodicDataModule` for their shapes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_lightning.data.episodic.sampling import episode_labels

#: ``(support_x, support_y, query_x, query_y)``; see :class:`EpisodicDataModule` for shapes.
EpisodeBatch = tuple[Tensor, Tensor, Tensor, Tensor]


class EpisodeDataset(Dataset[Tensor]):
    """Images of one split, indexed by whole episodes.

    With ``rotations``, item ``r * N + i`` is image ``i`` rotated by ``r * 90`` degrees
    (``r`` in 0..3) and belongs to class ``r * C + label[i]`` (:attr:`labels`), so the 4x
    classes cost no memory.

    Args:
        images: uint8[N, C, H, W].
        labels: long[N] in ``0..C-1``.
        rotations: add the rotated copies as new classes (needs ``H == W``).
        num_classes: ``C``; default ``max(labels) + 1``.
    """

    def __init__(self, images: Tensor, labels: Tensor, rotations: bool = False, num_classes: int | None = None) -> None:
        if rotations and images.shape[-1] != images.shape[-2]:
            raise ValueError(
                f"rotations need square images, got {images.shape[-2]}x{images.shape[-1]}. Set image_size."
            )
        self.images = images
        self.rotations = rotations
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if len(labels) else 0
        copies = 4 if rotations else 1
        self.labels = torch.cat([labels + r * num_classes for r in range(copies)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: list[int]) -> Tensor:
        """uint8[len(indices), C, H, W] for one episode's flattened indices."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if not self.rotations:
            return self.images[index]
        count = len(self.images)
        out = self.images[index % count]
        quarter = index // count
        for r in (1, 2, 3):
            mask = quarter == r
            if mask.any():
                out[mask] = torch.rot90(out[mask], r, dims=(2, 3))
        return out


class EpisodeCollate:
    """Stacks T episodes (each uint8[N * (K + Q), C, H, W], class rows of K support then Q query) into a batch.

    Returns ``(support_x: uint8[T, N*K, C, H, W], support_y: long[T, N*K], query_x: uint8[T, N*Q, C, H, W],
    query_y: long[T, N*Q])`` with labels ``0..N-1`` by class row.
    """

    def __init__(self, n_way: int, k_shot: int, n_query: int) -> None:
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query

    def __call__(self, episodes: list[Tensor]) -> EpisodeBatch:
        tasks = len(episodes)
        stacked = torch.stack(episodes).unflatten(1, (self.n_way, self.k_shot + self.n_query))
        shape = stacked.shape[3:]
        support = stacked[:, :, : self.k_shot].reshape(tasks, self.n_way * self.k_shot, *shape)
        query = stacked[:, :, self.k_shot :].reshape(tasks, self.n_way * self.n_query, *shape)
        support_y = episode_labels(self.n_way, self.k_shot).expand(tasks, -1).contiguous()
        query_y = episode_labels(self.n_way, self.n_query).expand(tasks, -1).contiguous()
        return support, support_y, query, query_y


def episode_to_float(batch: EpisodeBatch) -> EpisodeBatch:
    """uint8 images of an episode batch -> float in ``[0, 1]`` (on whatever device they are)."""
    support_x, support_y, query_x, query_y = batch
    return support_x.float() / 255, support_y, query_x.float() / 255, query_y
