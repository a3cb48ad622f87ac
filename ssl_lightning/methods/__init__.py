"""One LightningModule per method, on small bases (``Classifier``, ``EpisodicModule``, ``PretrainThenAdapt``)."""

from ssl_lightning.methods.anil import ANIL
from ssl_lightning.methods.autoencoder import Autoencoder
from ssl_lightning.methods.baseline import Baseline, BaselinePlusPlus
from ssl_lightning.methods.byol import BYOL
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.methods.dino import DINO
from ssl_lightning.methods.episodic import EpisodicModule
from ssl_lightning.methods.feature_cache import FeatureProbe
from ssl_lightning.methods.finetune import EpisodeFineTune
from ssl_lightning.methods.fixmatch import FixMatch, PseudoLabel
from ssl_lightning.methods.flexmatch import FlexMatch
from ssl_lightning.methods.freematch import FreeMatch
from ssl_lightning.methods.maml import MAML
from ssl_lightning.methods.meta_baseline import MetaBaseline
from ssl_lightning.methods.metasgd import MetaSGD
from ssl_lightning.methods.moco import MoCo
from ssl_lightning.methods.pretrain_adapt import PretrainThenAdapt
from ssl_lightning.methods.protonet import ProtoNet
from ssl_lightning.methods.rfs import RFS
from ssl_lightning.methods.selfsup_base import SelfSupervisedModule
from ssl_lightning.methods.setfit import SetFitClassifier
from ssl_lightning.methods.simclr import SimCLR
from ssl_lightning.methods.simpleshot import SimpleShot
from ssl_lightning.methods.softmatch import SoftMatch
from ssl_lightning.methods.tim import TIM

__all__ = [
    "ANIL",
    "BYOL",
    "DINO",
    "MAML",
    "RFS",
    "TIM",
    "Autoencoder",
    "Baseline",
    "BaselinePlusPlus",
    "Classifier",
    "EpisodeFineTune",
    "EpisodicModule",
    "FeatureProbe",
    "FixMatch",
    "FlexMatch",
    "FreeMatch",
    "MetaBaseline",
    "MetaSGD",
    "MoCo",
    "PretrainThenAdapt",
    "ProtoNet",
    "PseudoLabel",
    "SelfSupervisedModule",
    "SetFitClassifier",
    "SimCLR",
    "SimpleShot",
    "SoftMatch",
]
