"""tieredImageNet (Ren et al. 2018): 608 ImageNet classes in 34 categories, split by category into
351/97/160 classes (779,165 images at 84x84), read from the release's pickles or their npz version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssl_lightning.data.episodic import Pool
from ssl_lightning.data.fewshot_benchmarks.common import (
    SplitBenchmark,
    hwc_to_tensor,
    load_pickle,
    text_key,
)
from ssl_lightning.data.folder import decode_image


def _as_bytes(item: object) -> bytes:
    """One encoded PNG as stored by the release (bytes, or a uint8 array of the file's bytes)."""
    if isinstance(item, bytes):
        return item
    return np.asarray(item, dtype=np.uint8).tobytes()


class TieredImageNet(SplitBenchmark):
    """tieredImageNet from Ren et al.'s release (``few-shot-ssl-public``), in either common form:

    * ``{train,val,test}_images_png.pkl`` (a list of PNG-encoded images, decoded on reading) with
      ``{split}_labels.pkl`` (a dict with ``label_specific``: long[N], and ``label_specific_str``:
      the class names), as the original tarball holds them (``tiered-imagenet/`` inside ``root`` is
      found too);
    * ``{split}_images.npz`` (key ``images``: uint8[N, 84, 84, 3]) with the same label pickles, the
      decoded form that MetaOptNet, RFS and Meta-Baseline use.

    The whole training split is ~16.5 GB as uint8 in memory (448,695 images); there is no download
    (the release is a Google Drive archive: see the repository of Ren et al.).

    Example config::

        source:
          class_path: ssl_lightning.data.fewshot_benchmarks.TieredImageNet
          init_args: {root: data/tiered-imagenet}

    Args:
        root: the folder with the files above (or its parent holding ``tiered-imagenet/``).
        image_size: side of the square images (``None`` keeps 84).
    """

    title = "tieredImageNet"

    def __init__(self, root: str | Path, image_size: int | None = None) -> None:
        super().__init__(root, image_size)
        if (self.root / "tiered-imagenet").is_dir():
            self.root = self.root / "tiered-imagenet"

    def read_split(self, split: str) -> Pool:
        labels_file = self.root / f"{split}_labels.pkl"
        npz, png = self.root / f"{split}_images.npz", self.root / f"{split}_images_png.pkl"
        if not labels_file.is_file() or not (npz.is_file() or png.is_file()):
            raise FileNotFoundError(
                f"tieredImageNet {split} split not found under {self.root}: expected {labels_file.name} and "
                f"{npz.name} or {png.name} (Ren et al. 2018's release, extracted). Point "
                f"--data.init_args.source.init_args.root at that folder."
            )
        meta = load_pickle(labels_file)
        key = next((k for k in ("label_specific", "labels") if _has(meta, k)), None)
        if key is None:
            raise ValueError(
                f"{labels_file} has neither label_specific nor labels (is it a tieredImageNet label file?)."
            )
        specific = np.asarray(text_key(meta, key), dtype=np.int64)
        if npz.is_file():
            with np.load(npz) as archive:
                key = "images" if "images" in archive.files else archive.files[0]
                images = hwc_to_tensor(archive[key], self.image_size)
        else:
            encoded = load_pickle(png)
            images = hwc_to_tensor(
                [
                    decode_image(_as_bytes(item), self.image_size, colour=True, name=f"{png.name}[{i}]")
                    for i, item in enumerate(encoded)
                ],
                self.image_size,
            )
        if len(images) != len(specific):
            raise ValueError(f"tieredImageNet {split}: {len(images)} images but {len(specific)} labels.")
        count = int(specific.max()) + 1 if len(specific) else 0
        if _has(meta, "label_specific_str"):
            names = [str(n.decode() if isinstance(n, bytes) else n) for n in text_key(meta, "label_specific_str")]
        else:
            names = [f"{split}/{c}" for c in range(count)]
        if len(names) < count:
            raise ValueError(f"{labels_file}: {count} classes but {len(names)} names in label_specific_str.")
        return images, torch.from_numpy(specific), names[:count]


def _has(mapping: dict, key: str) -> bool:
    return key in mapping or key.encode() in mapping
