"""Moved to :mod:`ssl_lightning.data.mixup` (batch-level mixup/CutMix); this path is kept for one release.

Configs that name ``ssl_lightning.data.mixing.MixUp`` (``CutMix``, ``MixUpOrCutMix``,
``BatchMix``) keep working; new configs use ``ssl_lightning.data.mixup.MixUp``. Dataset
mixtures are a different thing: :mod:`ssl_lightning.data.mixture`.
"""

from ssl_lightning.data.mixup import BatchMix, CutMix, MixUp, MixUpOrCutMix, sample_beta, soft_targets

__all__ = ["BatchMix", "CutMix", "MixUp", "MixUpOrCutMix", "sample_beta", "soft_targets"]
