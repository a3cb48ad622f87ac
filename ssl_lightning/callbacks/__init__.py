"""Lightning callbacks and the figure helpers they use."""

from ssl_lightning.callbacks.figures import confusion_figure, log_figure, log_image_grid

__all__ = ["confusion_figure", "log_figure", "log_image_grid"]
