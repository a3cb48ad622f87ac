"""The simulated oracle reveals labels only of items selected for labelling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_lightning.selection.oracle import SimulatedOracle


def test_reveals_only_annotated_labels():
    oracle = SimulatedOracle(torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]))
    with pytest.raises(PermissionError, match="never selected: 2"):
        oracle.labels_of([2])
    assert oracle.annotate([2, 5]).tolist() == [4, 9]
    assert oracle.labels_of([5, 2]).tolist() == [9, 4]
    with pytest.raises(PermissionError, match="1 requested item"):
        oracle.labels_of([2, 7])
    assert oracle.labelled.tolist() == [2, 5]
    assert oracle.per_class_counts(10) == {str(c): int(c in (4, 9)) for c in range(10)}


def test_the_labels_cannot_be_changed_or_read_through_the_input():
    labels = np.array([0, 1, 2])
    oracle = SimulatedOracle(labels)
    labels[0] = 7
    revealed = oracle.annotate([0])
    revealed[0] = 5
    assert oracle.labels_of([0]).tolist() == [0]


def test_out_of_range_indices_are_an_error():
    oracle = SimulatedOracle([0, 1])
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        oracle.annotate([2])
