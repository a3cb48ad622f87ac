"""The Omniglot one-shot classification challenge of Lake et al. (2015), as test episodes.

Lake, Salakhutdinov & Tenenbaum (2015), *Human-level concept learning through probabilistic
program induction*, Science 350: 20 runs of 20-way within-alphabet one-shot classification
on the evaluation alphabets, distributed as ``all_runs.zip`` in
https://github.com/brendenlake/omniglot (``python/one-shot-classification/``). Unzipped::

    all_runs/
      run01/
        training/class01.png ... class20.png   # one example of each of 20 characters
        test/item01.png ... item20.png         # one new drawing of each character
        class_labels.txt                       # "run01/test/item01.png run01/training/class08.png" per line
      ...
      run20/

The score is the mean error over the 20 runs (each run weighs the same: 20 queries). Humans
make 4.5% errors, Bayesian Program Learning 3.3% (Lake et al. 2015).
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ssl_lightning.data.episodic.batch import EpisodeBatch, episode_to_float

LABEL_FILE = "class_labels.txt"
RUN_PATTERN = re.compile(r"run\d+")
SOURCE_HINT = "all_runs.zip from https://github.com/brendenlake/omniglot (python/one-shot-classification/)"


def _image_files(folder: Path) -> list[Path]:
    """The files :func:`read_image_tree` reads from a class folder, in its order (sorted by path)."""
    from ssl_lightning.data.folder import IMAGE_EXTENSIONS

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _run_key(path: str) -> str:
    """``"run01/test/item01.png"`` -> ``"test/item01.png"``: the part below the run folder."""
    return "/".join(Path(path).parts[-2:])


def read_run(run_dir: Path, image_size: int | None = None, channels: int | None = None) -> EpisodeBatch:
    """One run as an N-way 1-shot episode (uint8 images, no task dimension).

    Returns:
        ``(support_x: uint8[N, C, H, W], support_y: long[N], query_x: uint8[N*Q, C, H, W],
        query_y: long[N*Q])``: support item ``j`` is ``training``'s ``j``-th image (sorted by
        name) with label ``j``; queries are the ``test`` images sorted by their label.

    Raises:
        FileNotFoundError: the run has no ``class_labels.txt``, ``training/`` or ``test/``.
        ValueError: ``class_labels.txt`` names a missing image, leaves a test image out, or
            gives the classes unequal numbers of test images.
    """
    from ssl_lightning.data.folder import read_image_tree

    label_file = run_dir / LABEL_FILE
    for needed in (label_file, run_dir / "training", run_dir / "test"):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} is missing: {run_dir} is not a one-shot run. Unzip {SOURCE_HINT}.")
    images, labels, names = read_image_tree(run_dir, 1, image_size, channels)
    if names != ["test", "training"]:
        raise ValueError(f"{run_dir} must hold exactly the folders test/ and training/, found {names}.")
    train_files = [_run_key(p.relative_to(run_dir).as_posix()) for p in _image_files(run_dir / "training")]
    test_files = [_run_key(p.relative_to(run_dir).as_posix()) for p in _image_files(run_dir / "test")]
    answers: dict[str, str] = {}
    for number, line in enumerate(label_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{label_file} line {number}: expected '<test image> <training image>', got {line!r}")
        test, train = _run_key(fields[0]), _run_key(fields[1])
        if test not in test_files or train not in train_files:
            missing = test if test not in test_files else train
            raise ValueError(f"{label_file} line {number} names {missing}, which is not an image of {run_dir}.")
        answers[test] = train
    unlabelled = [f for f in test_files if f not in answers]
    if unlabelled:
        raise ValueError(f"{label_file} gives no class for {unlabelled[:5]}; every test image needs a line.")
    query_y = torch.tensor([train_files.index(answers[f]) for f in test_files])
    counts = torch.bincount(query_y, minlength=len(train_files))
    if int(counts.min()) != int(counts.max()):
        raise ValueError(
            f"{label_file}: the training images have between {int(counts.min())} and {int(counts.max())} test "
            f"images; an episode needs the same number for every class."
        )
    support_x = images[labels == names.index("training")]
    order = torch.argsort(query_y, stable=True)
    query_x = images[labels == names.index("test")][order]
    return support_x, torch.arange(len(train_files)), query_x, query_y[order]


def find_runs(root: Path) -> list[Path]:
    """The ``runNN`` folders under ``root`` (or under ``root/all_runs``), sorted."""
    root = Path(root).expanduser()
    if (root / "all_runs").is_dir():
        root = root / "all_runs"
    runs = sorted(p for p in root.iterdir() if p.is_dir() and RUN_PATTERN.fullmatch(p.name)) if root.is_dir() else []
    if not runs:
        raise FileNotFoundError(
            f"No one-shot runs (run01/ ... run20/) found in {root}. Unzip {SOURCE_HINT} and point --data.root at "
            f"the folder that holds the run folders."
        )
    return runs


class _Runs(Dataset[EpisodeBatch]):
    def __init__(self, episodes: list[EpisodeBatch]) -> None:
        self.episodes = episodes

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> EpisodeBatch:
        return self.episodes[index]


class OmniglotOneShotRunsDataModule(pl.LightningDataModule):
    """Lake et al. (2015)'s 20 one-shot runs as 20 test episodes (20-way, 1-shot, 1 query per class).

    Each test batch is one run: ``(support_x: float[1, 20, C, H, W], support_y: long[1, 20],
    query_x: float[1, 20, C, H, W], query_y: long[1, 20])``, pixels in ``[0, 1]``, the same
    format as :class:`~ssl_lightning.data.episodic.EpisodicDataModule`. Any episodic model
    trained on the background alphabets can be tested on it; its ``test/acc`` is the mean
    accuracy over the runs, so **the challenge's mean error is ``1 - test/acc``**. Use the
    image size and channels the model was trained with (images are read like the training
    folders, by :func:`~ssl_lightning.data.folder.read_image_tree`)::

        ssl-lightning test --config experiments/fewshot/protonet_omniglot_20w1s.yaml \\
            --ckpt_path <best.ckpt> \\
            --data ssl_lightning.data.omniglot_runs.OmniglotOneShotRunsDataModule \\
            --data.root data/all_runs --data.image_size 28

    (Models whose head has ``n_way`` outputs, e.g. MAML, must have been trained 20-way.)

    The runs use characters of the *evaluation* alphabets, so for the challenge train on
    ``images_background`` only (Lake et al.'s protocol): point ``--data.init_args.root`` at
    the unzipped ``images_background/``, or keep both parts and pass a ``split_file`` such as
    ``{"train": ["images_background"], "test": ["images_evaluation"]}``. A random
    ``class_split`` over both parts would train on the very characters of the runs.

    Example config::

        data:
          class_path: ssl_lightning.data.omniglot_runs.OmniglotOneShotRunsDataModule
          init_args: {root: data/all_runs, image_size: 28}

    Args:
        root: the unzipped ``all_runs`` folder (or its parent).
        image_size: resize to ``image_size x image_size``; ``None`` keeps the 105x105 files.
        channels: 1 (grey) or 3 (RGB); ``None`` keeps the files' (grey) channel.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str = "data/all_runs",
        image_size: int | None = None,
        channels: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.image_size = image_size
        self.channels = channels
        self.num_workers = num_workers
        self.runs: list[EpisodeBatch] = []
        self.run_names: list[str] = []
        self.n_way = 20
        self.k_shot = 1
        self.n_query = 1

    def prepare_data(self) -> None:
        find_runs(self.root)  # fail early, on one process, with the message that says where to get the runs

    def setup(self, stage: str | None = None) -> None:
        if self.runs:
            return
        dirs = find_runs(self.root)
        self.runs = [read_run(d, self.image_size, self.channels) for d in dirs]
        self.run_names = [d.name for d in dirs]
        support_x, _, query_x, _ = self.runs[0]
        self.n_way, self.k_shot, self.n_query = len(support_x), 1, len(query_x) // len(support_x)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(_Runs(self.runs), batch_size=1, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        """The same runs, so ``ssl-lightning validate`` works too."""
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: EpisodeBatch, dataloader_idx: int) -> EpisodeBatch:
        return episode_to_float(batch)
