"""Few-shot benchmark readers on tiny files written in each release's real on-disk format."""

from __future__ import annotations

import csv
import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_lightning.data.episodic import EpisodicDataModule
from ssl_lightning.data.fewshot_benchmarks import CIFARFS, CUB200, FC100, MiniImageNet, TieredImageNet
from ssl_lightning.data.fewshot_benchmarks.cifar100_splits import CIFAR_FS_SPLIT, FC100_SPLIT
from ssl_lightning.data.fewshot_benchmarks.cub import closer_look_split

SPLIT_CLASSES = {"train": ["n01", "n02", "n03"], "val": ["n04", "n05"], "test": ["n06", "n07"]}
PER_CLASS = 3


def colour(class_index: int, item: int, size: int = 12) -> np.ndarray:
    """A flat image whose red channel encodes the class and green the item: uint8[size, size, 3]."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[..., 0] = 20 * class_index
    image[..., 1] = 30 * item
    return image


def save_jpeg(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=100)


def write_mini_pickles(root, val_name="val"):
    for split, wnids in SPLIT_CLASSES.items():
        images, class_dict = [], {}
        for wnid in wnids:
            class_dict[wnid] = list(range(len(images), len(images) + PER_CLASS))
            images += [colour(int(wnid[1:]), i) for i in range(PER_CLASS)]
        name = val_name if split == "val" else split
        with open(root / f"mini-imagenet-cache-{name}.pkl", "wb") as f:
            pickle.dump({"image_data": np.stack(images), "class_dict": class_dict}, f)


def write_mini_folders(root):
    for split, wnids in SPLIT_CLASSES.items():
        for wnid in wnids:
            for i in range(PER_CLASS):
                save_jpeg(root / split / wnid / f"{wnid}{i:08d}.jpg", colour(int(wnid[1:]), i))


def write_mini_csv(root):
    for split, wnids in SPLIT_CLASSES.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label"])
            for wnid in wnids:
                for i in range(PER_CLASS):
                    name = f"{wnid}{i:08d}.jpg"
                    save_jpeg(root / "images" / name, colour(int(wnid[1:]), i, size=20))  # full size: resized
                    writer.writerow([name, wnid])


@pytest.mark.parametrize("layout", ["pickle", "pickle-validation", "folders", "csv"])
def test_miniimagenet_reads_each_layout_with_its_class_split(tmp_path, layout, caplog):
    {"pickle": write_mini_pickles, "folders": write_mini_folders, "csv": write_mini_csv}.get(
        layout, lambda root: write_mini_pickles(root, val_name="validation")
    )(tmp_path)
    source = MiniImageNet(tmp_path, image_size=12)
    with caplog.at_level("INFO"):
        images, labels, names = source.load_pool()
    assert layout.split("-")[0] in caplog.text
    assert images.shape == (7 * PER_CLASS, 3, 12, 12) and images.dtype == torch.uint8
    assert names == [w for split in ("train", "val", "test") for w in SPLIT_CLASSES[split]]
    split = source.class_split()
    assert {s: [names[c] for c in ids] for s, ids in split.items()} == SPLIT_CLASSES
    for c, wnid in enumerate(names):  # every image sits under its own class (JPEG: within a few levels)
        reds = images[labels == c][:, 0].float().mean(dim=(1, 2))
        assert len(reds) == PER_CLASS and torch.allclose(reds, torch.full_like(reds, 20.0 * int(wnid[1:])), atol=3)


def test_miniimagenet_missing_files_name_every_layout(tmp_path):
    (tmp_path / "train.csv").write_text("filename,label\n")
    with pytest.raises(FileNotFoundError, match="mini-imagenet-cache-train.pkl.*train/, val/, test/.*images/"):
        MiniImageNet(tmp_path).load_pool()


def test_miniimagenet_csv_names_a_missing_image(tmp_path):
    write_mini_csv(tmp_path)
    next((tmp_path / "images").glob("n04*.jpg")).unlink()
    with pytest.raises(FileNotFoundError, match="not in .*images.*first: n04"):
        MiniImageNet(tmp_path, image_size=12).load_pool()


def test_miniimagenet_feeds_episodes_of_disjoint_classes(tmp_path):
    write_mini_pickles(tmp_path)
    data = EpisodicDataModule(source=MiniImageNet(tmp_path, image_size=12), n_way=2, k_shot=1, n_query=2,
                              train_episodes=4, eval_episodes=3)  # fmt: skip
    data.setup("fit")
    assert data.class_names == SPLIT_CLASSES
    support_x, support_y, query_x, query_y = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
    assert support_x.shape == (1, 2, 3, 12, 12) and query_x.shape == (1, 4, 3, 12, 12)
    assert support_x.max() <= 1.0


def write_tiered(root, form):
    for split, wnids in SPLIT_CLASSES.items():
        labels = np.repeat(np.arange(len(wnids)), PER_CLASS)
        images = np.stack([colour(int(wnids[c][1:]), i) for c in range(len(wnids)) for i in range(PER_CLASS)])
        meta = {"label_specific": labels, "label_general": labels * 0, "label_specific_str": wnids}
        if form == "npz":
            np.savez(root / f"{split}_images.npz", images=images)
            with open(root / f"{split}_labels.pkl", "wb") as f:
                pickle.dump(meta, f)
        else:  # the original release: PNG bytes as uint8 arrays, Python 2 pickles (bytes keys, latin1)
            encoded = []
            for image in images:
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="PNG")
                encoded.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
            with open(root / f"{split}_images_png.pkl", "wb") as f:
                pickle.dump(encoded, f, protocol=2)
            with open(root / f"{split}_labels.pkl", "wb") as f:
                pickle.dump({k.encode(): v for k, v in meta.items()}, f, protocol=2)


@pytest.mark.parametrize("form", ["npz", "png"])
def test_tieredimagenet_reads_the_release_and_its_npz_form(tmp_path, form):
    folder = tmp_path / "tiered-imagenet"
    folder.mkdir()
    write_tiered(folder, form)
    source = TieredImageNet(tmp_path)
    images, labels, names = source.load_pool()
    assert images.shape == (21, 3, 12, 12) and names == ["n01", "n02", "n03", "n04", "n05", "n06", "n07"]
    assert source.class_split() == {"train": [0, 1, 2], "val": [3, 4], "test": [5, 6]}
    assert torch.equal(images[labels == 4][:, 0, 0, 0], torch.full((PER_CLASS,), 100, dtype=torch.uint8))


def test_tieredimagenet_names_the_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_labels.pkl and train_images.npz or train_images_png.pkl"):
        TieredImageNet(tmp_path).load_pool()


FINE = sorted({name for names in CIFAR_FS_SPLIT.values() for name in names})  # CIFAR-100's fine names are sorted
COARSE = sorted({name for names in FC100_SPLIT.values() for name in names})


def write_cifar100(root, per_class=2):
    """cifar-100-python/{train,test,meta} pickles; fine class f belongs to superclass f % 20 (a fake mapping)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": FINE, "coarse_label_names": COARSE}, f)
    for part in ("train", "test"):
        fine = np.repeat(np.arange(100), per_class)
        data = np.zeros((len(fine), 3072), dtype=np.uint8)
        data[:, :1024] = (fine[:, None] * 2).astype(np.uint8)  # red channel encodes the fine class
        with open(folder / part, "wb") as f:  # bytes keys, as the official Python 2 pickles have
            pickle.dump({b"data": data, b"fine_labels": fine.tolist(), b"coarse_labels": (fine % 20).tolist()}, f)


def test_cifar_fs_uses_bertinettos_classes(tmp_path):
    write_cifar100(tmp_path)
    source = CIFARFS(tmp_path)
    images, labels, names = source.load_pool()
    split = source.class_split()
    assert {s: len(ids) for s, ids in split.items()} == {"train": 64, "val": 16, "test": 20}
    assert {names[c] for c in split["test"]} == set(CIFAR_FS_SPLIT["test"])
    assert images.shape == (100 * 4, 3, 32, 32)
    first = names.index("whale")
    assert torch.equal(
        images[labels == first][:, 0, 0, 0], torch.full((4,), 2 * FINE.index("whale"), dtype=torch.uint8)
    )


def test_fc100_splits_by_superclass(tmp_path):
    write_cifar100(tmp_path)
    source = FC100(tmp_path)
    _, _, names = source.load_pool()
    split = source.class_split()
    assert {s: len(ids) for s, ids in split.items()} == {"train": 60, "val": 20, "test": 20}
    for s, ids in split.items():  # with the fake mapping, fine class f is in superclass f % 20
        assert {COARSE[FINE.index(names[c]) % 20] for c in ids} == set(FC100_SPLIT[s])


def test_cifar100_missing_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python lacks .*download: true"):
        CIFARFS(tmp_path).load_pool()


def test_cub_uses_the_closer_look_split_and_resizes(tmp_path):
    images_dir = tmp_path / "CUB_200_2011" / "images"
    species = [f"{i + 1:03d}.Bird_{i}" for i in range(8)]
    for i, name in enumerate(species):
        for j in range(2):
            save_jpeg(images_dir / name / f"{name}_{j}.jpg", colour(i, j, size=10 + 5 * j))  # sizes differ
    source = CUB200(tmp_path, image_size=16)
    images, labels, names = source.load_pool()
    assert images.shape == (16, 3, 16, 16)
    split = source.class_split()
    assert [names[c] for c in split["train"]] == [species[i] for i in (0, 2, 4, 6)]
    assert [names[c] for c in split["val"]] == [species[1], species[5]]
    assert [names[c] for c in split["test"]] == [species[3], species[7]]
    assert {s: len(ids) for s, ids in closer_look_split(200).items()} == {"train": 100, "val": 50, "test": 50}


def test_the_miniimagenet_protonet_config_runs_on_the_pickled_layout(tmp_path, chdir_tmp):
    """experiments/fewshot/miniimagenet_protonet_5w1s.yaml: fit and test (fast_dev_run) on tiny pickles at 84x84."""
    from tests.helpers import EXPERIMENTS, fast_dev_run

    for split, first in (("train", 0), ("val", 4), ("test", 8)):
        images = np.stack([np.full((84, 84, 3), 20 * (first + c), dtype=np.uint8) for c in range(4) for _ in range(3)])
        class_dict = {f"n{first + c:08d}": list(range(3 * c, 3 * c + 3)) for c in range(4)}
        with open(tmp_path / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": images, "class_dict": class_dict}, f)
    config = EXPERIMENTS / "fewshot" / "miniimagenet_protonet_5w1s.yaml"
    overrides = ["--data.init_args.source.init_args.root", str(tmp_path), "--data.init_args.n_way", "2"]
    overrides += ["--data.init_args.train_n_way", "3", "--data.init_args.n_query", "2", "--test_after_fit", "false"]
    cli = fast_dev_run(config, *overrides)
    assert cli.datamodule.episode_shape("train") == (3, 1, 2)
    assert 0.0 <= float(cli.trainer.callback_metrics["val/acc"]) <= 1.0
