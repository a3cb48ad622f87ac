"""Folder-of-class-folders reading and ImageFolderDataModule, on real PNG/JPG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_lightning.data.folder import ImageFolderDataModule, read_image_tree


def save(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def grey(value: int, size: tuple[int, int] = (6, 6)) -> np.ndarray:
    return np.full(size, value, np.uint8)


def rgb(value: tuple[int, int, int], size: tuple[int, int] = (6, 6)) -> np.ndarray:
    return np.broadcast_to(np.array(value, np.uint8), (*size, 3)).copy()


def test_reads_classes_sorted_with_labels_and_pixels(tmp_path):
    save(tmp_path / "b" / "0.png", grey(10))
    save(tmp_path / "b" / "1.png", grey(20))
    save(tmp_path / "a" / "x.png", grey(200))
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    images, labels, names = read_image_tree(tmp_path)
    assert names == ["a", "b"]
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 6, 6)
    assert labels.tolist() == [0, 1, 1]
    assert images[:, 0, 0, 0].tolist() == [200, 10, 20]


def test_mixed_grey_and_jpg_colour_become_rgb_and_channels_can_be_forced(tmp_path):
    save(tmp_path / "a" / "0.png", grey(100))
    save(tmp_path / "b" / "0.jpg", rgb((255, 0, 0)), "JPEG")
    images, _, _ = read_image_tree(tmp_path)
    assert images.shape == (2, 3, 6, 6)
    assert images[0, :, 0, 0].tolist() == [100, 100, 100]
    assert images[1, 0, 0, 0] > 200 and images[1, 1, 0, 0] < 50  # red survives JPEG
    grey_images, _, _ = read_image_tree(tmp_path, channels=1)
    assert grey_images.shape == (2, 1, 6, 6)
    assert abs(int(grey_images[1, 0, 0, 0]) - round(0.299 * 255)) <= 6


def test_resize_and_size_mismatch(tmp_path):
    save(tmp_path / "a" / "0.png", grey(1, (6, 6)))
    save(tmp_path / "a" / "1.png", grey(1, (10, 12)))
    with pytest.raises(ValueError, match=r"1\.png is 12x10 but earlier images are 6x6\. Set image_size"):
        read_image_tree(tmp_path)
    images, _, _ = read_image_tree(tmp_path, image_size=4)
    assert images.shape == (2, 1, 4, 4)


def test_class_depth_two_is_omniglot_layout(tmp_path):
    for alphabet in ["Greek", "Latin"]:
        for character in ["character01", "character02"]:
            for i in range(2):
                save(tmp_path / alphabet / character / f"{i}.png", grey(255 * (i % 2)))
    images, labels, names = read_image_tree(tmp_path, class_depth=2)
    assert names == ["Greek/character01", "Greek/character02", "Latin/character01", "Latin/character02"]
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert images.shape == (8, 1, 6, 6)


def test_corrupt_and_truncated_files_are_named(tmp_path):
    save(tmp_path / "a" / "good.png", grey(5, (32, 32)))
    data = (tmp_path / "a" / "good.png").read_bytes()
    (tmp_path / "a" / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"Cannot read image .*truncated\.png"):
        read_image_tree(tmp_path)
    (tmp_path / "a" / "truncated.png").unlink()
    (tmp_path / "a" / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"Cannot read image .*junk\.jpg"):
        read_image_tree(tmp_path)


def test_missing_root_empty_class_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image_tree(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="No class folders"):
        read_image_tree(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"Class folder .*empty has no images"):
        read_image_tree(tmp_path)
    with pytest.raises(ValueError, match="channels must be 1, 3"):
        read_image_tree(tmp_path, channels=2)


def write_split(root: Path, classes: list[str], per_class: int) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(root / name / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) // (c + 1))


def test_datamodule_with_train_and_test_folders(tmp_path):
    write_split(tmp_path / "train", ["ant", "bee", "cow"], 6)
    write_split(tmp_path / "test", ["bee", "ant"], 2)  # class subset: labels follow the training classes
    data = ImageFolderDataModule(tmp_path, val_size=3, labels_per_class=2, batch_size=4)
    data.setup()
    assert data.num_classes == 3 and data.class_names == ["ant", "bee", "cow"]
    assert len(data.datasets["labelled"]) == 6 and len(data.datasets["val"]) == 3
    assert data.datasets["test"].labels.tolist() == [0, 0, 1, 1]
    x, y = next(iter(data.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 8, 8)


def test_datamodule_without_test_folder_splits_test_size(tmp_path):
    write_split(tmp_path / "train", ["ant", "bee"], 10)
    data = ImageFolderDataModule(tmp_path, test_size=4, val_size=2)
    data.setup()
    assert len(data.datasets["test"]) == 4 and len(data.datasets["val"]) == 2 and len(data.datasets["all"]) == 14


def test_datamodule_rejects_unknown_test_classes(tmp_path):
    write_split(tmp_path / "train", ["ant"], 3)
    write_split(tmp_path / "test", ["ant", "yak"], 1)
    with pytest.raises(ValueError, match=r"Test classes \['yak'\]"):
        ImageFolderDataModule(tmp_path).setup()
