"""Pool embeddings: one row per pool item, cached, recomputed when the weights or inputs change."""

from __future__ import annotations

import torch

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.nets import LeNet
from ssl_lightning.selection.embeddings import compute_embeddings, pool_labels


def digits() -> DigitsDataModule:
    return DigitsDataModule(val_size=300, test_size=360)


def lenet() -> LeNet:
    torch.manual_seed(0)  # test-only: a fixed random LeNet
    return LeNet(num_classes=0, in_chans=1, input_size=8, padding=2)


class CountingLeNet(LeNet):
    calls = 0

    def forward_features(self, x):
        CountingLeNet.calls += 1
        return super().forward_features(x)


def test_embeddings_match_a_direct_forward_pass(tmp_path):
    datamodule, backbone = digits(), lenet()
    result = compute_embeddings(backbone, datamodule, batch_size=100, cache_dir=tmp_path, progress=False)
    pool = datamodule.datasets["all"]
    assert result.embeddings.shape == (len(pool), 84) and result.embeddings.dtype == torch.float32
    with torch.no_grad():
        x = datamodule.standardize(datamodule.to_float(pool.images[:5]))
        torch.testing.assert_close(result.embeddings[:5], backbone.forward_features(x))
    assert backbone.training  # eval mode only while embedding
    assert pool_labels(datamodule).tolist() == pool.labels.tolist()


def test_cache_hit_on_second_call_and_invalidated_when_weights_change(tmp_path):
    CountingLeNet.calls = 0
    datamodule = digits()
    torch.manual_seed(0)
    backbone = CountingLeNet(num_classes=0, in_chans=1, input_size=8, padding=2)
    first = compute_embeddings(backbone, datamodule, batch_size=512, cache_dir=tmp_path, progress=False)
    assert not first.from_cache and first.path.is_file() and CountingLeNet.calls == 3
    second = compute_embeddings(backbone, datamodule, batch_size=512, cache_dir=tmp_path, progress=False)
    assert second.from_cache and second.key == first.key and CountingLeNet.calls == 3
    torch.testing.assert_close(second.embeddings, first.embeddings)

    with torch.no_grad():
        backbone.features[0].weight[0, 0, 0, 0] += 0.5
    changed = compute_embeddings(backbone, datamodule, batch_size=512, cache_dir=tmp_path, progress=False)
    assert not changed.from_cache and changed.key != first.key and CountingLeNet.calls == 6
    assert not torch.equal(changed.embeddings, first.embeddings)


def test_key_depends_on_data_and_input_adaptation(tmp_path):
    backbone = lenet()
    base = compute_embeddings(backbone, digits(), cache_dir=None, progress=False)
    assert base.path is None
    other_split = DigitsDataModule(val_size=300, test_size=360, seed=1)
    assert compute_embeddings(backbone, other_split, cache_dir=None, progress=False).key != base.key
    upsampled = LeNet(num_classes=0, in_chans=3, input_size=32, padding=0)
    result = compute_embeddings(upsampled, digits(), resolution=32, in_chans=3, cache_dir=tmp_path, progress=False)
    assert result.embeddings.shape == base.embeddings.shape and result.identity["resolution"] == 32
