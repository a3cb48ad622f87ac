"""TIM, Transductive Information Maximization (Boudiaf, Ziko, Rony, Dolz, Piantanida & Ben Ayed 2020,
"Information Maximization for Few-Shot Learning"), the gradient-descent variant TIM-GD. **Transductive.**"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ssl_lightning.methods.episode_adaptation import tim_logits
from ssl_lightning.methods.pretrain_adapt import PretrainThenAdapt


class TIM(PretrainThenAdapt):
    """**Transductive**: per episode, class weights that fit the support set and maximise the mutual information
    between the queries and their predicted labels, so each query's label depends on the other queries.

    Boudiaf et al. 2020: pretraining is cross-entropy over the base classes (the paper uses label
    smoothing 0.1; set ``label_smoothing``); at evaluation, on L2-normalised frozen features, weights
    start at the class means and follow Adam on ``lambda * CE(support) - (H(mean query prediction) -
    alpha * mean H(query prediction))`` (:func:`~ssl_lightning.methods.episode_adaptation.tim_logits`),
    batched over the ``T`` episodes: ``float[T, N*K, D]``, ``float[T, N*Q, D]`` -> ``float[T, N*Q, N]``.
    Because it reads the whole query set, its numbers are not comparable with inductive methods':
    it logs ``{stage}/transductive`` 1 and says so when evaluation starts. Defaults are the paper's
    TIM-GD (lambda 0.1, alpha 0.1, temperature 15, Adam 1e-4 for 1,000 steps).

    Example config::

        model:
          class_path: ssl_lightning.methods.TIM
          init_args:
            backbone: {class_path: ssl_lightning.nets.resnet12.ResNet12, init_args: {num_classes: 0}}
            label_smoothing: 0.1
            optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1, momentum: 0.9, weight_decay: 0.0001}}

    Args:
        backbone: feature extractor (``num_classes: 0``).
        steps: Adam steps per episode batch.
        lr: Adam's learning rate.
        temperature: scale of the logits.
        cross_entropy_weight: lambda, weight of the support cross-entropy.
        marginal_entropy_weight: weight of the entropy of the mean query prediction (class balance).
        conditional_entropy_weight: alpha, weight of the mean entropy of the query predictions (confidence).
        **pretrain_args: :class:`~ssl_lightning.methods.pretrain_adapt.PretrainThenAdapt`'s arguments
            (``num_base_classes``, ``head``, ``label_smoothing``, ``optimizer``, ...), documented there.
    """

    transductive = True

    def __init__(
        self,
        backbone: nn.Module,
        *,
        steps: int = 1000,
        lr: float = 1e-4,
        temperature: float = 15.0,
        cross_entropy_weight: float = 0.1,
        marginal_entropy_weight: float = 1.0,
        conditional_entropy_weight: float = 0.1,
        **pretrain_args: Any,
    ) -> None:
        super().__init__(backbone, **pretrain_args)
        if steps < 0 or lr <= 0 or temperature <= 0:
            raise ValueError(f"need steps >= 0, lr > 0 and temperature > 0, got {steps}, {lr}, {temperature}")
        self.tim_args = {
            "steps": steps,
            "lr": lr,
            "temperature": temperature,
            "cross_entropy_weight": cross_entropy_weight,
            "marginal_entropy_weight": marginal_entropy_weight,
            "conditional_entropy_weight": conditional_entropy_weight,
        }

    def adapts_at_evaluation(self) -> bool:
        return True

    def episode_logits(self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int) -> Tensor:
        return tim_logits(support, support_y, query, n_way, **self.tim_args)
