"""Moved to :mod:`ssl_lightning.utils.figures` (methods log figures too, and may not import callbacks);
this path is kept for one release."""

from ssl_lightning.utils.figures import confusion_figure, log_figure, log_image_grid

__all__ = ["confusion_figure", "log_figure", "log_image_grid"]
