"""The benchmark DataModules (root = the release folder) on the fakes of test_fewshot_benchmarks: episodes to
evaluate, base-class batches to train, and every EpisodicDataModule argument visible to LightningCLI."""

from __future__ import annotations

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from ssl_lightning.data import (
    CIFARFSDataModule,
    CUB200DataModule,
    FC100DataModule,
    MiniImageNetDataModule,
    TieredImageNetDataModule,
)
from ssl_lightning.data.contract import BaseClassData
from tests.data.test_fewshot_benchmarks import SPLIT_CLASSES, colour, save_jpeg, write_cifar100, write_mini_pickles
from tests.data.test_fewshot_benchmarks import write_tiered as write_tiered_files
from tests.helpers import run_cli


def write_tiered(root):
    write_tiered_files(root, "npz")


def write_cub(root, species=20):
    """CUB_200_2011/images/<NNN.Species>/*.jpg: the Closer-Look split gives 10 / 5 / 5 species."""
    for i in range(species):
        name = f"{i + 1:03d}.Bird_{i}"
        for j in range(3):
            save_jpeg(root / "CUB_200_2011" / "images" / name / f"{name}_{j}.jpg", colour(i, j, size=10))


# (DataModule, writer, extra arguments, n_way of the evaluation episodes, base classes, image side)
CASES = {
    "miniimagenet": (MiniImageNetDataModule, write_mini_pickles, {"image_size": 12}, 2, 3, 12),
    "tieredimagenet": (TieredImageNetDataModule, write_tiered, {}, 2, 3, 12),
    "cifarfs": (CIFARFSDataModule, write_cifar100, {"image_size": 16}, 5, 64, 16),
    "fc100": (FC100DataModule, write_cifar100, {}, 5, 60, 32),
    "cub": (CUB200DataModule, write_cub, {"image_size": 16}, 5, 10, 16),
}


@pytest.mark.parametrize("name", CASES)
def test_each_benchmark_trains_on_base_batches_and_evaluates_on_episodes(tmp_path, name):
    cls, write, extra, n_way, base, side = CASES[name]
    write(tmp_path)
    episodes = {"n_way": n_way, "k_shot": 1, "n_query": 1, "eval_episodes": 2}
    dm = cls(str(tmp_path), train_mode="batches", batch_size=3, **episodes, **extra)
    assert isinstance(dm, BaseClassData) and dm.num_base_classes == base
    if name == "miniimagenet":
        assert dm.class_names == SPLIT_CLASSES
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.shape == (3, 3, side, side) and x.dtype == torch.float32 and y.max() < base
    for split in ("val", "test"):
        episode = next(iter(getattr(dm, f"{split}_dataloader")()))
        support_x, support_y, query_x, _ = dm.on_after_batch_transfer(episode, 0)
        assert support_x.shape == (1, n_way, 3, side, side) and query_x.shape == (1, n_way, 3, side, side)
        assert sorted(support_y[0].tolist()) == list(range(n_way))


@pytest.mark.parametrize(
    ("cls", "own"),
    [
        (MiniImageNetDataModule, {"root", "image_size", "layout"}),
        (TieredImageNetDataModule, {"root", "image_size"}),
        (CIFARFSDataModule, {"root", "image_size", "download"}),
        (FC100DataModule, {"root", "image_size", "download"}),
        (CUB200DataModule, {"root", "image_size"}),
    ],
)
def test_jsonargparse_resolves_the_forwarded_arguments(cls, own):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "data")
    found = set(vars(parser.get_defaults().data))
    forwarded = {"n_way", "k_shot", "n_query", "train_n_way", "rotations", "eval_episodes", "seed"}
    forwarded |= {"train_mode", "batch_size", "augment", "split_file", "channels"}
    assert own | forwarded <= found
    assert not found & {"source", "class_depth", "class_split"}  # fixed by the release
    with pytest.raises(Exception, match="train_mode"):
        parser.parse_args(["--data.root=x", "--data.train_mode=batch"])  # typed: a Literal
    with pytest.raises(Exception, match="n_wya"):
        parser.parse_args(["--data.root=x", "--data.n_wya=5"])


def test_lightning_cli_print_config_lists_every_argument(tmp_path, capsys):
    config = tmp_path / "fewshot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "class_path": "ssl_lightning.methods.protonet.ProtoNet",
                    "init_args": {"backbone": {"class_path": "ssl_lightning.nets.conv4.Conv4"}},
                },
                "data": {"class_path": "ssl_lightning.data.MiniImageNetDataModule", "init_args": {"root": "x"}},
            }
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(config), "--data.init_args.train_mode", "batches", "--print_config")
    assert exit_info.value.code in (0, None)
    args = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert args["root"] == "x" and args["train_mode"] == "batches" and args["layout"] == "auto"
    assert {"batch_size", "augment", "n_way", "k_shot", "train_n_way", "rotations"} <= set(args)
