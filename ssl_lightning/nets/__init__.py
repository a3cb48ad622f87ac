"""Plain ``nn.Module`` backbones following timm's contract.

Every backbone exposes ``num_features``, ``forward_features(x)``, ``forward_head(features)``
and ``reset_classifier(num_classes)``, and never knows which method trains it.
"""

from ssl_lightning.nets.lenet import LeNet, count_parameters, lenet

__all__ = ["LeNet", "count_parameters", "lenet"]
