"""Lake et al. (2015) one-shot runs on a tiny fake ``all_runs`` tree in the official layout."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from ssl_lightning.data.omniglot_runs import OmniglotOneShotRunsDataModule, read_run
from tests.data.test_episodic_datamodule import PixelProtoNet, decode_classes
from tests.helpers import run_cli

WAYS = 4
SIZE = 10


def write_runs(root: Path, runs: int = 2, ways: int = WAYS, size: int = SIZE) -> Path:
    """``root/runNN/{training/classNN.png, test/itemNN.png, class_labels.txt}`` as in all_runs.zip.

    Training image ``classJJ`` of run ``r`` has grey level ``20 * JJ + r``; the test items are
    the same characters in a shuffled order (with a different stroke mark), and
    ``class_labels.txt`` lists ``runNN/test/itemII.png runNN/training/classJJ.png``.
    """
    from PIL import Image

    rng = np.random.default_rng(0)
    for r in range(1, runs + 1):
        run = root / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        answer = rng.permutation(ways) + 1  # item i is a drawing of training class answer[i - 1]
        lines = []
        for j in range(1, ways + 1):
            array = np.full((size, size), 20 * j + r, dtype=np.uint8)
            Image.fromarray(array, "L").save(run / "training" / f"class{j:02d}.png")
        for i in range(1, ways + 1):
            array = np.full((size, size), 20 * int(answer[i - 1]) + r, dtype=np.uint8)
            array[size // 2, :3] = 255
            Image.fromarray(array, "L").save(run / "test" / f"item{i:02d}.png")
            lines.append(f"run{r:02d}/test/item{i:02d}.png run{r:02d}/training/class{int(answer[i - 1]):02d}.png")
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def all_runs(tmp_path: Path) -> Path:
    return write_runs(tmp_path / "all_runs")


def test_each_run_is_one_n_way_one_shot_episode(all_runs):
    dm = OmniglotOneShotRunsDataModule(root=str(all_runs.parent))  # the parent of all_runs/ works too
    batches = list(dm.test_dataloader())
    assert len(batches) == 2 and dm.run_names == ["run01", "run02"]
    assert (dm.n_way, dm.k_shot, dm.n_query) == (WAYS, 1, 1)
    for r, batch in enumerate(batches, start=1):
        support_x, support_y, query_x, query_y = batch
        assert support_x.shape == query_x.shape == (1, WAYS, 1, SIZE, SIZE)
        assert support_y.tolist() == query_y.tolist() == [list(range(WAYS))]
        # support j is training class j+1; the query with label j is the test drawing of that class
        assert decode_classes(support_x[0]).tolist() == [20 * j + r for j in range(1, WAYS + 1)]
        assert decode_classes(query_x[0]).tolist() == decode_classes(support_x[0]).tolist()
        assert not torch.equal(query_x, support_x)
    support_x, _, query_x, _ = dm.on_after_batch_transfer(batches[0], 0)
    assert support_x.dtype == torch.float32 and float(query_x.max()) == 1.0


def test_queries_follow_class_labels_not_file_order(all_runs):
    _, _, query_x, query_y = read_run(all_runs / "run01")
    lines = (all_runs / "run01" / "class_labels.txt").read_text().split("\n")
    first_item_class = int(lines[0].split()[1][-6:-4])  # "run01/training/classJJ.png"
    assert decode_classes(query_x[first_item_class - 1]) == 20 * first_item_class + 1
    assert query_y.tolist() == list(range(WAYS))


def test_resize_matches_training_preprocessing(all_runs):
    dm = OmniglotOneShotRunsDataModule(root=str(all_runs), image_size=6, channels=3)
    assert next(iter(dm.test_dataloader()))[0].shape == (1, WAYS, 3, 6, 6)


def test_bad_trees_are_named(all_runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="No one-shot runs.*all_runs.zip"):
        OmniglotOneShotRunsDataModule(root=str(tmp_path / "empty")).setup()
    labels = all_runs / "run02" / "class_labels.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[1:]))
    with pytest.raises(ValueError, match="gives no class for"):
        read_run(all_runs / "run02")
    labels.write_text("\n".join([*lines, "run02/test/item99.png run02/training/class01.png"]))
    with pytest.raises(ValueError, match="names test/item99.png, which is not an image"):
        read_run(all_runs / "run02")
    (all_runs / "run01" / "class_labels.txt").unlink()
    with pytest.raises(FileNotFoundError, match="class_labels.txt is missing"):
        read_run(all_runs / "run01")


def test_any_episodic_model_can_be_tested_on_the_runs(all_runs, chdir_tmp):
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    metrics = trainer.test(PixelProtoNet(), datamodule=OmniglotOneShotRunsDataModule(root=str(all_runs)), verbose=False)
    # the fake test drawings are closest to their own training image: no errors (mean error = 1 - acc = 0)
    assert metrics[0]["test/acc"] == 1.0


def test_cli_swaps_an_episodic_config_to_the_runs(all_runs, chdir_tmp):
    config = chdir_tmp / "fewshot.yaml"
    config.write_text(
        """
model:
  class_path: tests.data.test_episodic_datamodule.PixelProtoNet
data:
  class_path: ssl_lightning.data.episodic.EpisodicDataModule
  init_args: {root: data/omniglot, class_depth: 2, image_size: 8, rotations: true, n_way: 5}
"""
    )
    cli = run_cli(
        "test",
        "--config",
        str(config),
        "--data",
        "ssl_lightning.data.omniglot_runs.OmniglotOneShotRunsDataModule",
        "--data.root",
        str(all_runs),
        "--trainer.accelerator",
        "cpu",
    )
    assert isinstance(cli.datamodule, OmniglotOneShotRunsDataModule)
    assert cli.datamodule.image_size == 8  # carried over from the training config
    assert cli.trainer.callback_metrics["test/acc"] == 1.0
