"""Export a LoRA/IA3 checkpoint as a plain backbone with the adapters merged into its weights, for inference.

Reads a Lightning checkpoint of a run whose backbone is a
:class:`~ssl_lightning.nets.peft_backbone.PeftBackbone` (any method: Classifier, SetFit, FixMatch),
rebuilds the module from the checkpoint's config (the base weights from their pretrained source,
checked against the checkpoint's sha256, then its adapters and head), folds the adapters into the
base weights and writes the plain backbone's state dict
(:func:`ssl_lightning.methods.export.save_merged_backbone`). Use it as ``backbone_checkpoint`` of
the unwrapped backbone: the inner ``backbone`` of the training config's PeftBackbone.

    python scripts/export_merged.py lightning_logs/version_0/checkpoints/best.ckpt merged.pt
    ssl-lightning test --config experiments/text/minilm_8pc.yaml --model.init_args.backbone_checkpoint merged.pt ...

Checkpoints written by the ``ssl-lightning`` CLI record their model class; one built in Python
needs ``--model_class`` (and is better merged in Python with ``save_merged_backbone``).
"""

from __future__ import annotations

import argparse
import importlib
import logging

import lightning.pytorch as pl

from ssl_lightning.methods.export import save_merged_backbone

log = logging.getLogger("export_merged")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a Lightning checkpoint (.ckpt) of a module with a PeftBackbone")
    parser.add_argument("output", help="the merged backbone's state dict (.pt); never overwritten")
    parser.add_argument(
        "--model_class", default=None, help="e.g. ssl_lightning.methods.Classifier (default: the checkpoint's own)"
    )
    args = parser.parse_args(argv)
    cls = pl.LightningModule
    if args.model_class:
        module_name, _, name = args.model_class.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
    module = cls.load_from_checkpoint(args.checkpoint, map_location="cpu")
    path = save_merged_backbone(module, args.output)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("merged %s -> %s", args.checkpoint, path)


if __name__ == "__main__":
    main()
