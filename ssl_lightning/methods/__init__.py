"""One LightningModule per method."""

from ssl_lightning.methods.classifier import Classifier

__all__ = ["Classifier"]
