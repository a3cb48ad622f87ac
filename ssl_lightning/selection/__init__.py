"""Choosing what to label: representative selection, uncertainty, the simulated oracle, active learning.

``strategies`` holds pure functions over pool embeddings / predictions; ``embeddings`` computes
and caches pool embeddings with any backbone; ``cli`` is the ``ssl-lightning-select`` command.
"""

from ssl_lightning.selection.embeddings import Embeddings, compute_embeddings, embedding_key
from ssl_lightning.selection.oracle import SimulatedOracle
from ssl_lightning.selection.strategies import STRATEGIES, select, typicality

__all__ = ["STRATEGIES", "Embeddings", "SimulatedOracle", "compute_embeddings", "embedding_key", "select", "typicality"]
