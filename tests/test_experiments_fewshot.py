"""Every few-shot YAML under experiments/fewshot/ runs (fast_dev_run) and tests, offline.

Omniglot configs run on a tiny ``<alphabet>/<character>/*.png`` tree written here (the layout
of the official ``images_background`` zip); the digits demos use scikit-learn's bundled digits;
the benchmark configs run on tiny files in each release's format (written here or by the writers
of ``tests/data/test_fewshot_benchmarks.py``), with narrow backbones, or are parsed by LightningCLI.
"""

from __future__ import annotations

import pickle
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ssl_lightning.cli import build_cli
from tests.helpers import EXPERIMENTS, fast_dev_run, run_cli

FEWSHOT = EXPERIMENTS / "fewshot"
OMNIGLOT_CONFIGS = [
    FEWSHOT / "protonet_omniglot_5w1s.yaml",
    FEWSHOT / "protonet_omniglot_20w1s.yaml",
    FEWSHOT / "maml_omniglot_5w1s.yaml",
    FEWSHOT / "maml_omniglot_20w1s.yaml",
    FEWSHOT / "fomaml_omniglot_5w1s.yaml",
    FEWSHOT / "anil_omniglot_5w1s.yaml",
    FEWSHOT / "metasgd_omniglot_5w1s.yaml",
]
DIGITS_CONFIGS = [
    FEWSHOT / f"{method}_digits_5w1s.yaml"
    for method in ("protonet", "maml", "baseline", "baselinepp", "rfs", "simpleshot", "tim", "finetune")
]
# 48 characters: with the configs' class split (0.6334, 0.106, 0.2606) and 4 rotations, the validation
# split has 5 x 4 = 20 classes, enough for 20-way episodes; 16 images each cover 1 shot + 15 queries.
ALPHABETS, CHARACTERS, IMAGES = 4, 12, 16


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def omniglot_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Omniglot background set: ``images_background/<alphabet>/<character>/<n>.png``, 105x105 binary strokes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("omniglot")
    rng = np.random.default_rng(0)
    for a in range(ALPHABETS):
        for c in range(CHARACTERS):
            folder = root / "images_background" / f"Alphabet_{a}" / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            strokes = rng.random((15, 15)) < 0.3  # the character's shape, drawn by 20 "people" with noise
            for i in range(IMAGES):
                noisy = strokes ^ (rng.random((15, 15)) < 0.05)
                pixels = np.where(np.kron(noisy, np.ones((7, 7))) > 0, 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "L").convert("1").save(folder / f"{a * 100 + c:04d}_{i + 1:02d}.png")
    return root


def _fit_then_test(config: Path, *overrides: str, validation: bool = True) -> dict[str, float]:
    if validation:
        cli = fast_dev_run(config, "--test_after_fit", "false", *overrides)
    else:
        # fast_dev_run forces 2 validation batches, but the digits demos have no validation classes (10 digits:
        # 5 to train, 5 to test): the same two training steps, without validation, and no logger.
        cli = run_cli(
            "fit", "--config", str(config), "--test_after_fit", "false", "--trainer.accelerator", "cpu",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_test_batches", "2",
            "--trainer.logger", "false", *overrides,
        )  # fmt: skip
    assert cli.trainer.state.finished
    assert cli.trainer.global_step == 2
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    assert {"test/loss", "test/acc", "test/acc_ci95"} <= set(metrics)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    return metrics


@pytest.mark.parametrize("config", OMNIGLOT_CONFIGS, ids=lambda p: p.stem)
def test_omniglot_config_fast_dev_run(config: Path, omniglot_root: Path, chdir_tmp):
    # A meta-batch of 2 and 3 queries per class keep the test fast; everything else is the config as users run it.
    _fit_then_test(
        config,
        *("--data.init_args.root", str(omniglot_root)),
        *("--data.init_args.tasks_per_batch", "2", "--data.init_args.n_query", "3"),
    )


@pytest.mark.parametrize("config", DIGITS_CONFIGS, ids=lambda p: p.stem)
def test_digits_demo_two_steps(config: Path, chdir_tmp):
    # two test batches of 5 episodes (the configs adapt up to 50 at once: per-episode fine-tuning takes ~40 s)
    _fit_then_test(config, "--data.init_args.eval_tasks_per_batch", "5", validation=False)


def test_metabaseline_digits_demo_starts_from_the_rfs_demos_checkpoint(chdir_tmp):
    """The two stages as the config's header runs them: rfs_digits_5w1s.yaml, then metabaseline_digits_5w1s.yaml
    from its last checkpoint (the config's default backbone_checkpoint path)."""
    rfs = run_cli(
        "fit", "--config", str(FEWSHOT / "rfs_digits_5w1s.yaml"), "--test_after_fit", "false",
        "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    last = Path(rfs.trainer.checkpoint_callback.last_model_path).resolve()
    assert last == Path.cwd() / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    meta = build_cli(["--config", str(FEWSHOT / "metabaseline_digits_5w1s.yaml")], run=False)
    pretrained = torch.load(last, weights_only=True)["state_dict"]
    loaded = meta.model.backbone.state_dict()
    assert loaded and all(torch.equal(v, pretrained[f"backbone.{k}"]) for k, v in loaded.items())
    _fit_then_test(FEWSHOT / "metabaseline_digits_5w1s.yaml", validation=False)


def test_every_fewshot_yaml_is_covered():
    assert {p.name for p in OMNIGLOT_CONFIGS + DIGITS_CONFIGS} <= {p.name for p in FEWSHOT.glob("*.yaml")}


def test_small_background_alphabet_split_is_class_disjoint_and_complete(tmp_path):
    """experiments/fewshot/omniglot_background_small_split.json: the 8 alphabets of images_background_small1/2,
    split by alphabet (train 5, val 1, test 2) as used for the README's Omniglot numbers."""
    from ssl_lightning.data.episodic import split_classes_from_file

    alphabets = ["Balinese", "Early_Aramaic", "Greek", "Japanese_(katakana)", "Korean", "Latin", "Sanskrit", "Tagalog"]
    names = [f"images_background/{a}/character{c:02d}" for a in alphabets for c in (1, 2)]
    split = split_classes_from_file(names, FEWSHOT / "omniglot_background_small_split.json")
    assert sorted(sum(split.values(), [])) == list(range(len(names)))  # every class, each in one split
    assert [names[i].split("/")[1] for i in split["test"]] == ["Early_Aramaic"] * 2 + ["Korean"] * 2
    assert [names[i].split("/")[1] for i in split["val"]] == ["Tagalog"] * 2


# ---- the benchmark configs of issue 19: <benchmark>_<method>_5w{1,5}s.yaml, miniimagenet_best.yaml, the
# ---- cross-domain miniimagenet_to_cub_baselinepp_5w5s.yaml and omniglot_lake_runs.yaml

BENCHMARKS = ("miniimagenet", "tieredimagenet", "cifarfs", "fc100", "cub")
METHODS = ("rfs", "baselinepp", "simpleshot", "metabaseline")
BENCHMARK_CONFIGS = sorted(
    p
    for p in (EXPERIMENTS / "fewshot").glob("*_5w?s.yaml")
    if tuple(p.stem.split("_")[:2]) in product(BENCHMARKS, METHODS)
)
ONE_SHOT = [p for p in BENCHMARK_CONFIGS if p.name.endswith("_5w1s.yaml")]
# the 1-shot configs the tests below run (their 5-shot twins differ only in k_shot); the others are parsed
RUN = {"miniimagenet_rfs", "fc100_baselinepp", "tieredimagenet_simpleshot", "miniimagenet_metabaseline"}
PARSED_ONLY = [p for p in ONE_SHOT if p.stem[: -len("_5w1s")] not in RUN] + [FEWSHOT / "miniimagenet_best.yaml"]
NARROW_RESNET12 = ("--model.init_args.backbone.init_args.widths", "[4, 8, 8, 8]")


def _yaml(config: Path) -> dict:
    return yaml.safe_load(config.read_text())


def test_each_benchmark_has_its_methods_in_1_and_5_shot_files_differing_only_in_k_shot():
    names = {p.name for p in BENCHMARK_CONFIGS}
    for bench in BENCHMARKS:
        assert {f"{bench}_rfs_5w1s.yaml", f"{bench}_baselinepp_5w1s.yaml"} <= names
    for bench in ("miniimagenet", "tieredimagenet"):
        assert {f"{bench}_metabaseline_5w1s.yaml", f"{bench}_simpleshot_5w1s.yaml"} <= names
    for one in ONE_SHOT:
        five = one.with_name(one.name.replace("_5w1s", "_5w5s"))
        one_cfg, five_cfg = _yaml(one), _yaml(five)
        assert (one_cfg["data"]["init_args"].pop("k_shot"), five_cfg["data"]["init_args"].pop("k_shot")) == (1, 5)
        assert one_cfg == five_cfg, f"{five.name} is not {one.name} with k_shot 5"
        header = one.read_text().split("\nseed_everything")[0]
        assert "Published 5w1s / 5w5s:" in header and "Budget:" in header and "--data.init_args.k_shot 5" in header


@pytest.mark.parametrize("config", PARSED_ONLY, ids=lambda p: p.stem)
def test_benchmark_config_parses_with_every_argument_known(config: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(config), "--print_config")
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["init_args"]["n_way"] == 5 and printed["data"]["init_args"]["root"]


def write_mini(root: Path, per_class: int) -> Path:
    """mini-imagenet-cache-{train,val,test}.pkl with 3 / 2 / 2 classes of ``per_class`` 84x84 images."""
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for split, (first, classes) in {"train": (0, 3), "val": (3, 2), "test": (5, 2)}.items():
        images = rng.integers(0, 256, (classes * per_class, 84, 84, 3), dtype=np.uint8)
        class_dict = {f"n{first + c:08d}": list(range(c * per_class, (c + 1) * per_class)) for c in range(classes)}
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": images, "class_dict": class_dict}, f)
    return root


def test_rfs_config_pretrains_on_base_batches_and_tests_on_miniimagenet(tmp_path, chdir_tmp):
    config = FEWSHOT / "miniimagenet_rfs_5w1s.yaml"
    _fit_then_test(
        config,
        *("--data.init_args.root", str(write_mini(tmp_path / "mini", 3)), *NARROW_RESNET12),
        *("--data.init_args.batch_size", "4", "--data.init_args.n_way", "2", "--data.init_args.n_query", "2"),
        *("--data.init_args.eval_tasks_per_batch", "4"),
    )


def test_baselinepp_config_on_fc100_built_from_cifar100(tmp_path, chdir_tmp):
    from tests.data.test_fewshot_benchmarks import write_cifar100

    write_cifar100(tmp_path)
    _fit_then_test(
        FEWSHOT / "fc100_baselinepp_5w1s.yaml",
        *("--data.init_args.root", str(tmp_path), "--data.init_args.n_query", "3"),
        *("--model.init_args.epochs", "2", "--data.init_args.eval_tasks_per_batch", "4"),  # 2 head passes, not 100
    )


def test_simpleshot_config_on_tieredimagenet_with_a_narrow_wide_resnet(tmp_path, chdir_tmp):
    from tests.data.test_fewshot_benchmarks import write_tiered

    write_tiered(tmp_path, "npz")
    cli = fast_dev_run(
        FEWSHOT / "tieredimagenet_simpleshot_5w1s.yaml",
        *("--data.init_args.root", str(tmp_path), "--data.init_args.image_size", "16", "--test_after_fit", "false"),
        *("--model.init_args.backbone.init_args.depth", "10", "--model.init_args.backbone.init_args.widen_factor", "1"),
        *("--data.init_args.batch_size", "4", "--data.init_args.n_way", "2", "--data.init_args.n_query", "2"),
    )
    assert cli.trainer.global_step == 2 and torch.isfinite(cli.model.base_mean).all()  # CL2N's base-class mean


def _fit_a_few_steps(config: Path, *overrides: str) -> tuple[Path, Path]:
    """Two training steps and one validation, as users run it: returns the run's saved config and best checkpoint."""
    cli = run_cli(
        "fit", "--config", str(config), "--test_after_fit", "false", "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false", *overrides,
    )  # fmt: skip
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.is_file()
    return Path(cli.trainer.log_dir) / "config.yaml", best


def test_metabaseline_config_starts_from_the_rfs_runs_checkpoint(tmp_path, chdir_tmp):
    mini = str(write_mini(tmp_path / "mini", 3))
    episodes = (
        "--data.init_args.n_way",
        "2",
        "--data.init_args.n_query",
        "2",
        "--data.init_args.eval_tasks_per_batch",
        "2",
    )
    _, rfs_best = _fit_a_few_steps(
        FEWSHOT / "miniimagenet_rfs_5w1s.yaml",
        *("--data.init_args.root", mini, "--data.init_args.batch_size", "4", *NARROW_RESNET12, *episodes),
    )
    args = ["--config", str(FEWSHOT / "miniimagenet_metabaseline_5w1s.yaml"), "--trainer.accelerator", "cpu"]
    args += ["--data.init_args.root", mini, *NARROW_RESNET12, "--model.init_args.backbone_checkpoint", str(rfs_best)]
    args += ["--trainer.fast_dev_run", "2", "--data.init_args.tasks_per_batch", "1", *episodes]
    cli = build_cli(args, run=False)
    pretrained = torch.load(rfs_best, weights_only=True)["state_dict"]
    loaded = cli.model.backbone.state_dict()
    assert loaded and all(torch.equal(v, pretrained[f"backbone.{k}"]) for k, v in loaded.items())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2 and cli.datamodule.train_mode == "episodes"


def test_cross_domain_config_pretrains_on_miniimagenet_and_tests_on_cub(tmp_path, chdir_tmp):
    from ssl_lightning.data.fewshot_benchmarks import CUB200DataModule
    from tests.data.test_fewshot_benchmarks import colour, save_jpeg

    run_config, best = _fit_a_few_steps(
        FEWSHOT / "miniimagenet_to_cub_baselinepp_5w5s.yaml",
        *("--data.init_args.root", str(write_mini(tmp_path / "mini", 6)), "--data.init_args.batch_size", "4"),
        *("--data.init_args.n_way", "2", "--data.init_args.n_query", "1", "--model.init_args.epochs", "2"),
        *("--data.init_args.eval_tasks_per_batch", "2"),
    )
    images = tmp_path / "cub" / "CUB_200_2011" / "images"
    for i in range(8):  # the Closer-Look split of 8 species tests on species 3 and 7
        for j in range(6):
            save_jpeg(images / f"{i:03d}.Bird" / f"{j}.jpg", colour(i, j, size=10))
    cli = run_cli(
        "test", "--config", str(run_config), "--ckpt_path", str(best), "--trainer.accelerator", "cpu",
        "--data", "ssl_lightning.data.fewshot_benchmarks.CUB200DataModule",
        "--data.init_args.root", str(tmp_path / "cub"), "--trainer.limit_test_batches", "2",
    )  # fmt: skip
    data = cli.datamodule
    assert isinstance(data, CUB200DataModule) and (data.n_way, data.k_shot, data.n_query) == (2, 5, 1)
    assert data.eval_tasks_per_batch == 2  # the run's own value, carried over with the data class swapped
    assert data.source.image_size == 84 and 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0


def test_omniglot_lake_runs_config_trains_on_background_and_tests_on_the_runs(omniglot_root, tmp_path, chdir_tmp):
    from tests.data.test_omniglot_runs import write_runs

    run_config, best = _fit_a_few_steps(
        FEWSHOT / "omniglot_lake_runs.yaml",
        *("--data.init_args.root", str(omniglot_root / "images_background")),
        *("--data.init_args.class_split", "[0.5, 0.5, 0.0]"),  # fewer base images for the base-mean pass
    )
    runs = write_runs(tmp_path / "all_runs", runs=2, ways=20, size=28)
    cli = run_cli(
        "test", "--config", str(run_config), "--ckpt_path", str(best), "--trainer.accelerator", "cpu",
        "--data", "ssl_lightning.data.OmniglotOneShotRunsDataModule",
        "--data.root", str(runs), "--data.image_size", "28",
    )  # fmt: skip
    assert torch.isfinite(cli.model.base_mean).all()  # centred by the background mean stored in the checkpoint
    assert len(cli.datamodule.runs) == 2 and 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0
