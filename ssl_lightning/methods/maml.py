"""Model-Agnostic Meta-Learning (Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation
of Deep Networks"), second order by default, first order (FOMAML) by a switch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ssl_lightning.data.contract import EpisodicData, attached_data
from ssl_lightning.methods.episodic import EpisodicModule
from ssl_lightning.methods.functional import inner_loop
from ssl_lightning.utils.hparams import save_plain_hyperparameters


def use_batch_statistics(module: nn.Module) -> int:
    """Make every batch-norm layer of ``module`` normalize with the statistics of the current batch.

    Finn et al. 2017 (Sec. 5.2 and their code) use the batch statistics of each episode at
    training and at test time and keep no running averages. Removing the running buffers
    does exactly that in train and eval mode, and leaves no state that one episode could
    pass to the next. Returns the number of layers changed.
    """
    changed = 0
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
            layer.track_running_stats = False
            layer.running_mean = None
            layer.running_var = None
            layer.num_batches_tracked = None
            changed += 1
    return changed


class MAML(EpisodicModule):
    """Learn an initialization from which a few gradient steps on the support set fit each task.

    Per episode (Finn et al. 2017, Alg. 2): starting from the meta-parameters ``theta``, take
    ``inner_steps`` SGD steps of size ``inner_lr`` on the support cross-entropy, giving
    ``theta'``; the meta-loss is the query cross-entropy at ``theta'``, averaged over the
    ``T`` tasks of a batch, and the optimizer (Adam in the paper) steps ``theta`` along its
    gradient. The fast weights are a dict of tensors run through the backbone with
    ``torch.func.functional_call``: no copy of the module per task, nothing written back into
    it, so no state passes between episodes. Validation and test adapt in the same way,
    with ``test_inner_steps`` steps, under ``torch.enable_grad()``.

    Second order by default (gradients through the inner updates, ``create_graph=True``);
    ``first_order=True`` gives FOMAML (Finn et al. 2017, Sec. 5.2), which ignores those
    second derivatives. Batch norm uses each episode's batch statistics (see
    :func:`use_batch_statistics`). The backbone's head must have ``num_classes = n_way``.

    ``compile_backend="inductor"`` compiles each task's adaptation and query forward with
    ``torch.compile`` (the inner gradients through ``torch.func.grad``, so the inner and outer
    backward passes become one traced graph whose batch-norm, ReLU and pooling kernels
    inductor fuses). On a 1-thread CPU Conv-4 a meta-step then takes 0.76-0.86x learn2learn's
    time and 0.6-0.8x its memory (eager: about 1.0x;
    ``benchmarks/maml_vs_learn2learn.py --full --compile-backend inductor``); the first
    meta-step of each episode shape and step count compiles (0.5-15 min on a loaded 2-core
    CPU, cached on disk for later runs). ``"aot_eager"`` traces without code generation (checks, debugging).

    Shapes per episode: ``support_x: float[N*K, C, H, W]``, ``support_y: long[N*K]``,
    ``query_x: float[N*Q, C, H, W]`` -> query logits ``float[N*Q, N]``; batches hold ``T``
    episodes (see :class:`EpisodicModule`).

    Example config (the paper's Omniglot 5-way 1-shot)::

        model:
          class_path: ssl_lightning.methods.maml.MAML
          init_args:
            backbone: {class_path: ssl_lightning.nets.conv4.Conv4, init_args: {num_classes: 5, input_size: 28}}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}
            inner_lr: 0.4
            inner_steps: 1
            test_inner_steps: 3

    Args:
        backbone: network with a classification head of ``n_way`` outputs (timm contract).
        inner_lr: inner-loop step size alpha.
        inner_steps: inner-loop steps during training.
        test_inner_steps: inner-loop steps during validation and test; ``None``: ``inner_steps``.
        first_order: drop second-order terms (FOMAML).
        compile_backend: ``torch.compile`` backend for each task's adaptation and query logits
            (``"inductor"`` for speed); ``None`` runs eagerly.
        **episodic_args: ``optimizer`` (the meta-optimizer) and ``lr_scheduler`` of
            :class:`~ssl_lightning.methods.episodic.EpisodicModule`, documented there; LightningCLI reads
            the ``super().__init__`` call and types and checks them as this class's own.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        test_inner_steps: int | None = None,
        first_order: bool = False,
        compile_backend: str | None = None,
        **episodic_args: Any,
    ) -> None:
        super().__init__(backbone, **episodic_args)
        save_plain_hyperparameters(self, ["backbone", "optimizer", "lr_scheduler"])
        if inner_steps < 0 or (test_inner_steps is not None and test_inner_steps < 0):
            raise ValueError(
                f"inner steps must be >= 0, got inner_steps={inner_steps}, test_inner_steps={test_inner_steps}"
            )
        if inner_lr <= 0:
            raise ValueError(f"inner_lr must be > 0, got {inner_lr}")
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.test_inner_steps = inner_steps if test_inner_steps is None else test_inner_steps
        self.first_order = first_order
        self.compile_backend = compile_backend
        self._compiled: Callable[..., Tensor] | None = None  # built on first use; not pickled
        use_batch_statistics(self.backbone)

    def setup(self, stage: str) -> None:
        data = attached_data(self)
        if not isinstance(data, EpisodicData):
            return
        name, n_way, head_classes = type(self).__name__, data.n_way, getattr(self.backbone, "num_classes", None)
        train_mode = getattr(data, "train_mode", "episodes")
        if train_mode != "episodes":
            raise ValueError(
                f"{name} meta-learns on training episodes, but the data has train_mode={train_mode!r} (plain batches "
                f"of the base classes, for pretrain-then-adapt methods). Set --data.init_args.train_mode episodes."
            )
        if head_classes != n_way:
            raise ValueError(
                f"{name} adapts a head with one output per way, but the data has n_way={n_way} "
                f"and the backbone's num_classes={head_classes}. "
                f"Set --model.init_args.backbone.init_args.num_classes {n_way}."
            )
        # the head is fixed-size, so training episodes need the evaluation way count (train_n_way may differ
        # for ProtoNet, whose prototypes adapt to any way count)
        episode_shape = getattr(data, "episode_shape", None)
        train_way = episode_shape("train")[0] if callable(episode_shape) else n_way
        if train_way != n_way:
            raise ValueError(
                f"{name} adapts a head with one output per way (n_way={n_way}), but training episodes have "
                f"train_n_way={train_way} ways. Set --data.init_args.train_n_way {n_way} (or null)."
            )

    # ---- what subclasses change ------------------------------------------------------
    @property
    def adapted_module(self) -> nn.Module:
        """The part of the network whose parameters the inner loop adapts (all of it for MAML)."""
        return self.backbone

    def encode(self, x: Tensor) -> Tensor:
        """Input of :attr:`adapted_module` computed from images; the identity for MAML."""
        return x

    def inner_learning_rates(self) -> float | Mapping[str, Tensor]:
        """The inner step size: one float for MAML, or ``name -> tensor`` per adapted parameter."""
        return self.inner_lr

    # ---- the algorithm ---------------------------------------------------------------
    def _inner_loop(self, support: Tensor, support_y: Tensor, steps: int) -> dict[str, Tensor]:
        """Fast weights from encoded support inputs (Finn et al. 2017, Alg. 2, lines 5-8)."""
        module = self.adapted_module
        params = {name: p for name, p in module.named_parameters() if p.requires_grad}

        def support_loss(fast: Mapping[str, Tensor]) -> Tensor:
            return F.cross_entropy(functional_call(module, fast, (support,)), support_y)

        traceable = self.compile_backend is not None
        return inner_loop(support_loss, params, steps, self.inner_learning_rates(), self.first_order, traceable)

    def _query_logits(self, support: Tensor, support_y: Tensor, query: Tensor, steps: int) -> Tensor:
        """Adapt on the encoded support set, then classify the encoded queries: float[N*Q, N]."""
        fast = self._inner_loop(support, support_y, steps)
        return functional_call(self.adapted_module, fast, (query,))

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> dict[str, Tensor]:
        """Fast weights ``theta'`` for one task (Finn et al. 2017, Alg. 2, lines 5-8).

        Args:
            support_x: float[N*K, C, H, W].
            support_y: long[N*K].
            steps: inner steps; default: ``inner_steps`` in training, ``test_inner_steps`` otherwise.

        Returns:
            ``name -> tensor`` for every trainable parameter of :attr:`adapted_module`,
            differentiable with respect to the meta-parameters.
        """
        return self._inner_loop(self.encode(support_x), support_y, self._steps(steps))

    def _steps(self, steps: int | None = None) -> int:
        if steps is not None:
            return steps
        return self.inner_steps if self.training else self.test_inner_steps

    def task_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        run = self._query_logits
        if self.compile_backend is not None:
            if self._compiled is None:
                # static shapes: a few distinct episode shapes, each compiled once
                self._compiled = torch.compile(self._query_logits, backend=self.compile_backend, dynamic=False)
            run = self._compiled
        return run(self.encode(support_x), support_y, self.encode(query_x), self._steps())

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        return {**state, "_compiled": None}  # compiled functions do not pickle; rebuilt on first use

    def adapts_at_evaluation(self) -> bool:
        return True

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the meta-parameters, before adaptation: float[B, C, H, W] -> float[B, num_classes]."""
        return self.backbone(x)
