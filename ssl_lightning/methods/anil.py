"""ANIL, Almost No Inner Loop (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid Learning or Feature Reuse? Towards
Understanding the Effectiveness of MAML")."""

from __future__ import annotations

from torch import Tensor, nn

from ssl_lightning.methods.maml import MAML


class ANIL(MAML):
    """MAML whose inner loop adapts only the classification head.

    Raghu et al. 2020 (Sec. 4) show that MAML's inner loop barely changes the body: reusing
    the features and adapting the head alone matches MAML's accuracy at a fraction of the
    cost. The body is still meta-learned through the outer loop. Here the features of
    support and query are computed once per task with the meta-parameters
    (``backbone.forward_features``), and only ``backbone.head`` runs with fast weights.

    Shapes per episode: images ``float[N*K, C, H, W]`` -> features ``float[N*K, D]`` -> head
    adapted on them; query logits ``float[N*Q, N]`` (see :class:`MAML`).

    Example config: MAML's, with ``class_path: ssl_lightning.methods.anil.ANIL`` (Raghu et al. use
    MAML's Omniglot settings; ``experiments/fewshot/anil_omniglot_5w1s.yaml``).

    Args: the same as :class:`MAML`.
    """

    @property
    def adapted_module(self) -> nn.Module:
        """Only the head (timm contract: ``backbone.head``) is adapted."""
        return self.backbone.head

    def encode(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> features float[B, D] with the meta-parameters (feature reuse)."""
        return self.backbone.forward_features(x)
