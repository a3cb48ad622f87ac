"""Every few-shot YAML under experiments/fewshot/ runs (fast_dev_run) and tests, offline.

Omniglot configs run on a tiny ``<alphabet>/<character>/*.png`` tree written here (the layout
of the official ``images_background`` zip); the digits demos use scikit-learn's bundled digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
DIGITS_CONFIGS = [FEWSHOT / "protonet_digits_5w1s.yaml", FEWSHOT / "maml_digits_5w1s.yaml"]
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
    _fit_then_test(config, validation=False)


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
