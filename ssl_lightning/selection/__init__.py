"""Choosing what to label: representative selection, uncertainty, the simulated oracle, active learning.

The library (imports only go down it): ``strategies`` holds pure functions over pool embeddings /
predictions; ``oracle`` the simulated annotator; ``embeddings`` computes and caches pool
embeddings with any backbone; ``runner`` the selection config, building it and one selection.
Drivers on top: ``active`` (the active-learning loop; it trains through
:func:`ssl_lightning.cli.run_config`) and ``cli`` (the ``ssl-lightning-select`` command).
"""

from ssl_lightning.selection.embeddings import Embeddings, compute_embeddings, embedding_key
from ssl_lightning.selection.oracle import SimulatedOracle
from ssl_lightning.selection.strategies import STRATEGIES, select, typicality

__all__ = ["STRATEGIES", "Embeddings", "SimulatedOracle", "compute_embeddings", "embedding_key", "select", "typicality"]
