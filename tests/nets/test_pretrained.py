"""Pretrained backbones: the packaged EfficientNet-Lite0 mapping, local weight files, the contract."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_lightning.nets.pretrained import (
    TimmBackbone,
    TorchvisionBackbone,
    load_weights,
    packaged_weights_path,
    read_state_dict,
)

TINY_TIMM = "mobilenetv3_small_050"


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


# ---- an independent reference for the packaged weights -------------------------------------
# The package ships only a state dict, named after lukemelas' EfficientNet-PyTorch
# (_conv_stem, _blocks.i._expand_conv, ..., _fc); no model code. This is EfficientNet-Lite0
# written from the paper and TF's reference (Tan & Le 2019; lite: no squeeze-excitation,
# ReLU6, TF "SAME" padding, BN eps 1e-3) directly on the package's own tensor names, so it
# checks the by-order mapping into timm without sharing any code or naming with it.
LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]  # B0 stages: repeats 1,2,2,3,3,4,1


def _same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    def amount(size: int) -> int:
        return max((-(-size // stride) - 1) * stride + kernel - size, 0)

    ph, pw = amount(x.shape[-2]), amount(x.shape[-1])
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def reference_lite0(sd: dict[str, Tensor], x: Tensor) -> Tensor:
    def conv(x: Tensor, name: str, stride: int = 1, depthwise: bool = False) -> Tensor:
        w = sd[name]
        return F.conv2d(_same_pad(x, w.shape[-1], stride), w, stride=stride, groups=w.shape[0] if depthwise else 1)

    def bn(x: Tensor, p: str) -> Tensor:
        return F.batch_norm(
            x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-3
        )

    x = F.relu6(bn(conv(x, "_conv_stem.weight", 2), "_bn0"))
    for i, stride in enumerate(LITE0_STRIDES):
        p, inputs = f"_blocks.{i}", x
        if f"{p}._expand_conv.weight" in sd:
            x = F.relu6(bn(conv(x, f"{p}._expand_conv.weight"), f"{p}._bn0"))
        x = F.relu6(bn(conv(x, f"{p}._depthwise_conv.weight", stride, depthwise=True), f"{p}._bn1"))
        x = bn(conv(x, f"{p}._project_conv.weight"), f"{p}._bn2")
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
    x = F.relu6(bn(conv(x, "_conv_head.weight"), "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"])


@pytest.fixture(scope="module")
def packaged() -> dict[str, Tensor]:
    return torch.load(packaged_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite0_imagenet() -> TimmBackbone:
    return TimmBackbone(pretrained="package:efficientnet_lite0", num_classes=1000, input_size=None).eval()


def test_packaged_tensors_map_one_to_one_in_order(packaged, lite0_imagenet):
    mapped = list(lite0_imagenet.model.state_dict().values()) + list(lite0_imagenet.head.state_dict().values())
    assert len(mapped) == len(packaged) == 296
    for (name, original), copy in zip(packaged.items(), mapped, strict=True):
        assert torch.equal(original, copy), name


def test_packaged_mapping_reproduces_the_reference_forward(packaged, lite0_imagenet):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mapped = lite0_imagenet.forward_head(
            lite0_imagenet.model.forward_head(lite0_imagenet.model.forward_features(x), pre_logits=True)
        )
        reference = reference_lite0(packaged, x)
    assert mapped.shape == (2, 1000)
    torch.testing.assert_close(mapped, reference, atol=1e-4, rtol=1e-4)


def test_packaged_weights_recognise_real_photos(lite0_imagenet):
    """scikit-learn ships two photos (a Chinese temple, a flower): ImageNet weights must see them."""
    from sklearn.datasets import load_sample_images

    model = TimmBackbone(pretrained="package:efficientnet_lite0", num_classes=1000, input_size=224).eval()
    top3 = []
    for photo in load_sample_images().images:
        x = torch.from_numpy(photo.copy()).permute(2, 0, 1).float().unsqueeze(0) / 255
        h, w = x.shape[-2:]
        side = min(h, w)
        x = x[..., (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
        with torch.no_grad():
            top3.append(set(model(x).topk(3).indices[0].tolist()))
    palace, bell_cote, monastery, daisy = 698, 442, 663, 985
    assert top3[0] & {palace, bell_cote, monastery}
    assert daisy in top3[1]


def test_packaged_weights_need_the_matching_architecture():
    with pytest.raises(ValueError, match="set model_name: tf_efficientnet_lite0"):
        TimmBackbone(model_name="efficientnet_lite0", pretrained="package:efficientnet_lite0")


def test_timm_backbone_contract_and_input_handling():
    model = TimmBackbone(TINY_TIMM, num_classes=7, in_chans=1, input_size=48).eval()
    x = torch.rand(4, 1, 8, 8)
    prepared = model.prepare_input(x)
    assert prepared.shape == (4, 3, 48, 48)
    mean = torch.tensor(model.model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    resized = F.interpolate(x.expand(-1, 3, -1, -1), size=(48, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(prepared, (resized - mean) / std)
    features = model.forward_features(x)
    assert features.shape == (4, model.num_features)
    assert model(x).shape == (4, 7)
    assert torch.equal(model.forward_head(features), model(x))
    model.reset_classifier(0)
    assert model.num_classes == 0 and torch.equal(model(x), features)
    with pytest.raises(ValueError, match="expects 1 input channels, got 3"):
        model(torch.rand(2, 3, 8, 8))


def test_timm_backbone_loads_a_local_timm_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model(TINY_TIMM, num_classes=7).eval()
    path = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), path)
    model = TimmBackbone(TINY_TIMM, pretrained=str(path), num_classes=7, input_size=None, normalize=False).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))  # the 7-class classifier became the head


def test_timm_backbone_round_trips_its_own_state_dict_and_replaces_a_different_head(tmp_path):
    torch.manual_seed(0)
    original = TimmBackbone(TINY_TIMM, num_classes=7, input_size=32).eval()
    path = tmp_path / "backbone.pt"
    torch.save(original.state_dict(), path)
    same = TimmBackbone(TINY_TIMM, pretrained=str(path), num_classes=7, input_size=32).eval()
    other_head = TimmBackbone(TINY_TIMM, pretrained=str(path), num_classes=3, input_size=32).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(same(x), original(x))
        assert torch.equal(other_head.forward_features(x), original.forward_features(x))
        assert other_head(x).shape == (2, 3)


def test_torchvision_backbone_loads_a_local_state_dict(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    reference = resnet18(num_classes=5).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = TorchvisionBackbone(
        "resnet18", pretrained=str(path), num_classes=5, input_size=None, normalize=False
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert model.num_features == 512 and model.forward_features(x).shape == (2, 512)
    fresh_head = TorchvisionBackbone("resnet18", pretrained=str(path), num_classes=10, input_size=None, normalize=False)
    with torch.no_grad():
        assert torch.equal(fresh_head.eval().forward_features(x), model.forward_features(x))


def test_wrong_weights_file_names_the_first_mismatching_tensor_and_both_shapes(tmp_path):
    path = tmp_path / "small.pth"
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), path)
    with pytest.raises(
        ValueError, match=r"tensor 'blocks.0.0.conv_pw.weight' has shape \(8, 16, 1, 1\) in .* but \(16, 16, 1, 1\)"
    ):
        TimmBackbone("mobilenetv3_small_100", pretrained=str(path))


def test_missing_file_and_by_order_mismatch_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_state_dict(tmp_path / "nope.pt")
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    source = {"a": torch.zeros(4, 3), "b": torch.zeros(4), "c": torch.zeros(3, 4), "d": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"tensor #2 is 'c' \(3, 4\) in src but '1.weight' \(2, 4\)"):
        load_weights(target, source, "src", by_order=True)


def test_channels_last_gives_the_same_outputs_and_interchangeable_weights(tmp_path):
    torch.manual_seed(0)
    plain = TimmBackbone(TINY_TIMM, num_classes=4, input_size=40).eval()
    path = tmp_path / "plain.pt"
    torch.save(plain.state_dict(), path)
    fast = TimmBackbone(TINY_TIMM, pretrained=str(path), num_classes=4, input_size=40, channels_last=True).eval()
    assert fast.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(3, 3, 16, 16)
    assert fast.prepare_input(x).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)
    # and its weights load back into a plain model (state dicts do not depend on the memory format)
    torch.save(fast.state_dict(), path)
    again = TimmBackbone(TINY_TIMM, pretrained=str(path), num_classes=4, input_size=40).eval()
    with torch.no_grad():
        assert torch.equal(again(x), plain(x))
    vision = TorchvisionBackbone("resnet18", num_classes=2, input_size=None, channels_last=True)
    assert vision.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
