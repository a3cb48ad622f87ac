"""EpisodicDataModule on tiny PNG trees (one folder per class, Omniglot layouts) and on digits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.episodic import EpisodeDataset, EpisodicDataModule, split_classes
from tests.helpers import run_cli

SIZE = 12


def class_fill(index: int) -> int:
    """Grey level of class ``index``'s images (decodable from a batch)."""
    return 10 + 15 * index


def write_png_tree(root: Path, classes: Sequence[str], per_class: int, size: int = SIZE, rgb: bool = False) -> Path:
    """Write ``root/<class>/<i>.png``: class ``c`` is filled with ``class_fill(c)``, with an asymmetric mark.

    Class names may contain ``/`` (Omniglot's ``alphabet/character``). The mark (a bright
    top-left bar of a length that depends on the image) makes rotations and items distinct.
    """
    from PIL import Image

    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            array = np.full((size, size), class_fill(c), dtype=np.uint8)
            array[0, : 2 + i % (size // 2)] = 255
            image = Image.fromarray(array, "L")
            (image.convert("RGB") if rgb else image).save(folder / f"{i:03d}.png")
    return root


def decode_classes(x: Tensor) -> Tensor:
    """uint8 or [0, 1] float images [..., C, H, W] -> the class fill each was drawn with (median grey level)."""
    values = x.float() * (255 if x.is_floating_point() else 1)
    return values.flatten(-3).median(-1).values.round().long()


def assert_episode_batch(batch, tasks: int, n_way: int, k_shot: int, n_query: int, shape: tuple[int, ...]) -> None:
    support_x, support_y, query_x, query_y = batch
    assert support_x.shape == (tasks, n_way * k_shot, *shape)
    assert query_x.shape == (tasks, n_way * n_query, *shape)
    assert support_y.dtype == query_y.dtype == torch.long
    assert support_y.shape == (tasks, n_way * k_shot) and query_y.shape == (tasks, n_way * n_query)
    for t in range(tasks):
        assert set(support_y[t].tolist()) == set(query_y[t].tolist()) == set(range(n_way))
        support_cls, query_cls = decode_classes(support_x[t]), decode_classes(query_x[t])
        for label in range(n_way):
            # one source class per label, the same in support and query, and distinct across labels
            cls = support_cls[support_y[t] == label].unique()
            assert len(cls) == 1
            assert query_cls[query_y[t] == label].unique().tolist() == cls.tolist()
        assert len(support_cls.unique()) == n_way


@pytest.fixture
def flat_tree(tmp_path: Path) -> Path:
    return write_png_tree(tmp_path / "flat", [f"class{c}" for c in range(10)], per_class=6)


def test_flat_tree_episodes_are_class_disjoint_and_well_formed(flat_tree):
    dm = EpisodicDataModule(
        root=str(flat_tree), n_way=2, k_shot=1, n_query=2, tasks_per_batch=3, train_episodes=12, eval_episodes=5
    )
    dm.setup("fit")
    names = {split: set(dm.class_names[split]) for split in ("train", "val", "test")}
    assert [len(names[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    batches = list(dm.train_dataloader())
    assert len(batches) == 4
    assert batches[0][0].dtype == torch.uint8  # uint8 until it reaches the device
    for batch in batches:
        assert_episode_batch(batch, 3, 2, 1, 2, (1, SIZE, SIZE))
    support_x, _, query_x, _ = dm.on_after_batch_transfer(batches[0], 0)
    assert support_x.dtype == torch.float32 and 0 <= float(support_x.min()) and float(query_x.max()) <= 1
    train_fills = {class_fill(int(n.removeprefix("class"))) for n in names["train"]}
    assert set(decode_classes(torch.cat([b[0] for b in batches]).flatten(0, 1)).tolist()) <= train_fills
    val = list(dm.val_dataloader())
    assert len(val) == 5
    assert_episode_batch(val[0], 1, 2, 1, 2, (1, SIZE, SIZE))


def test_training_episodes_may_differ_from_evaluation_episodes(flat_tree):
    """Snell et al. train at a higher way; the MAML reference code with 1 query: eval episodes keep their shape."""
    dm = EpisodicDataModule(
        root=str(flat_tree), n_way=2, k_shot=1, n_query=2, train_n_way=4, train_k_shot=2, train_n_query=1,
        tasks_per_batch=2, train_episodes=4, eval_episodes=3,
    )  # fmt: skip
    assert dm.episode_shape("train") == (4, 2, 1) and dm.episode_shape("val") == (2, 1, 2)
    for batch in dm.train_dataloader():
        assert_episode_batch(batch, 2, 4, 2, 1, (1, SIZE, SIZE))
    for batch in dm.val_dataloader():
        assert_episode_batch(batch, 1, 2, 1, 2, (1, SIZE, SIZE))
    with pytest.raises(ValueError, match="n_way=4 but the train split has only 2 classes"):
        list(
            EpisodicDataModule(
                root=str(flat_tree), n_way=2, train_n_way=4, class_split=(0.2, 0.4, 0.4)
            ).train_dataloader()
        )


def test_eval_episodes_are_the_same_in_every_run(flat_tree):
    def episodes(seed: int) -> list[Tensor]:
        dm = EpisodicDataModule(root=str(flat_tree), n_way=2, k_shot=1, n_query=2, eval_episodes=6, seed=seed)
        return [torch.cat([b[0], b[2]], 1) for b in dm.test_dataloader()]

    first, again = episodes(0), episodes(0)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, episodes(1), strict=True))


def test_eval_episodes_do_not_depend_on_how_many_share_a_batch(flat_tree):
    def episodes(per_batch: int) -> Tensor:
        dm = EpisodicDataModule(
            root=str(flat_tree), n_way=2, k_shot=1, n_query=2, eval_episodes=5, eval_tasks_per_batch=per_batch
        )
        batches = list(dm.test_dataloader())
        assert len(batches) == -(-5 // per_batch)
        return torch.cat([torch.cat([b[0], b[2]], 1) for b in batches])

    assert torch.equal(episodes(1), episodes(2)) and torch.equal(episodes(1), episodes(5))
    with pytest.raises(ValueError, match="eval_tasks_per_batch must be >= 1"):
        EpisodicDataModule(root=str(flat_tree), eval_tasks_per_batch=0)


def test_training_episodes_change_with_the_epoch(flat_tree):
    dm = EpisodicDataModule(root=str(flat_tree), n_way=3, k_shot=1, n_query=1, train_episodes=8)
    loader = dm.train_dataloader()
    epoch0 = torch.cat([b[0] for b in loader])
    assert torch.equal(epoch0, torch.cat([b[0] for b in loader]))
    loader.sampler.set_epoch(1)
    assert not torch.equal(epoch0, torch.cat([b[0] for b in loader]))


def test_omniglot_layout_with_both_parts_and_a_split_file(tmp_path):
    root = tmp_path / "omniglot"
    write_png_tree(root / "images_background", ["Alpha/character01", "Alpha/character02", "Beta/character01"], 4)
    write_png_tree(root / "images_evaluation", ["Gamma/character01", "Gamma/character02", "Delta/character01"], 4)
    split_file = tmp_path / "split.json"
    split_file.write_text(
        json.dumps(
            {"train": ["images_background"], "val": ["images_evaluation/Gamma"], "test": ["images_evaluation/Delta"]}
        )
    )
    dm = EpisodicDataModule(root=str(root), class_depth=2, split_file=str(split_file), n_way=1, k_shot=1, n_query=1)
    dm.setup()
    assert dm.class_names == {
        "train": [
            "images_background/Alpha/character01",
            "images_background/Alpha/character02",
            "images_background/Beta/character01",
        ],
        "val": ["images_evaluation/Gamma/character01", "images_evaluation/Gamma/character02"],
        "test": ["images_evaluation/Delta/character01"],
    }
    assert_episode_batch(next(iter(dm.train_dataloader())), 1, 1, 1, 1, (1, SIZE, SIZE))


def test_torchvision_omniglot_root_and_alphabet_tree(tmp_path):
    write_png_tree(
        tmp_path / "omniglot-py" / "images_background", [f"A{a}/c{c}" for a in range(2) for c in range(3)], 3
    )
    dm = EpisodicDataModule(
        root=str(tmp_path), class_depth=2, image_size=8, class_split=(0.5, 0.5, 0.0), n_way=3, n_query=2
    )
    dm.setup()
    assert len(dm.class_names["train"]) == len(dm.class_names["val"]) == 3 and dm.class_names["test"] == []
    assert all(name.startswith("images_background/A") for name in dm.class_names["train"])
    assert next(iter(dm.val_dataloader()))[0].shape == (1, 3, 1, 8, 8)
    assert dm.test_dataloader() == []  # a split without classes is skipped, not an error


def test_rotations_make_four_classes_of_each(flat_tree):
    dm = EpisodicDataModule(root=str(flat_tree), rotations=True, n_way=10, k_shot=2, n_query=2)
    dm.setup()
    assert len(dm.class_names["train"]) == 24 and dm.class_names["train"][6].endswith("@rot90")
    dataset = dm.datasets["train"]
    count = len(dataset.images)
    assert len(dataset) == 4 * count
    item = 2
    for quarter in range(4):
        rotated = dataset[[quarter * count + item]][0]
        assert torch.equal(rotated, torch.rot90(dataset.images[item], quarter, dims=(1, 2)))
        assert int(dataset.labels[quarter * count + item]) == int(dataset.labels[item]) + 6 * quarter
    batch = next(iter(dm.train_dataloader()))
    support_x, support_y = batch[0][0], batch[1][0]
    for label in range(10):  # the two shots of a rotated class share its rotation
        shots = support_x[support_y == label]
        marks = [tuple(torch.nonzero(s[0] == 255)[0].tolist()) for s in shots]
        corners = {(0 if r == 0 else 1, 0 if c == 0 else 1) for r, c in marks}
        assert len(corners) == 1


def test_digits_as_source_resized_to_rgb():
    dm = EpisodicDataModule(source=DigitsDataModule(), image_size=16, channels=3, rotations=True, n_query=3)
    dm.setup()
    assert [len(dm.class_names[s]) for s in ("train", "val", "test")] == [24, 8, 8]
    assert sum(len(d.images) for d in dm.datasets.values()) == 1797
    support_x, support_y, query_x, query_y = next(iter(dm.val_dataloader()))
    assert support_x.shape == (1, 5, 3, 16, 16) and query_x.shape == (1, 15, 3, 16, 16)
    assert torch.equal(support_x[:, :, 0], support_x[:, :, 2])  # grey repeated to RGB


def test_impossible_requests_name_the_class_and_numbers(flat_tree, tmp_path):
    dm = EpisodicDataModule(root=str(flat_tree), n_way=3)
    with pytest.raises(ValueError, match="n_way=3 but the val split has only 2 classes"):
        dm.val_dataloader()
    dm = EpisodicDataModule(root=str(flat_tree), n_way=2, k_shot=2, n_query=5)
    with pytest.raises(ValueError, match=r"Class 'class\d' in the train split has 6 items.*2 \+ 5 = 7"):
        dm.train_dataloader()
    with pytest.raises(FileNotFoundError, match="Few-shot data not found"):
        EpisodicDataModule(root=str(tmp_path / "missing")).setup()
    with pytest.raises(ValueError, match="exactly one of root"):
        EpisodicDataModule(root=str(flat_tree), source=DigitsDataModule())
    overlapping = tmp_path / "overlap.json"
    overlapping.write_text(json.dumps({"train": ["class1"], "test": ["class1"]}))
    with pytest.raises(ValueError, match="'class1' is in both train and test"):
        EpisodicDataModule(root=str(flat_tree), split_file=str(overlapping)).setup()
    with pytest.raises(ValueError, match="rotations need square images"):
        EpisodeDataset(torch.zeros(2, 1, 4, 5, dtype=torch.uint8), torch.tensor([0, 1]), rotations=True)


def test_split_classes_is_seeded_disjoint_and_complete():
    split = split_classes(17, (0.6, 0.2, 0.2), seed=3)
    assert split == split_classes(17, (0.6, 0.2, 0.2), seed=3)
    assert split != split_classes(17, (0.6, 0.2, 0.2), seed=4)
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(17))
    assert [len(split[s]) for s in ("train", "val", "test")] == [10, 3, 4]
    with pytest.raises(ValueError, match="class_split"):
        split_classes(5, (0.8, 0.3, 0.1), seed=0)


class PixelProtoNet(pl.LightningModule):
    """Prototypes in pixel space with a learned temperature: the smallest model that consumes episodes.

    Args:
        lr: learning rate of the temperature.
    """

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.lr = lr
        self.log_scale = nn.Parameter(torch.zeros(()))

    def _shared_step(self, batch: tuple[Tensor, Tensor, Tensor, Tensor], stage: str) -> Tensor:
        support_x, support_y, query_x, query_y = batch
        assert support_x.dtype == torch.float32  # converted on the device by the DataModule
        n_way = int(support_y.max()) + 1
        onehot = F.one_hot(support_y, n_way).float()  # [T, N*K, N]
        protos = onehot.transpose(1, 2) @ support_x.flatten(2) / onehot.sum(1).unsqueeze(-1)
        logits = -self.log_scale.exp() * torch.cdist(query_x.flatten(2), protos) ** 2
        loss = F.cross_entropy(logits.flatten(0, 1), query_y.flatten())
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/acc", (logits.argmax(-1) == query_y).float().mean())
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def test_trainer_fits_and_tests_on_a_folder_tree(flat_tree, chdir_tmp):
    dm = EpisodicDataModule(root=str(flat_tree), n_way=2, k_shot=1, n_query=2, tasks_per_batch=2, eval_episodes=4)
    trainer = pl.Trainer(
        max_epochs=2, limit_train_batches=3, accelerator="cpu", logger=False, enable_checkpointing=False
    )
    trainer.fit(PixelProtoNet(), datamodule=dm)
    assert trainer.state.finished
    assert trainer.train_dataloader.sampler.epoch == 1  # Lightning moved the sampler to epoch 1: new episodes
    assert len(trainer.val_dataloaders.sampler) == 4  # not wrapped or re-split by Lightning
    metrics = trainer.test(PixelProtoNet(), datamodule=dm, verbose=False)[0]
    assert metrics["test/acc"] == 1.0  # the classes differ by their grey level, pixel prototypes separate them


def test_cli_config_with_digits_as_source(chdir_tmp):
    config = chdir_tmp / "episodic_digits.yaml"
    config.write_text(
        """
model:
  class_path: tests.data.test_episodic_datamodule.PixelProtoNet
data:
  class_path: ssl_lightning.data.episodic.EpisodicDataModule
  init_args:
    source: {class_path: ssl_lightning.data.DigitsDataModule}
    rotations: true
    n_way: 5
    k_shot: 1
    n_query: 3
    tasks_per_batch: 2
"""
    )
    cli = run_cli("fit", "--config", str(config), "--trainer.fast_dev_run", "2", "--trainer.accelerator", "cpu")
    assert cli.trainer.state.finished
    assert isinstance(cli.datamodule.source, DigitsDataModule)
    assert len(cli.datamodule.class_names["train"]) == 24
