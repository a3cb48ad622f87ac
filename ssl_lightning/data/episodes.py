"""Moved to :mod:`ssl_lightning.data.episodic.sampling`; this path is kept for one release.

``from ssl_lightning.data.episodes import EpisodeSampler`` (and every other public name of the
sampling module) keeps working; new code imports from ``ssl_lightning.data.episodic``.
"""

from ssl_lightning.data.episodic.sampling import *  # noqa: F403 (the whole public API, re-exported)
from ssl_lightning.data.episodic.sampling import __all__  # noqa: F401
