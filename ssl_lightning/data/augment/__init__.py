"""Batched image augmentation on the training device, with per-sample random parameters.

The package holds :mod:`.pipeline` (the op protocol, ops in sequence, the seeded generator),
:mod:`.geometry` (flips, rotation, translation, affine, resized crop, pad-crop), :mod:`.colour`
(colour jitter), :mod:`.erasing` (Cutout, random erasing), :mod:`.randaugment` and
:mod:`.presets` (FixMatch's weak and strong pipelines). Every name is re-exported here, so
configs name ops by their short path, ``ssl_lightning.data.augment.<Op>``.

Every op takes ``x: float[B, C, H, W]`` in ``[0, 1]`` (on any device) and a
``torch.Generator`` on that device, and returns a new ``float[B, C, H, W]``; each image draws
its own parameters (angle, offset, crop box, jitter factors, erased box, ...). DataModules run
the list given as ``augment:`` in ``on_after_batch_transfer`` (training only), with a generator
seeded from ``(seed, epoch, batch index)`` so a resumed run sees the same augmentations as an
uninterrupted one.

Why our own ``affine_grid``/``grid_sample`` code rather than a library:

* torchvision v2 transforms applied to a batched tensor draw **one** set of parameters for
  the whole batch (every image rotated by the same angle), so they would have to run per
  sample in DataLoader workers, which is the slow path this module replaces.
* kornia.augmentation does draw per sample, but from torch's global RNG, so exact
  reproduction after a resume needs global seeding, which library code must not do here; and
  it would be a heavy extra dependency for ~a dozen ops.
* The geometry is small: one ``2x3`` matrix per image in pixel coordinates, converted to
  ``affine_grid``'s normalized coordinates, then one ``grid_sample`` per op. The same code runs
  on CPU and GPU, and is tested against exact references (``torch.flip``, ``torch.rot90``).

Example config (CIFAR-10 style)::

    data:
      init_args:
        augment:
          - class_path: ssl_lightning.data.augment.HorizontalFlip
            init_args: {p: 0.5}
          - class_path: ssl_lightning.data.augment.PadCrop
            init_args: {padding: 4, padding_mode: reflect}
          - class_path: ssl_lightning.data.augment.ColorJitter
            init_args: {brightness: 0.2, contrast: 0.2, saturation: 0.2, p: 0.8}
          - class_path: ssl_lightning.data.augment.Cutout
            init_args: {size: 8, p: 0.5}
"""

from ssl_lightning.data.augment.colour import ColorJitter, grey, rotate_hue
from ssl_lightning.data.augment.erasing import Cutout, RandomErasing
from ssl_lightning.data.augment.geometry import (
    HorizontalFlip,
    PadCrop,
    PaddingMode,
    RandomAffine,
    RandomResizedCrop,
    RandomRotation,
    RandomTranslation,
    VerticalFlip,
    affine_matrix,
    warp_affine,
)
from ssl_lightning.data.augment.pipeline import Augmentations, BatchAugmentation, augmentation_generator
from ssl_lightning.data.augment.presets import (
    StrongAugmentation,
    WeakAugmentation,
    strong_augmentation,
    weak_augmentation,
)
from ssl_lightning.data.augment.randaugment import RAND_OPS, RandAugment, RandOp

__all__ = [
    "Augmentations",
    "BatchAugmentation",
    "ColorJitter",
    "Cutout",
    "HorizontalFlip",
    "PadCrop",
    "PaddingMode",
    "RAND_OPS",
    "RandAugment",
    "RandOp",
    "RandomAffine",
    "RandomErasing",
    "RandomResizedCrop",
    "RandomRotation",
    "RandomTranslation",
    "StrongAugmentation",
    "VerticalFlip",
    "WeakAugmentation",
    "affine_matrix",
    "augmentation_generator",
    "grey",
    "rotate_hue",
    "strong_augmentation",
    "warp_affine",
    "weak_augmentation",
]
