"""One LightningModule per method, on two small bases (``Classifier``, ``EpisodicModule``)."""

from ssl_lightning.methods.anil import ANIL
from ssl_lightning.methods.autoencoder import Autoencoder
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.methods.episodic import EpisodicModule
from ssl_lightning.methods.feature_cache import FeatureProbe
from ssl_lightning.methods.fixmatch import FixMatch, PseudoLabel
from ssl_lightning.methods.flexmatch import FlexMatch
from ssl_lightning.methods.freematch import FreeMatch
from ssl_lightning.methods.maml import MAML
from ssl_lightning.methods.metasgd import MetaSGD
from ssl_lightning.methods.protonet import ProtoNet
from ssl_lightning.methods.setfit import SetFitClassifier
from ssl_lightning.methods.simclr import SimCLR
from ssl_lightning.methods.softmatch import SoftMatch

__all__ = [
    "ANIL",
    "MAML",
    "Autoencoder",
    "Classifier",
    "EpisodicModule",
    "FeatureProbe",
    "FixMatch",
    "FlexMatch",
    "FreeMatch",
    "MetaSGD",
    "ProtoNet",
    "PseudoLabel",
    "SetFitClassifier",
    "SimCLR",
    "SoftMatch",
]
