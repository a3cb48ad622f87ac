"""Class-disjoint train/val/test splits of a pool: seeded by fractions, or named in a JSON split file."""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_lightning.data.episodic.sampling import mix_seed
from ssl_lightning.utils.jsonfile import read_json_file

SPLITS = ("train", "val", "test")


def split_classes(num_classes: int, fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Seeded class-disjoint split: shuffle the classes, cut them by ``fractions``.

    Sizes are ``round(f * num_classes)`` for train and val; test gets the rest if the fractions
    sum to 1, else ``round(f_test * num_classes)`` (the remaining classes are left out).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` sorted class ids.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-6:
        raise ValueError(
            f"class_split must be three non-negative fractions (train, val, test) summing to at most 1, "
            f"got {tuple(fractions)}"
        )
    generator = torch.Generator().manual_seed(mix_seed(seed, 7))
    order = torch.randperm(num_classes, generator=generator).tolist()
    n_train = round(fractions[0] * num_classes)
    n_val = min(round(fractions[1] * num_classes), num_classes - n_train)
    n_test = min(round(fractions[2] * num_classes), num_classes - n_train - n_val)
    if abs(sum(fractions) - 1) < 1e-6:  # fractions that sum to 1 use every class, whatever the rounding
        n_test = num_classes - n_train - n_val
    cuts = [0, n_train, n_train + n_val, n_train + n_val + n_test]
    return {name: sorted(order[cuts[i] : cuts[i + 1]]) for i, name in enumerate(SPLITS)}


def split_classes_from_file(class_names: list[str], path: str | Path) -> dict[str, list[int]]:
    """Class split given by a JSON file ``{"train": [...], "val": [...], "test": [...]}``.

    An entry matches a class whose name equals it or starts with ``entry + "/"``, so
    ``"images_background"`` or ``"Latin"`` select whole alphabets and ``"Latin/character01"``
    one class. A class matched by two splits is an error; classes matched by none are unused.
    """
    path = Path(path).expanduser()
    spec = read_json_file(path, "split_file", "Write a JSON file with train/val/test lists.")
    if not isinstance(spec, dict) or set(spec) - set(SPLITS):
        raise ValueError(f"split_file {path} must be a JSON object with keys among {SPLITS}, got {spec!r:.200}")
    owner: dict[int, str] = {}
    result: dict[str, list[int]] = {name: [] for name in SPLITS}
    for split in SPLITS:
        for entry in spec.get(split, []):
            entry = str(entry).rstrip("/")
            hits = [c for c, name in enumerate(class_names) if name == entry or name.startswith(entry + "/")]
            if not hits:
                raise ValueError(
                    f"split_file {path}: {split} entry {entry!r} matches no class (classes look like "
                    f"{class_names[:3]}). Fix the entry or the root."
                )
            for c in hits:
                if owner.get(c, split) != split:
                    raise ValueError(
                        f"split_file {path}: class {class_names[c]!r} is in both {owner[c]} and {split}. "
                        f"The splits must be class-disjoint."
                    )
                owner[c] = split
            result[split].extend(hits)
    return {split: sorted(set(ids)) for split, ids in result.items()}
