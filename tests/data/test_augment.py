"""Batched augmentation: per-sample randomness, exact geometry, reproducibility, training only."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.augment import (
    RAND_OPS,
    Augmentations,
    BatchAugmentation,
    ColorJitter,
    Cutout,
    HorizontalFlip,
    PadCrop,
    RandAugment,
    RandomAffine,
    RandomErasing,
    RandomResizedCrop,
    RandomRotation,
    RandomTranslation,
    VerticalFlip,
    affine_matrix,
    augmentation_generator,
    strong_augmentation,
    warp_affine,
    weak_augmentation,
)

OPS = {
    "hflip": HorizontalFlip(0.5),
    "vflip": VerticalFlip(0.5),
    "rotation": RandomRotation((-30, 30)),
    "translation": RandomTranslation(0.25),
    "affine": RandomAffine((-20, 20), 0.1, (0.8, 1.2), 0.2),
    "padcrop": PadCrop(4),
    "padcrop_reflect": PadCrop(4, "reflect"),
    "resized_crop": RandomResizedCrop((0.3, 1.0)),
    "jitter": ColorJitter(0.4, 0.4, 0.4, 0.1),
    "cutout": Cutout(0.5),
    "erasing": RandomErasing(p=1.0),
    "randaugment": RandAugment(2, 1.0),
    "weak": weak_augmentation(),
    "strong": strong_augmentation(),
}


def generator(step: int = 0) -> torch.Generator:
    return augmentation_generator(0, 0, step)


def images(n: int = 16, c: int = 3, size: int = 16) -> Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(OPS))
def test_identical_images_get_different_parameters(name):
    x = images(1).repeat(32, 1, 1, 1)
    out = OPS[name](x, generator())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert 0.0 <= out.min() and out.max() <= 1.0
    # torchvision v2 on a batch would give 32 equal images; ours must give many different ones
    distinct = {tuple(o.flatten().round(decimals=4).tolist()) for o in out}
    assert len(distinct) >= 2


@pytest.mark.parametrize("name", list(OPS))
def test_same_seed_and_step_reproduce_other_step_differs(name):
    x = images()
    first = OPS[name](x, generator(3))
    assert torch.equal(first, OPS[name](x, generator(3)))
    assert not torch.equal(first, OPS[name](x, generator(4)))


@pytest.mark.parametrize("channels", [1, 3])
def test_all_ops_handle_grey_and_colour(channels):
    x = images(8, channels, 8)
    for name, op in OPS.items():
        assert op(x, generator()).shape == x.shape, name


def test_horizontal_flip_on_known_image():
    x = torch.zeros(2, 1, 4, 4)
    x[:, :, 1, 0] = 1.0  # a dot on the left edge
    out = HorizontalFlip(p=1.0)(x, generator())
    assert out[0, 0, 1, 3] == 1.0 and out.sum() == 2.0
    assert torch.equal(out, x.flip(-1))
    assert torch.equal(HorizontalFlip(p=0.0)(x, generator()), x)


def test_rotation_by_90_degrees_matches_rot90_counter_clockwise():
    x = images(4, 3, 9)
    out = RandomRotation((90.0, 90.0))(x, generator())
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    out = RandomRotation((-90.0, -90.0))(x, generator())
    torch.testing.assert_close(out, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_rotation_by_180_on_non_square_image_flips_both_axes():
    x = torch.rand(2, 1, 6, 10)
    out = RandomRotation((180.0, 180.0))(x, generator())
    torch.testing.assert_close(out, x.flip(-1).flip(-2), atol=1e-5, rtol=0)


def test_known_dot_rotates_to_expected_pixel():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 4] = 1.0  # right of centre
    out = RandomRotation((90.0, 90.0))(x, generator())
    assert out[0, 0, 0, 2] == pytest.approx(1.0, abs=1e-5)  # counter-clockwise: now above centre


def test_translation_by_whole_pixels_is_exact():
    x = images(2, 1, 8)
    shift = torch.tensor([[2.0, -1.0], [2.0, -1.0]])  # right 2, up 1
    out = warp_affine(x, affine_matrix(torch.zeros(2), shift))
    torch.testing.assert_close(out[:, :, :-1, 2:], x[:, :, 1:, :-2], atol=1e-6, rtol=0)
    assert out[:, :, :, :2].abs().max() == 0 and out[:, :, -1].abs().max() == 0


def test_pad_crop_outputs_are_integer_shifts_of_the_input():
    x = images(16, 1, 8)
    out = PadCrop(2)(x, generator())
    padded = torch.nn.functional.pad(x, [2] * 4)
    for image, source in zip(out, padded, strict=True):
        windows = [source[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(image, w) for w in windows)


def test_zero_probability_or_zero_range_is_identity():
    x = images()
    for op in [
        RandomRotation((0, 0)),
        RandomTranslation(0.0),
        PadCrop(0),
        RandomAffine(),
        ColorJitter(),
        Cutout(4, p=0.0),
        RandomErasing(p=0.0),
        RandomRotation((-30, 30), p=0.0),
        RandAugment(num_ops=0),
    ]:
        torch.testing.assert_close(op(x, generator()), x, atol=1e-5, rtol=0, msg=repr(op))


@pytest.mark.parametrize("name", RAND_OPS)
def test_each_randaugment_op_runs_and_stays_in_range(name):
    x = images(8, 3, 8)
    out = RandAugment(num_ops=1, magnitude=1.0, ops=[name])(x, generator())
    assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0
    if name != "identity":
        assert not torch.equal(out, x)


def test_cutout_fills_a_square_of_the_given_size():
    x = torch.ones(64, 1, 20, 20)
    out = Cutout(size=4, value=0.0)(x, generator())
    filled = (out == 0).flatten(1).sum(1)
    assert filled.max() == 16 and (filled > 0).all()  # squares may be clipped at the border


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="probability"):
        HorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match="degrees"):
        RandomRotation((10, -10))
    with pytest.raises(ValueError, match="unknown RandAugment ops"):
        RandAugment(ops=["warp_drive"])
    with pytest.raises(ValueError, match="reflect padding"):
        PadCrop(8, "reflect")(images(2, 1, 8), generator())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_batch_device():
    x = images().cuda()
    g = augmentation_generator(0, 0, 0, device="cuda")
    for name, op in OPS.items():
        assert op(x, g).device.type == "cuda", name


class _Constant(BatchAugmentation):
    """Marks augmented images: every pixel becomes 0.25."""

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return torch.full_like(x, 0.25)


class _Recorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)
        self.seen: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        self.seen[stage].append(batch[0].clone())
        return torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_augmentation_only_in_training(chdir_tmp):
    data = DigitsDataModule(labels_per_class=5, augment=[_Constant()], normalize=False)
    model = _Recorder()
    trainer = pl.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data)
    assert all((x == 0.25).all() for x in model.seen["train"])
    val = data.datasets["val"].images[: len(model.seen["val"][0])].float() / 255
    assert torch.equal(model.seen["val"][0], val)
    test = data.datasets["test"].images[: len(model.seen["test"][0])].float() / 255
    assert torch.equal(model.seen["test"][0], test)


def test_datamodule_draws_from_seed_epoch_and_batch_index():
    data = DigitsDataModule(augment=[RandomRotation((-30, 30))], seed=3)
    x = images(4, 1, 8)
    g1 = augmentation_generator(3, 1, 5)
    g2 = augmentation_generator(3, 1, 5)
    assert torch.equal(data.train_batch_transform(x, torch.zeros(4).long(), g1)[0], Augmentations(data.augment)(x, g2))


def test_pipelines_are_configurable_from_yaml_like_config():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DigitsDataModule, "data")
    config = parser.parse_object(
        {
            "data": {
                "augment": [
                    {"class_path": "ssl_lightning.data.augment.StrongAugmentation", "init_args": {"flip": False}},
                    {"class_path": "ssl_lightning.data.augment.RandomErasing", "init_args": {"p": 0.3}},
                ]
            }
        }
    )
    data = parser.instantiate_classes(config).data
    strong, erasing = data.augment
    assert [type(op).__name__ for op in strong.ops] == ["_FractionPadCrop", "RandAugment", "Cutout"]
    assert erasing.p == 0.3
    assert [type(op).__name__ for op in strong_augmentation(cutout=0).ops] == [
        "HorizontalFlip",
        "_FractionPadCrop",
        "RandAugment",
    ]
