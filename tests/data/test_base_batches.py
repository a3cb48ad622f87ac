"""EpisodicDataModule's train_mode "batches": plain (x, y) batches of the base classes only, resume, DDP shares,
training-only seeded augmentation (also on training episodes), labelled_features, and the BaseClassData contract."""

from __future__ import annotations

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.data import _update_dataloader
from torch import Tensor

from ssl_lightning.data.augment import HorizontalFlip
from ssl_lightning.data.contract import BaseClassData
from ssl_lightning.data.episodic import EpisodicDataModule, LabelledPool, Pool
from ssl_lightning.data.resumable import ResumableDataLoader

SIZE = 6
CLASSES, PER_CLASS = 10, 5  # class_split 0.6/0.2/0.2: 6 train classes, 30 train images


class CodedPool(LabelledPool):
    """Images that say what they are: channel 0 is filled with the class code, channel 2 with the image's index
    in the pool, channel 1 has one bright top-left pixel (where it ends up tells the rotation)."""

    def load_pool(self) -> Pool:
        count = CLASSES * PER_CLASS
        images = torch.zeros(count, 3, SIZE, SIZE, dtype=torch.uint8)
        labels = torch.arange(count) // PER_CLASS
        images[:, 0] = (10 + 20 * labels).to(torch.uint8).view(-1, 1, 1)
        images[:, 2] = torch.arange(count, dtype=torch.uint8).view(-1, 1, 1)
        images[:, 1, 0, 0] = 255
        return images, labels, [f"c{c}" for c in range(CLASSES)]


def decode(x: Tensor) -> tuple[list[str], list[int], list[int]]:
    """uint8[B, 3, S, S] -> (class names, pool indices, quarter turns) of each image."""
    names = [f"c{(int(v) - 10) // 20}" for v in x[:, 0, 1, 1]]
    mark = torch.zeros(SIZE, SIZE)
    mark[0, 0] = 1
    turns = {int(torch.rot90(mark, r).flatten().argmax()): r for r in range(4)}
    return names, x[:, 2, 1, 1].tolist(), [turns[int(i)] for i in x[:, 1].flatten(1).argmax(1)]


def data(**kwargs) -> EpisodicDataModule:
    options = {"n_way": 2, "k_shot": 1, "n_query": 2, "eval_episodes": 3, "train_mode": "batches", "batch_size": 4}
    return EpisodicDataModule(source=CodedPool(), **{**options, **kwargs})


def fake_trainer(training: bool = True, epoch: int = 0, batch: int = 0) -> SimpleNamespace:
    """What BatchGenerator and on_after_batch_transfer read from a Trainer."""
    progress = SimpleNamespace(current=SimpleNamespace(ready=batch))
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(training=training, global_rank=0, current_epoch=epoch, fit_loop=loop)


@pytest.mark.parametrize("rotations", [False, True])
def test_training_batches_hold_only_train_classes_with_consistent_labels(rotations):
    dm = data(rotations=rotations)
    dm.setup("fit")
    train = dm.class_names["train"]
    assert dm.num_base_classes == len(train) == 6 * (4 if rotations else 1)
    base = {name.split("@")[0] for name in train}
    assert base.isdisjoint(dm.class_names["val"] + dm.class_names["test"])
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader) and len(loader) == dm.num_base_classes * PER_CLASS // 4
    orders = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        seen = []
        for images, labels in loader:
            x, y = dm.on_after_batch_transfer((images, labels), 0)
            assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and x.shape == (4, 3, SIZE, SIZE)
            assert y.dtype == torch.long and 0 <= y.min() and y.max() < dm.num_base_classes
            for name, index, turn, label in zip(*decode(images), y.tolist(), strict=True):
                assert name in base  # never an image of a val/test class
                assert train[label] == (f"{name}@rot{90 * turn}" if rotations else name) and (rotations or turn == 0)
                seen.append((index, turn))
        assert len(seen) == len(set(seen)) == len(loader) * 4  # each image (and rotation) at most once per epoch
        orders.append(seen)
    assert orders[0] != orders[1]
    loader.sampler.set_epoch(0)
    assert [(i, t) for images, _ in loader for i, t in zip(*decode(images)[1:], strict=True)] == orders[0]


def test_val_and_test_episodes_do_not_depend_on_train_mode():
    batches, episodes = data(), data(train_mode="episodes")
    for split in ("val", "test"):
        a = list(getattr(batches, f"{split}_dataloader")())
        b = list(getattr(episodes, f"{split}_dataloader")())
        assert len(a) == len(b) == 3
        assert all(torch.equal(s, t) for x, y in zip(a, b, strict=True) for s, t in zip(x, y, strict=True))
    x = next(iter(episodes.train_dataloader()))
    assert len(x) == 4 and x[0].shape == (1, 2, 3, SIZE, SIZE)  # episodes mode still trains on episodes


def test_the_training_loader_resumes_exactly_mid_epoch():
    loader = data(rotations=True).train_dataloader()
    loader.sampler.set_epoch(2)
    iterator = iter(loader)
    for _ in range(5):
        next(iterator)
    state = loader.state_dict()
    rest = list(iterator)
    assert state == {"epoch": 2, "batches": 5} and rest
    fresh = data(rotations=True).train_dataloader()  # a new process after the kill
    fresh.load_state_dict(state)
    resumed = list(fresh)
    assert len(resumed) == len(rest)
    assert all(torch.equal(a, b) for x, y in zip(rest, resumed, strict=True) for a, b in zip(x, y, strict=True))


def test_ddp_ranks_train_on_disjoint_shares():
    """What Lightning does to the training loader under DDP (DistributedSamplerWrapper, loader rebuilt)."""
    loader = data().train_dataloader()
    shares = []
    for rank in (0, 1):
        sampler = _get_distributed_sampler(loader, shuffle=False, overfit_batches=0, num_replicas=2, rank=rank)
        ranked = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
        assert isinstance(ranked, ResumableDataLoader) and ranked.drop_last
        ranked.sampler.set_epoch(1)
        shares.append(list(ranked.sampler))
        assert [i for _, y in ranked for i in y.tolist()] == loader.dataset.labels[shares[-1][:12]].tolist()
    assert set(shares[0]).isdisjoint(shares[1]) and sorted(shares[0] + shares[1]) == list(range(30))
    loader.sampler.set_epoch(1)
    assert shares[0] == list(loader.sampler)[::2]  # each rank a strided share of the epoch's permutation


def test_augment_is_training_only_seeded_and_reproducible():
    images, labels = next(iter(data().train_dataloader()))
    images, labels = images.repeat(4, 1, 1, 1), labels.repeat(4)  # 16 images: some flips are certain
    plain = images.float() / 255

    def transfer(dm, **trainer):
        dm.trainer = fake_trainer(**trainer)
        return dm.on_after_batch_transfer((images, labels), 0)[0]

    flip = [HorizontalFlip(p=0.5)]
    assert torch.equal(transfer(data(augment=flip), training=False), plain)  # validation, sanity check
    first = transfer(data(augment=flip), batch=3)
    assert not torch.equal(first, plain)
    assert torch.equal(first, transfer(data(augment=flip), batch=3))  # same (seed, epoch, batch): a resume replays
    assert not torch.equal(first, transfer(data(augment=flip), batch=4))
    assert not torch.equal(first, transfer(data(augment=flip, seed=1), batch=3))
    assert torch.equal(transfer(data(), batch=3), plain)  # no augment: nothing changes


def test_augment_acts_on_support_and_query_of_training_episodes_only():
    dm = data(train_mode="episodes", augment=[HorizontalFlip(p=1.0)], k_shot=2, tasks_per_batch=3, train_episodes=6)
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = fake_trainer()
    support_x, support_y, query_x, query_y = dm.on_after_batch_transfer(batch, 0)
    assert support_x.shape == (3, 4, 3, SIZE, SIZE) and query_x.shape == (3, 4, 3, SIZE, SIZE)
    assert torch.equal(support_x, batch[0].flip(-1).float() / 255) and torch.equal(query_x, batch[2].flip(-1) / 255)
    assert torch.equal(support_y, batch[1]) and torch.equal(query_y, batch[3])
    dm.trainer = fake_trainer(training=False)
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(dm.on_after_batch_transfer(val, 0)[0], val[0].float() / 255)


def test_labelled_features_embed_every_train_image_once_and_satisfy_the_contract():
    dm = data(rotations=True, batch_size=7)  # 120 items: the last chunk is partial
    assert isinstance(dm, BaseClassData) and dm.train_mode == "batches"
    layer = torch.nn.Linear(3 * SIZE * SIZE, 2)
    features, labels = dm.labelled_features(lambda x: layer(x.flatten(1)), "cpu")
    assert features.shape == (120, 2) and not features.requires_grad
    assert torch.equal(labels, dm.datasets["train"].labels)
    seen = []
    raw, raw_labels = dm.labelled_features(lambda x: (x * 255).round().flatten(1), "cpu")  # decode what was embedded
    for name, index, turn, label in zip(*decode(raw.view(-1, 3, SIZE, SIZE).byte()), raw_labels.tolist(), strict=True):
        assert dm.class_names["train"][label] == f"{name}@rot{90 * turn}"
        seen.append((index, turn))
    assert len(set(seen)) == len(seen) == 120  # 30 train images x 4 rotations, each once, no augmentation


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="train_mode must be 'episodes'.*or 'batches'.*got 'batch'"):
        data(train_mode="batch")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        data(batch_size=0)
    with pytest.raises(ValueError, match="train split has no classes"):
        data(class_split=(0.0, 0.5, 0.5)).train_dataloader()
    with pytest.raises(ValueError, match="30 images .*fewer than batch_size=64.*Lower batch_size"):
        data(batch_size=64).train_dataloader()


class _Recorder(pl.LightningModule):
    """A linear classifier over the base classes that records what each stage received."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3 * SIZE * SIZE, num_classes)
        self.seen: dict[str, list] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen["train"].append((x.shape, y.max().item(), x.dtype))
        return torch.nn.functional.cross_entropy(self.head(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(len(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_trainer_fits_on_base_batches_and_validates_on_episodes(chdir_tmp):
    dm = data(augment=[HorizontalFlip(p=0.5)])
    model = _Recorder(dm.num_base_classes)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert len(model.seen["train"]) == 2 * 7  # 30 images in full batches of 4, per epoch
    assert all(
        shape == (4, 3, SIZE, SIZE) and top < 6 and dtype == torch.float32 for shape, top, dtype in model.seen["train"]
    )
    # 3 fixed episodes per validation (one per epoch), each (support_x, support_y, query_x, query_y)
    assert model.seen["val"] == [4] * 6
