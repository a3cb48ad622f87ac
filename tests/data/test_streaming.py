"""LitData streaming: a tiny PNG folder -> ``optimize`` -> read back, sharded, episodic, limited labels, training."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

pytest.importorskip("litdata")

from litdata import StreamingDataLoader, StreamingDataset  # noqa: E402
from litdata.utilities.env import _DistributedEnv  # noqa: E402

from ssl_lightning.data.cli import main as data_cli  # noqa: E402
from ssl_lightning.data.digits import DigitsDataModule  # noqa: E402
from ssl_lightning.data.episodic import EpisodicDataModule  # noqa: E402
from ssl_lightning.data.folder import ImageFolderDataModule, read_image_tree  # noqa: E402
from ssl_lightning.data.semisup import SemiSupervisedDataModule  # noqa: E402
from ssl_lightning.data.streaming import (  # noqa: E402
    ItemToTensors,
    StreamedImages,
    StreamingMetadata,
    optimize_image_folder,
    optimize_split,
)
from ssl_lightning.data.streaming_datamodule import StreamingImageDataModule, StreamingPool  # noqa: E402
from ssl_lightning.methods import Classifier  # noqa: E402
from ssl_lightning.nets import LeNet  # noqa: E402
from tests.helpers import EXPERIMENTS, fast_dev_run  # noqa: E402

CLASSES, PER_CLASS = 4, 6


def write_folder(root: Path, size: int = 8, seed: int = 0) -> Path:
    """``CLASSES`` class folders of ``PER_CLASS`` random RGB PNGs (each pixel distinct per file)."""
    rng = np.random.default_rng(seed)
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(PER_CLASS):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                root / f"class_{c}" / f"{i}.png"
            )
    return root


@pytest.fixture(scope="module")
def optimized(tmp_path_factory) -> tuple[Path, Path]:
    """(source folder, optimized folder): two writer processes, small chunks (several per worker)."""
    base = tmp_path_factory.mktemp("stream")
    folder = write_folder(base / "folder")
    optimize_image_folder(folder, base / "ld", num_workers=2, chunk_bytes=1000)
    return folder, base / "ld"


def test_optimized_items_equal_the_source_bitwise(optimized, tmp_path):
    folder, ld = optimized
    images, labels, names = read_image_tree(folder)
    meta = StreamingMetadata.load(str(ld))
    assert meta.labels == labels.tolist() and meta.class_names == names and meta.shape == [3, 8, 8]
    assert len(list(ld.glob("*.bin"))) > 2  # really chunked, by both workers
    streamed = StreamedImages(str(ld))
    assert torch.equal(streamed[torch.arange(len(streamed))], images)
    raw = StreamingDataset(str(ld))
    assert [raw[i]["index"] for i in range(len(raw))] == list(range(len(labels)))
    # encoded bytes, resized on reading: the same decoding as the in-memory reader
    optimize_image_folder(folder, tmp_path / "enc", image_size=5, encoding="encoded")
    assert torch.equal(StreamedImages(str(tmp_path / "enc"))[:], read_image_tree(folder, image_size=5)[0])


def test_two_ranks_cover_every_item_exactly_once(optimized):
    _, ld = optimized
    meta = StreamingMetadata.load(str(ld))
    identity = torch.arange(meta.num_items)  # the "pool position" of every item is its global index
    seen = []
    for rank in range(2):
        dataset = StreamingDataset(
            str(ld), shuffle=True, seed=3, drop_last=False, transform=ItemToTensors(meta, identity)
        )
        dataset.distributed_env = _DistributedEnv(world_size=2, global_rank=rank, num_nodes=1)
        seen.append([int(i) for _, _, index in StreamingDataLoader(dataset, batch_size=4) for i in index])
    assert len(seen[0]) == len(seen[1]) == meta.num_items // 2
    assert sorted(seen[0] + seen[1]) == list(range(meta.num_items))


def test_limited_labels_select_the_same_images_as_in_memory(optimized):
    folder, ld = optimized
    options = {"val_size": 4, "labels_per_class": 2, "seed": 5, "batch_size": 4}
    memory = ImageFolderDataModule(root=str(folder), train_dir=".", test_dir=None, **options)
    streaming = StreamingImageDataModule(input_dir=str(ld), **options)
    memory.setup("fit")
    streaming.setup("fit")
    for name in ("labelled", "all", "val"):
        assert torch.equal(streaming.datasets[name].labels, memory.datasets[name].labels)
        assert torch.equal(streaming.datasets[name].images[:], memory.datasets[name].images), name
    assert streaming.pool_fingerprint == memory.pool_fingerprint
    assert torch.allclose(streaming.mean, memory.mean) and torch.allclose(streaming.std, memory.std)
    x, y = next(iter(streaming.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 8, 8) and y.dtype == torch.long
    labelled = {tuple(img.flatten().tolist()) for img in memory.datasets["labelled"].images}
    assert all(tuple(img.flatten().tolist()) in labelled for img in x)  # only labelled images stream


def test_streaming_loader_resumes_mid_epoch(optimized):
    _, ld = optimized
    data = StreamingImageDataModule(input_dir=str(ld), batch_size=3, seed=1)
    loader = data.train_dataloader()
    full = [y.tolist() for _, y in loader]  # epoch 1
    loader = data.train_dataloader()
    it = iter(loader)
    first = [next(it)[1].tolist() for _ in range(3)]
    state = loader.state_dict()
    resumed = data.train_dataloader()
    resumed.load_state_dict(state)
    rest = [y.tolist() for _, y in resumed]
    assert first + rest == full


class RecordLabels(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(batch[1].tolist())


def test_a_fit_resumed_mid_epoch_from_a_checkpoint_sees_the_uninterrupted_batches(optimized, tmp_path):
    """Lightning saves the StreamingDataLoader's state; the resumed epoch and the epoch after it match."""
    _, ld = optimized

    def fit(max_steps: int, ckpt_path: str | None = None, save: bool = False) -> list[list[int]]:
        record = RecordLabels()
        callbacks: list[pl.Callback] = [record]
        if save:
            callbacks.append(ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1))
        trainer = pl.Trainer(
            max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=save, callbacks=callbacks, limit_val_batches=0,
            default_root_dir=tmp_path,
        )  # fmt: skip
        model = Classifier(backbone=LeNet(num_classes=CLASSES, in_chans=3, input_size=8, padding=2))
        trainer.fit(model, datamodule=StreamingImageDataModule(input_dir=str(ld), batch_size=5), ckpt_path=ckpt_path)
        return record.seen

    full = fit(12)  # 5 batches per epoch: epochs 0, 1 and two batches of 2
    first = fit(7, save=True)
    rest = fit(12, ckpt_path=str(next(tmp_path.glob("*step=7.ckpt"))))
    assert first + rest == full


def test_episodes_over_a_streaming_pool_are_valid(optimized):
    folder, ld = optimized
    data = EpisodicDataModule(
        source=StreamingPool(str(ld)), class_split=(1.0, 0.0, 0.0), n_way=3, k_shot=2, n_query=2, train_episodes=4
    )
    data.setup("fit")
    images, labels, _ = read_image_tree(folder)
    by_image = {tuple(img.flatten().tolist()): int(label) for img, label in zip(images, labels, strict=True)}
    support_x, support_y, query_x, query_y = next(iter(data.train_dataloader()))
    assert support_x.shape == (1, 6, 3, 8, 8) and query_x.shape == (1, 6, 3, 8, 8) and support_x.dtype == torch.uint8
    support = [by_image[tuple(img.flatten().tolist())] for img in support_x[0]]
    query = [by_image[tuple(img.flatten().tolist())] for img in query_x[0]]
    assert len(set(support)) == 3  # n-way distinct classes
    for way in range(3):  # support and query of a way come from one class, distinct images
        classes = {support[i] for i in range(6) if support_y[0, i] == way} | {
            query[i] for i in range(6) if query_y[0, i] == way
        }
        assert len(classes) == 1
    assert len({tuple(img.flatten().tolist()) for img in torch.cat([support_x[0], query_x[0]])}) == 12


def test_cli_writes_and_refuses_a_non_empty_output_dir(tmp_path, capsys):
    folder = write_folder(tmp_path / "folder", size=4)
    assert data_cli(["optimize", str(folder), str(tmp_path / "out"), "--image-size", "3"]) == 0
    assert StreamingMetadata.load(str(tmp_path / "out")).shape == [3, 3, 3]
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert data_cli(["optimize", str(folder), str(tmp_path / "out")]) == 2
    assert "not empty; refusing to overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_semisupervised_streams_both_pools(optimized):
    _, ld = optimized
    source = StreamingImageDataModule(input_dir=str(ld), labels_per_class=2, batch_size=2)
    data = SemiSupervisedDataModule(source, mu=2, unlabelled_indices=True)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    x_l, y_l = batch[0]["labelled"]
    x_u, y_u, index = batch[0]["unlabelled"]
    assert x_l.shape == (2, 3, 8, 8) and x_u.shape == (4, 3, 8, 8) and x_u.dtype == torch.uint8
    pool = source.datasets["all"]
    assert torch.equal(pool.images[index], x_u) and torch.equal(pool.labels[index], y_u)


def test_classifier_fast_dev_run_on_the_streaming_yaml(optimized, tmp_path):
    _, ld = optimized
    cli = fast_dev_run(
        EXPERIMENTS / "data" / "streaming_folder.yaml",
        f"--data.init_args.input_dir={ld}",
        "--data.init_args.val_size=4",
        "--data.init_args.num_workers=0",
        "--data.init_args.labels_per_class=2",
        "--data.init_args.test_input_dir=null",
        "--model.init_args.backbone.init_args.padding=2",
        "--model.init_args.backbone.init_args.num_classes=4",
        "--model.init_args.backbone.init_args.input_size=8",
        f"--trainer.default_root_dir={tmp_path}",
        "--test_after_fit",
        "false",
    )
    assert isinstance(cli.datamodule, StreamingImageDataModule)  # type: ignore[attr-defined]
    assert cli.trainer.state.finished  # type: ignore[attr-defined]
    assert isinstance(cli.trainer.train_dataloader, StreamingDataLoader)  # type: ignore[attr-defined]


def test_a_datamodule_split_streams_back_bitwise_with_its_test_split(tmp_path):
    digits = DigitsDataModule(val_size=0, test_size=360)
    optimize_split(digits, "train", tmp_path / "train")
    optimize_split(digits, "test", tmp_path / "test")
    images, labels, _ = digits.load_split("train")
    assert torch.equal(StreamedImages(str(tmp_path / "train"))[:], images)
    data = StreamingImageDataModule(input_dir=str(tmp_path / "train"), test_input_dir=str(tmp_path / "test"))
    data.setup("fit")
    test_images, test_labels, _ = digits.load_split("test")
    x, y = next(iter(data.test_dataloader()))
    assert torch.equal(x, test_images[:64]) and torch.equal(y, test_labels[:64])
    with pytest.raises(FileExistsError, match="not empty; refusing to overwrite"):
        optimize_split(digits, "test", tmp_path / "test")
