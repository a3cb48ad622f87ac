"""CUB-200-2011 (Wah et al. 2011) with the class split of "A Closer Look at Few-shot Classification"
(Chen et al. 2019): 100 base, 50 validation and 50 novel bird species."""

from __future__ import annotations

from pathlib import Path

from ssl_lightning.data.episodic import Pool
from ssl_lightning.data.fewshot_benchmarks.common import SplitBenchmark, read_class_folders


def closer_look_split(num_classes: int) -> dict[str, list[int]]:
    """Chen et al.'s split of the sorted class folders (``filelists/CUB/write_CUB_filelist.py``): class ``i`` is
    base if ``i % 2 == 0``, validation if ``i % 4 == 1`` and novel if ``i % 4 == 3``."""
    return {
        "train": [i for i in range(num_classes) if i % 2 == 0],
        "val": [i for i in range(num_classes) if i % 4 == 1],
        "test": [i for i in range(num_classes) if i % 4 == 3],
    }


class CUB200(SplitBenchmark):
    """CUB-200-2011 from its official archive, unpacked: ``CUB_200_2011/images/<NNN.Species>/*.jpg``.

    ``root`` may be the folder holding ``CUB_200_2011/``, that folder itself, or its ``images/``.
    Images (of many sizes) are resized to ``image_size`` squares when read; the whole image is used
    (no bounding-box crop), as in the Closer-Look protocol. Used for fine-grained few-shot and for
    cross-domain evaluation (train on miniImageNet, test on CUB's novel classes).

    Example config::

        source:
          class_path: ssl_lightning.data.fewshot_benchmarks.CUB200
          init_args: {root: data, image_size: 84}

    Args:
        root: see above.
        image_size: side of the square images.
    """

    title = "CUB-200-2011"

    def __init__(self, root: str | Path, image_size: int | None = 84) -> None:
        super().__init__(root, image_size)
        self._classes: list[Path] | None = None

    def images_folder(self) -> Path:
        for candidate in (self.root / "CUB_200_2011" / "images", self.root / "images", self.root):
            if candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
                if candidate == self.root and not any(p.name[:3].isdigit() for p in candidate.iterdir()):
                    continue
                return candidate
        raise FileNotFoundError(
            f"CUB-200-2011 not found under {self.root}: expected CUB_200_2011/images/<NNN.Species>/*.jpg (the "
            f"official CUB_200_2011.tgz, extracted). Point --data.init_args.source.init_args.root at it."
        )

    def read_split(self, split: str) -> Pool:
        if self._classes is None:
            self._classes = sorted(p for p in self.images_folder().iterdir() if p.is_dir())
        chosen = [self._classes[i] for i in closer_look_split(len(self._classes))[split]]
        return read_class_folders(chosen, self.image_size, self.title)
