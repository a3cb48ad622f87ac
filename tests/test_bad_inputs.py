"""The bad-input catalogue: every user mistake gets one message naming the problem and the fix.

Each case builds the mistake for real (files written in their real formats, real configs run
through the CLI) and asserts the exception type and the words of the message. CLI cases also
assert that the user sees one message, not a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from ssl_lightning.cli import main
from tests.helpers import EXPERIMENTS

QUICKSTART = str(EXPERIMENTS / "quickstart.yaml")


@dataclass
class Case:
    name: str
    make: Callable[[Path], Callable[[], object]]  # given tmp_path, returns the call that must fail
    error: type[BaseException]
    message: str  # regex that must match the message: the problem and the fix


def cli(*args: str) -> Callable[[Path], Callable[[], object]]:
    """A CLI call with the quickstart config; {tmp} in args is replaced by the test's tmp dir."""

    def make(tmp: Path) -> Callable[[], object]:
        return lambda: main(
            ["fit", "--config", QUICKSTART, "--trainer.fast_dev_run", "1", *(a.format(tmp=tmp) for a in args)]
        )

    return make


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- cases that need files ------------------------------------------------------------------
def incomplete_cifar(tmp: Path) -> Callable[[], object]:
    from ssl_lightning.data import CIFAR10DataModule
    from tests.conftest import write_cifar10

    root = write_cifar10(tmp / "cifar")
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    return CIFAR10DataModule(root=root).prepare_data


def corrupt_image(tmp: Path) -> Callable[[], object]:
    from PIL import Image

    from ssl_lightning.data.folder import read_image_tree

    for cls in ("a", "b"):
        (tmp / "imgs" / cls).mkdir(parents=True)
        Image.new("L", (8, 8), 255).save(tmp / "imgs" / cls / "ok.png")
    good = (tmp / "imgs" / "b" / "ok.png").read_bytes()
    (tmp / "imgs" / "b" / "broken.png").write_bytes(good[: len(good) // 2])
    return lambda: read_image_tree(tmp / "imgs")


def labels_per_class_too_large(tmp: Path) -> Callable[[], object]:
    from ssl_lightning.data import DigitsDataModule

    return lambda: DigitsDataModule(labels_per_class=500).setup("fit")


def val_size_too_large(tmp: Path) -> Callable[[], object]:
    from ssl_lightning.data import DigitsDataModule

    return lambda: DigitsDataModule(val_size=5000).setup("fit")


def episodic(n_way: int, k_shot: int, n_query: int) -> Callable[[Path], Callable[[], object]]:
    def make(tmp: Path) -> Callable[[], object]:
        from ssl_lightning.data import DigitsDataModule
        from ssl_lightning.data.episodic import EpisodicDataModule

        data = EpisodicDataModule(
            source=DigitsDataModule(val_size=0),
            class_split=(0.4, 0.3, 0.3),
            n_way=n_way,
            k_shot=k_shot,
            n_query=n_query,
        )
        return lambda: (data.setup("fit"), data.train_dataloader())

    return make


def checkpoint_of_other_model(tmp: Path) -> Callable[[], object]:
    from ssl_lightning.methods.protonet import ProtoNet
    from ssl_lightning.nets.conv4 import Conv4

    trainer = pl.Trainer(logger=False, accelerator="cpu")
    trainer.strategy.connect(ProtoNet(Conv4(num_classes=0)))
    path = tmp / "protonet.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "ssl_lightning.methods.protonet.ProtoNet"
    torch.save(checkpoint, path)
    return lambda: main(["test", "--config", QUICKSTART, "--ckpt_path", str(path)])


def subset_from_other_dataset(tmp: Path) -> Callable[[], object]:
    from ssl_lightning.data import DigitsDataModule
    from ssl_lightning.data.subset_file import save_subset

    path = save_subset(tmp / "subset.json", [0, 1, 2], dataset="CIFAR10DataModule", num_train=45000)
    return lambda: DigitsDataModule(subset_file=str(path)).setup("fit")


def text_data(train: str, val: str | None = None, **kwargs) -> Callable[[Path], Callable[[], object]]:
    def make(tmp: Path) -> Callable[[], object]:
        from ssl_lightning.data import TextClassificationDataModule

        train_file = write(tmp / "train.csv", train)
        val_file = write(tmp / "val.csv", val) if val is not None else None
        data = TextClassificationDataModule(train_file=str(train_file), val_file=val_file and str(val_file),
                                            test_file=val_file and str(val_file), **kwargs)
        return lambda: data.setup("fit")

    return make


def mismatched_backbone_checkpoint(tmp: Path) -> Callable[[], object]:
    from ssl_lightning.methods import Classifier
    from ssl_lightning.nets import Conv4, LeNet

    path = tmp / "conv4.pt"
    torch.save(Conv4(num_classes=10).state_dict(), path)
    return lambda: Classifier(LeNet(num_classes=10, in_chans=1, input_size=8, padding=2),
                              backbone_checkpoint=str(path))


def wrong_shape_backbone_checkpoint(tmp: Path) -> Callable[[], object]:
    from ssl_lightning.methods import Classifier
    from ssl_lightning.nets import LeNet

    path = tmp / "rgb_lenet.pt"
    torch.save(LeNet(num_classes=10, in_chans=3, input_size=8, padding=2).state_dict(), path)
    return lambda: Classifier(LeNet(num_classes=10, in_chans=1, input_size=8, padding=2),
                              backbone_checkpoint=str(path))


def num_classes_mismatch(tmp: Path) -> Callable[[], object]:
    return cli("--model.init_args.backbone.init_args.num_classes", "7")(tmp)


CASES = [
    Case(
        "unknown YAML key",
        cli("--model.init_args.label_smothing", "0.1"),
        SystemExit,
        r"label_smothing' is not accepted",
    ),
    Case("wrong type", cli("--trainer.max_epochs", "ten"), SystemExit, r"max_epochs"),
    Case(
        "missing data dir",
        cli("--data", "ssl_lightning.data.CIFAR10DataModule", "--data.root", "{tmp}/nowhere"),
        SystemExit,
        r"CIFAR-10 not found: looked for the folder .*nowhere/cifar-10-batches-py.*--data.download true",
    ),
    Case(
        "incomplete CIFAR files",
        incomplete_cifar,
        FileNotFoundError,
        r"incomplete: missing test_batch.*--data.download true",
    ),
    Case("corrupt image in a folder tree", corrupt_image, ValueError, r"broken\.png"),
    Case(
        "labels_per_class too large",
        labels_per_class_too_large,
        ValueError,
        r"labels_per_class=500 but class \d has only \d+ training examples. Lower labels_per_class",
    ),
    Case("val_size too large", val_size_too_large, ValueError, r"Cannot hold out 5000 of \d+ .*Choose a val_size"),
    Case(
        "n_way > classes",
        episodic(n_way=5, k_shot=1, n_query=1),
        ValueError,
        r"n_way=5 but the \w+ split has only \d classes. Lower n_way",
    ),
    Case(
        "k_shot + n_query > class size",
        episodic(n_way=2, k_shot=100, n_query=100),
        ValueError,
        r"k_shot \+ n_query = 100 \+ 100 = 200 distinct items per class are needed",
    ),
    Case(
        "negative learning rate",
        cli("--model.init_args.optimizer.init_args.lr", "-0.1"),
        SystemExit,
        r"optimizer.init_args.lr must be > 0, got -0.1",
    ),
    Case(
        "num_classes not matching the data",
        num_classes_mismatch,
        SystemExit,
        r"data has 10 classes but the backbone's head has 7.*num_classes 10",
    ),
    Case(
        "checkpoint from another model class",
        checkpoint_of_other_model,
        SystemExit,
        r"written by ssl_lightning.methods.protonet.ProtoNet but this config builds .*Classifier",
    ),
    Case(
        "missing checkpoint file",
        cli("--ckpt_path", "{tmp}/none.ckpt"),
        SystemExit,
        r"--ckpt_path .*none.ckpt does not exist",
    ),
    Case(
        "subset file of another dataset",
        subset_from_other_dataset,
        ValueError,
        r"made for CIFAR10DataModule, not DigitsDataModule",
    ),
    Case("unknown data class", cli("--data", "ssl_lightning.data.NoSuchDataModule"), SystemExit, r"NoSuchDataModule"),
    Case("empty CSV", text_data(""), ValueError, r"train.csv is empty. Expected a header .*'text', 'label'"),
    Case("missing column", text_data("review,label\ngood,pos\n", text_column="text"), ValueError,
         r"has no column 'text' .*its columns are \['review', 'label'\]. Set text_column to one of them"),
    Case("label unseen in train", text_data("text,label\na,x\nb,x\nc,y\nd,y\n", "text,label\ne,z\n"), ValueError,
         r"labels \['z'\] .* do not occur in the training data.*move examples of these labels"),
    Case("backbone checkpoint with other shapes", wrong_shape_backbone_checkpoint, ValueError,
         r"features.0.weight.*\(6, 3, 5, 5\).*\(6, 1, 5, 5\)|features.0.weight.*\(6, 1, 5, 5\).*\(6, 3, 5, 5\)"),
    Case("mismatched backbone checkpoint", mismatched_backbone_checkpoint, ValueError,
         r"conv4.pt has no tensor 'features.0.weight' \(6, 1, 5, 5\) that LeNet needs.*Check that the model config"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_message(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SSL_LIGHTNING_DEBUG", raising=False)
    call = case.make(tmp_path)
    with pytest.raises(case.error) as err:
        call()
    if case.error is SystemExit:
        assert err.value.code in (1, 2)
        stderr = capsys.readouterr().err
        assert "Traceback" not in stderr, "a user error printed a traceback"
        message = stderr
    else:
        message = str(err.value)
    assert re.search(case.message, message, flags=re.S), message


def test_catalogue_is_at_least_fifteen_cases():
    assert len(CASES) >= 15


def test_debug_flag_restores_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSL_LIGHTNING_DEBUG", "1")
    with pytest.raises(ValueError, match="optimizer.init_args.lr must be > 0"):
        main(
            [
                "fit",
                "--config",
                QUICKSTART,
                "--trainer.fast_dev_run",
                "1",
                "--model.init_args.optimizer.init_args.lr",
                "-1",
            ]
        )
