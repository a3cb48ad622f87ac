"""The decoded, memory-mapped image cache on real PNG/JPEG folders: reuse, invalidation, atomicity, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_lightning.data import decoded_cache
from ssl_lightning.data.decoded_cache import MANIFEST, cached_image_tree
from ssl_lightning.data.folder import ImageFolderDataModule, read_image_tree
from ssl_lightning.data.memmap import MemmapImages, take_rows


def write_tree(root: Path, classes: int = 3, per_class: int = 6, size: int = 8, seed: int = 0) -> Path:
    """Colour PNGs and JPEGs (and one grey PNG) in ``root/<class>/``."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        for i in range(per_class):
            path = root / f"class{c}" / f"{i}.{'jpg' if i % 2 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8)
            Image.fromarray(pixels[..., 0] if (c, i) == (0, 0) else pixels).save(path)
    return root


def entries(cache: Path) -> list[Path]:
    """Finished cache entries (folders with a manifest)."""
    return sorted(p.parent for p in cache.glob(f"*/{MANIFEST}"))


def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded an image although a valid cache exists")

    monkeypatch.setattr(decoded_cache, "decode_image", fail)


def assert_same(got: tuple, want: tuple) -> None:
    assert isinstance(got[0], MemmapImages)
    assert torch.equal(got[0][:], want[0]) and got[0][:].dtype == torch.uint8
    assert torch.equal(got[1], want[1]) and got[2] == want[2]


@pytest.mark.parametrize("channels", [None, 1])
def test_cache_equals_in_memory_reader_bit_for_bit_and_is_reused(tmp_path, monkeypatch, channels):
    root = write_tree(tmp_path / "train")
    want = read_image_tree(root, channels=channels)
    assert_same(cached_image_tree(root, tmp_path / "cache", channels=channels, num_workers=0, progress=False), want)
    assert len(entries(tmp_path / "cache")) == 1
    no_decoding(monkeypatch)
    again = cached_image_tree(root, tmp_path / "cache", channels=channels, num_workers=0)
    assert_same(again, want)
    again[0][0]
    assert str(again[0].path) in Path("/proc/self/maps").read_text()  # mapped, not read into memory


def test_parallel_build_equals_serial(tmp_path):
    root = write_tree(tmp_path / "train", per_class=10)
    want = read_image_tree(root, image_size=6)
    got = cached_image_tree(root, tmp_path / "cache", image_size=6, num_workers=2, progress=True)
    assert_same(got, want)


@pytest.mark.parametrize("change", ["add", "remove", "rewrite"])
def test_changed_folder_is_rebuilt_never_reused(tmp_path, change):
    root = write_tree(tmp_path / "train")
    cached_image_tree(root, tmp_path / "cache", num_workers=0, progress=False)
    first = entries(tmp_path / "cache")
    target = root / "class1" / "2.png"
    if change == "add":
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(root / "class1" / "new.png")
    elif change == "remove":
        target.unlink()
    else:  # same name and size, other pixels and mtime
        Image.fromarray(np.full((8, 10, 3), 7, np.uint8)).save(target)
        os.utime(target, ns=(1, 1))
    got = cached_image_tree(root, tmp_path / "cache", num_workers=0, progress=False)
    assert_same(got, read_image_tree(root))
    assert len(entries(tmp_path / "cache")) == 1 and entries(tmp_path / "cache") != first  # stale entry removed


def test_other_image_size_or_channels_is_another_cache(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "train")
    small = cached_image_tree(root, tmp_path / "cache", image_size=4, num_workers=0, progress=False)
    grey = cached_image_tree(root, tmp_path / "cache", image_size=4, channels=1, num_workers=0, progress=False)
    assert small[0].shape == (18, 3, 4, 4) and grey[0].shape == (18, 1, 4, 4)
    assert_same(grey, read_image_tree(root, image_size=4, channels=1))
    assert len(entries(tmp_path / "cache")) == 2
    no_decoding(monkeypatch)  # both stay valid side by side
    assert_same(cached_image_tree(root, tmp_path / "cache", image_size=4), read_image_tree(root, image_size=4))


def _killed_build(root: Path, cache: Path) -> None:
    """Decodes a few images, then dies without any clean-up (as ``kill -9`` would)."""
    decoded = []

    def decode_then_die(*args, **kwargs):
        if len(decoded) == 5:
            os._exit(9)
        decoded.append(1)
        return real(*args, **kwargs)

    real = decoded_cache.decode_image
    decoded_cache.decode_image = decode_then_die
    cached_image_tree(root, cache, num_workers=0, progress=False)


def test_killed_build_leaves_nothing_that_is_reused(tmp_path):
    root = write_tree(tmp_path / "train")
    process = mp.get_context("fork").Process(target=_killed_build, args=(root, tmp_path / "cache"))
    process.start()
    process.join(30)
    assert process.exitcode == 9
    assert entries(tmp_path / "cache") == [] and list((tmp_path / "cache").glob(".tmp-*"))  # half-written, no manifest
    assert_same(cached_image_tree(root, tmp_path / "cache", num_workers=0, progress=False), read_image_tree(root))
    assert not list((tmp_path / "cache").glob(".tmp-*"))  # the next build removed the leftover


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_names_the_file_and_leaves_no_cache(tmp_path, workers):
    root = write_tree(tmp_path / "train")
    bad = root / "class2" / "3.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG: the header still parses
    with pytest.raises(ValueError, match=r"Cannot read image .*class2/3\.jpg"):
        cached_image_tree(root, tmp_path / "cache", image_size=8, channels=3, num_workers=workers, progress=False)
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def _open_in_process(root: Path, cache: Path, queue, barrier) -> None:
    builds = []
    real = decoded_cache.build_entry

    def counted(*args, **kwargs):
        builds.append(1)
        real(*args, **kwargs)

    decoded_cache.build_entry = counted
    barrier.wait(30)  # both look for the cache at the same time
    images, labels, names = cached_image_tree(root, cache, num_workers=0, progress=False)
    queue.put((images[:].numpy(), labels.numpy(), names, len(builds)))


def test_two_processes_opening_concurrently_build_once_and_agree(tmp_path):
    root = write_tree(tmp_path / "train", per_class=30)
    ctx = mp.get_context("fork")
    queue, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_open_in_process, args=(root, tmp_path / "cache", queue, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    want = read_image_tree(root)
    assert sorted(r[3] for r in results) == [0, 1]  # one built, the other waited on the lock and mapped it
    for images, labels, names, _ in results:
        assert np.array_equal(images, want[0].numpy()) and np.array_equal(labels, want[1].numpy()) and names == want[2]
    assert len(entries(tmp_path / "cache")) == 1


def test_memmap_images_index_like_a_tensor_and_pickle_small(tmp_path):
    root = write_tree(tmp_path / "train")
    images, _, _ = cached_image_tree(root, tmp_path / "cache", num_workers=0, progress=False)
    tensor = images[:]
    index = torch.tensor([5, 0, 17, 5])
    assert torch.equal(images[3], tensor[3]) and torch.equal(images[2:9], tensor[2:9])
    assert torch.equal(images[index], tensor[index])
    view = take_rows(images, torch.tensor([4, 9, 1]))
    assert isinstance(view, MemmapImages) and view.shape == (3, *tensor.shape[1:])
    assert torch.equal(view[1:], tensor[[9, 1]]) and torch.equal(take_rows(view, torch.tensor([2]))[0], tensor[1])
    mask = torch.zeros(len(images), dtype=torch.bool)
    mask[[2, 7]] = True
    assert torch.equal(images.take(mask)[:], tensor[mask])
    restored = pickle.loads(pickle.dumps(view))
    assert len(pickle.dumps(view)) < 1000 and torch.equal(restored[:], view[:])  # path and rows, not pixels


def test_datamodule_with_cache_dir_matches_in_memory_datamodule(tmp_path, monkeypatch):
    write_tree(tmp_path / "data" / "train", per_class=10)
    write_tree(tmp_path / "data" / "test", per_class=3, seed=1)
    options = {"val_size": 6, "labels_per_class": 4, "batch_size": 8, "seed": 3}
    plain = ImageFolderDataModule(tmp_path / "data", **options)
    plain.setup()

    def cached() -> ImageFolderDataModule:
        data = ImageFolderDataModule(tmp_path / "data", cache_dir=str(tmp_path / "cache"), cache_workers=0, **options)
        data.prepare_data()
        data.setup()
        return data

    cached()
    no_decoding(monkeypatch)
    data = cached()  # the second run maps both folders' caches
    assert len(entries(tmp_path / "cache")) == 2
    for split, dataset in plain.datasets.items():
        assert isinstance(data.datasets[split].images, MemmapImages)
        assert torch.equal(data.datasets[split].images[:], dataset.images), split
        assert torch.equal(data.datasets[split].labels, dataset.labels), split
    assert torch.equal(data.mean, plain.mean) and torch.equal(data.std, plain.std)
    assert data.pool_fingerprint == plain.pool_fingerprint
    for (x, y), (x_plain, y_plain) in zip(data.train_dataloader(), plain.train_dataloader(), strict=True):
        assert torch.equal(x, x_plain) and torch.equal(y, y_plain)


def test_cache_dir_inside_the_image_folder_is_refused(tmp_path):
    root = write_tree(tmp_path / "train")
    with pytest.raises(ValueError, match="lies inside the image folder"):
        cached_image_tree(root, root / "cache", num_workers=0)


def test_folder_cached_yaml_trains_then_reuses_its_cache(tmp_path, monkeypatch, chdir_tmp):
    from tests.helpers import EXPERIMENTS, fast_dev_run

    write_tree(tmp_path / "jpg" / "train", classes=10, per_class=4, size=32)
    args = [
        "--data.init_args.root", str(tmp_path / "jpg"), "--data.init_args.val_size", "10",
        "--data.init_args.batch_size", "8", "--data.init_args.cache_workers", "0",
        "--data.init_args.num_workers", "1", "--test_after_fit", "false",
    ]  # fmt: skip
    config = EXPERIMENTS / "data" / "folder_cached.yaml"
    assert fast_dev_run(config, *args).trainer.state.finished
    assert len(entries(chdir_tmp / "data" / "cache")) == 1  # cache_dir: data/cache, relative to the run
    no_decoding(monkeypatch)
    cli = fast_dev_run(config, *args)  # the second run maps the cache; a loader worker maps it too
    assert cli.trainer.state.finished and isinstance(cli.datamodule.datasets["labelled"].images, MemmapImages)


def test_grey_first_then_colour_is_rgb_all_grey_is_one_channel_and_sizes_must_match(tmp_path):
    root = write_tree(tmp_path / "mixed")  # its first file is grey, the others colour
    assert Image.open(root / "class0" / "0.png").mode == "L"
    assert cached_image_tree(root, tmp_path / "cache", num_workers=0, progress=False)[0].shape[1] == 3
    grey = tmp_path / "grey"
    for i in range(3):
        (grey / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((5, 5), 40 * i, np.uint8)).save(grey / "a" / f"{i}.png")
    assert_same(cached_image_tree(grey, tmp_path / "cache", num_workers=0, progress=False), read_image_tree(grey))
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(grey / "a" / "9.png")
    with pytest.raises(ValueError, match=r"9\.png is 5x6 but the first image is 5x5\. Set image_size"):
        cached_image_tree(grey, tmp_path / "cache", num_workers=0, progress=False)
