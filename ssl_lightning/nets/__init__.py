"""Plain ``nn.Module`` backbones following timm's contract.

Every backbone exposes ``num_features``, ``num_classes``, ``forward_features(x)``,
``forward_head(features)`` and ``reset_classifier(num_classes)`` (the head lives in ``head``),
and never knows which method trains it. timm, torchvision and transformers are imported only
when a pretrained backbone is built.
"""

from ssl_lightning.nets.bilstm import BiLSTMClassifier
from ssl_lightning.nets.conv4 import Conv4, conv4
from ssl_lightning.nets.decoder import ConvDecoder
from ssl_lightning.nets.hf_encoder import HFEncoder
from ssl_lightning.nets.lenet import LeNet, count_parameters, lenet
from ssl_lightning.nets.pretrained import TimmBackbone, TorchvisionBackbone

__all__ = [
    "BiLSTMClassifier",
    "Conv4",
    "ConvDecoder",
    "HFEncoder",
    "LeNet",
    "TimmBackbone",
    "TorchvisionBackbone",
    "conv4",
    "count_parameters",
    "lenet",
]
