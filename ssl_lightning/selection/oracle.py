"""A simulated annotator: labels come out only for items that were selected for labelling."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class SimulatedOracle:
    """Plays the human annotator of an active-learning loop with a dataset's known labels.

    A strategy must not peek at labels it has not paid for, so the true labels are private:
    :meth:`annotate` is the act of labelling (it records the items as labelled and returns
    their labels) and :meth:`labels_of` only answers for items annotated before; asking for
    any other item raises.

    Shapes: ``labels: long[N]`` for a pool of ``N`` items; indices index that pool.

    Example::

        oracle = SimulatedOracle(datamodule.datasets["all"].labels)
        y = oracle.annotate(picked)            # long[len(picked)]
        oracle.per_class_counts(num_classes=10)

    Args:
        labels: true labels of the pool (a tensor, array or list of ints).
    """

    def __init__(self, labels: Sequence[int] | np.ndarray) -> None:
        self._labels = np.array(labels, dtype=np.int64).reshape(-1)
        self._annotated = np.zeros(len(self._labels), dtype=bool)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labelled(self) -> np.ndarray:
        """int64[L] sorted indices annotated so far."""
        return np.flatnonzero(self._annotated)

    def _check_range(self, indices: np.ndarray) -> None:
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self._labels)):
            raise IndexError(f"indices must lie in [0, {len(self._labels)}), got {indices.min()}..{indices.max()}")

    def annotate(self, indices: Iterable[int]) -> np.ndarray:
        """Label ``indices`` (the paid step) and return their labels, long[len(indices)]."""
        indices = np.asarray(list(indices), dtype=np.int64)
        self._check_range(indices)
        self._annotated[indices] = True
        return self._labels[indices].copy()

    def labels_of(self, indices: Iterable[int]) -> np.ndarray:
        """Labels of items annotated before; raises ``PermissionError`` naming any that were not."""
        indices = np.asarray(list(indices), dtype=np.int64)
        self._check_range(indices)
        hidden = indices[~self._annotated[indices]]
        if len(hidden):
            shown = ", ".join(str(i) for i in hidden[:10]) + (" ..." if len(hidden) > 10 else "")
            raise PermissionError(
                f"the oracle reveals labels only of selected items; {len(hidden)} requested item(s) were never "
                f"selected: {shown}. Call annotate() on them first (it counts against the budget)."
            )
        return self._labels[indices].copy()

    def per_class_counts(self, num_classes: int | None = None) -> dict[str, int]:
        """``{"class id": number of annotated items}`` over the annotated items only."""
        counts = np.bincount(self._labels[self._annotated], minlength=num_classes or 0)
        return {str(c): int(n) for c, n in enumerate(counts)}
