"""``run_config``: one typed way to run a config in-process; its runs compare in TensorBoard's HParams tab."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from tensorboard.util import tensor_util

from ssl_lightning.callbacks.hparams import HParamsSummary, flatten_hparams
from ssl_lightning.cli import nested_overrides, run_config
from tests.helpers import EXPERIMENTS

TINY = {
    "trainer.max_epochs": 1,
    "trainer.limit_train_batches": 2,
    "trainer.limit_val_batches": 2,
    "trainer.limit_test_batches": 2,
    "trainer.accelerator": "cpu",
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
}


def read_hparams(log_dir: str) -> tuple[dict, list[str], dict[str, list[float]]]:
    """(hparams of the session, metric columns of the experiment, every scalar tag's values)."""
    events = EventAccumulator(log_dir)
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    hparams = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
               for name, value in start.hparams.items()}
    tags = events.PluginTagToContent("scalars")
    scalars = {tag: [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)] for tag in tags}
    return hparams, [info.name.tag for info in experiment.metric_infos], scalars


def test_fit_and_test_log_one_hparams_entry_with_the_real_metrics(chdir_tmp):
    result = run_config(EXPERIMENTS / "quickstart.yaml", overrides=TINY, test_after_fit=True)
    best_val = float(result.trainer.checkpoint_callback.best_model_score)
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert result.metrics["val/acc"] == pytest.approx(best_val)  # one epoch: the last is the best
    assert "test/acc" in result.metrics and result.model is result.trainer.lightning_module

    hparams, columns, scalars = read_hparams(result.trainer.log_dir)
    assert columns == ["hp/best_val_acc", "hp/test_acc"]
    assert scalars["hp/best_val_acc"] == [pytest.approx(best_val)]
    assert scalars["hp/test_acc"] == [pytest.approx(result.metrics["test/acc"])]
    assert "hp_metric" not in scalars  # Lightning's -1 placeholder is off
    assert not any("_instantiator" in name or "_class_path" in name for name in hparams), sorted(hparams)
    assert hparams["model/backbone/class_path"] == "ssl_lightning.nets.LeNet"
    assert hparams["data/labels_per_class"] == "None" and hparams["data/val_size"] == 300
    assert hparams["model/class_path"] == "ssl_lightning.methods.Classifier"
    assert hparams["model/optimizer/lr"] == pytest.approx(0.003) and hparams["seed"] == 0


def test_overrides_reach_nested_subclass_keys_and_none(chdir_tmp):
    csv_logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "csv"}}
    overrides = {**TINY, "--data.init_args.labels_per_class": 2, "seed_everything": 3, "trainer.logger": csv_logger}
    result = run_config(EXPERIMENTS / "quickstart.yaml", overrides=overrides, test_after_fit=False)
    assert result.datamodule.labels_per_class == 2 and "test/acc" not in result.metrics
    assert result.trainer.log_dir.startswith("csv")
    assert nested_overrides({"a.b": None, "--a.c": 1}) == {"a": {"b": None, "c": 1}}
    with pytest.raises(ValueError, match="given twice"):
        nested_overrides({"a.b": 1, "--a.b": 2})


def test_flatten_hparams_drops_cli_bookkeeping():
    params = {"_instantiator": "x", "lr": 0.1, "backbone": {"class_path": "N", "init_args": {"k": [1, 2]}}}
    assert flatten_hparams(params, "model/") == {
        "model/lr": 0.1, "model/backbone/class_path": "N", "model/backbone/k": "[1, 2]"
    }
    with pytest.raises(ValueError, match="'max' or 'min'"):
        HParamsSummary(mode="best")
