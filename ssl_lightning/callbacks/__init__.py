"""Lightning callbacks and the figure helpers they use."""

from ssl_lightning.callbacks.prediction_writer import PredictionWriter
from ssl_lightning.utils.figures import confusion_figure, log_figure, log_image_grid

__all__ = ["PredictionWriter", "confusion_figure", "log_figure", "log_image_grid"]
