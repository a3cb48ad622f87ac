"""Figures logged to TensorBoard (confusion matrices, image grids)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def confusion_figure(matrix: Tensor, class_names: list[str] | None = None) -> Any:
    """A matplotlib figure of a confusion matrix (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = matrix.detach().cpu()
    k = matrix.shape[0]
    names = class_names if class_names is not None and len(class_names) == k else [str(i) for i in range(k)]
    size = max(4.0, 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(k), names, rotation=90)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        threshold = matrix.max().item() / 2
        for i in range(k):
            for j in range(k):
                value = int(matrix[i, j])
                ax.text(j, i, value, ha="center", va="center", color="white" if value > threshold else "black")
    fig.tight_layout()
    return fig


def log_figure(logger: Any, tag: str, figure: Any, step: int) -> bool:
    """Log a matplotlib figure if the logger is TensorBoard; returns whether it was logged."""
    import matplotlib.pyplot as plt

    experiment = getattr(logger, "experiment", None)
    logged = hasattr(experiment, "add_figure")
    if logged:
        experiment.add_figure(tag, figure, global_step=step)
    plt.close(figure)
    return logged


def log_image_grid(logger: Any, tag: str, images: Tensor, step: int, nrow: int = 8) -> bool:
    """Log float[B, C, H, W] images (any range, min-max scaled per image) as one grid."""
    from torchvision.utils import make_grid

    experiment = getattr(logger, "experiment", None)
    if not hasattr(experiment, "add_image"):
        return False
    images = images.detach().float().cpu()
    flat = images.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    grid = make_grid((images - lo) / (hi - lo).clamp_min(1e-8), nrow=nrow, padding=1)
    experiment.add_image(tag, torch.clamp(grid, 0, 1), global_step=step)
    return True
