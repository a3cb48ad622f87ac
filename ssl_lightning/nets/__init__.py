"""Plain ``nn.Module`` backbones following timm's contract.

Every backbone exposes ``num_features``, ``num_classes``, ``forward_features(x)`` (pooled
features, unlike timm's maps), ``forward_head(features)`` and ``reset_classifier(num_classes)``
(the head lives in ``head``), and never knows which method trains it. The contract and its
shared head are :mod:`~ssl_lightning.nets.head`; weights (package / hub / local files, state
dicts) are :mod:`~ssl_lightning.nets.weights`; fitting images to a backbone (grey <-> RGB,
resizing) is :mod:`~ssl_lightning.nets.adapters`. timm, torchvision, transformers and peft
are imported only when a pretrained (or adapted) backbone is built.
"""

from ssl_lightning.nets.bilstm import BiLSTMClassifier
from ssl_lightning.nets.conv4 import Conv4, conv4
from ssl_lightning.nets.decoder import ConvDecoder
from ssl_lightning.nets.head import ClassifierHeadMixin, pooled_features
from ssl_lightning.nets.hf_encoder import HFEncoder
from ssl_lightning.nets.lenet import LeNet, count_parameters, lenet
from ssl_lightning.nets.peft_backbone import PeftBackbone
from ssl_lightning.nets.pretrained import TimmBackbone, TorchvisionBackbone
from ssl_lightning.nets.wrn import WideResNet, wrn28_10

__all__ = [
    "BiLSTMClassifier",
    "ClassifierHeadMixin",
    "Conv4",
    "ConvDecoder",
    "HFEncoder",
    "LeNet",
    "PeftBackbone",
    "TimmBackbone",
    "TorchvisionBackbone",
    "WideResNet",
    "conv4",
    "count_parameters",
    "lenet",
    "pooled_features",
    "wrn28_10",
]
