"""Multi-process correctness without GPUs: 2 CPU processes, strategy="ddp", gloo.

tests/ddp/worker.py trains a few steps under DDP and records fingerprints of what each rank saw;
this test checks: training data differs between ranks, the evaluation set is the full fixed set
split across ranks, logged metrics are synchronized, checkpoints are written once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp.worker import build, fingerprint
from tests.helpers import REPO

SYNCED = ["val/acc", "val/loss", "train/loss", "train/acc"]


def run_ddp_script(script: str, out: Path, *args: str) -> None:
    """Run ``tests/ddp/<script>`` (it starts its own 2-process DDP run) with ``out`` as its output folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "ddp" / script), *args],
        cwd=out, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def run_worker(kind: str, out: Path, accelerator: str = "cpu") -> tuple[dict, dict]:
    run_ddp_script("worker.py", out, kind, str(out), accelerator)
    return tuple(json.loads((out / f"{kind}_rank{r}.json").read_text()) for r in (0, 1))  # type: ignore[return-value]


def expected_eval_fingerprints(kind: str) -> set[str]:
    """The full fixed evaluation set, computed in this single process."""
    _, data = build(kind)
    data.setup("fit")
    seen = set()
    for batch in data.val_dataloader():
        batch = data.on_after_batch_transfer(batch, 0)
        seen |= {fingerprint(item) for item in batch[0]}
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "episodic"])
def test_ddp_two_cpu_processes(kind, tmp_path):
    rank0, rank1 = run_worker(kind, tmp_path)
    assert (rank0["rank"], rank1["rank"], rank0["world_size"]) == (0, 1, 2)

    train0, train1 = set(rank0["seen"]["train"]), set(rank1["seen"]["train"])
    assert train0 and train1 and train0.isdisjoint(train1), "ranks trained on the same items/episodes"

    val0, val1 = rank0["seen"]["val"], rank1["seen"]["val"]
    assert set(val0).isdisjoint(val1), "an evaluation item was evaluated on both ranks"
    assert set(val0) | set(val1) == expected_eval_fingerprints(kind), "evaluation set is not the full fixed set"

    for name in SYNCED:
        assert rank0["metrics"][name] == pytest.approx(rank1["metrics"][name], abs=1e-6), name

    checkpoints = sorted(p.name for p in (tmp_path / f"{kind}_ckpt").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints, checkpoints
    torch.load(tmp_path / f"{kind}_ckpt" / "last.ckpt", weights_only=True)


@pytest.mark.slow
def test_adaptive_threshold_methods_hold_equal_state_on_two_ranks(tmp_path):
    """FlexMatch, FreeMatch, SoftMatch under DDP: different samples per rank, the same state on both."""
    run_ddp_script("adaptive_worker.py", tmp_path, str(tmp_path))
    for name in ("FlexMatch", "FreeMatch", "SoftMatch"):
        rank0, rank1 = (torch.load(tmp_path / f"{name}_rank{r}.pt", weights_only=True) for r in (0, 1))
        assert rank0["world_size"] == 2
        seen0, seen1 = set(rank0["seen"].tolist()), set(rank1["seen"].tolist())
        assert seen0 and seen1 and seen0.isdisjoint(seen1), name
        assert rank0["state"] and rank0["state"].keys() == rank1["state"].keys()
        for key, value in rank0["state"].items():
            assert torch.equal(value, rank1["state"][key]), (name, key)
    # threshold 0.1 makes every prediction confident: each rank recorded both ranks' samples
    flex0, flex1 = (torch.load(tmp_path / f"FlexMatch_rank{r}.pt", weights_only=True) for r in (0, 1))
    recorded = set(torch.nonzero(flex0["state"]["selected_label"] >= 0).flatten().tolist())
    assert recorded == set(flex0["seen"].tolist()) | set(flex1["seen"].tolist())


@pytest.mark.slow
def test_momentum_methods_hold_equal_teachers_queue_and_centre_on_two_ranks(tmp_path):
    """BYOL, MoCo (keys gathered into the queue, shuffled BN), DINO (centre all-reduced) under DDP."""
    run_ddp_script("momentum_worker.py", tmp_path, str(tmp_path))
    for name in ("BYOL", "MoCo", "DINO"):
        rank0, rank1 = (torch.load(tmp_path / f"{name}_rank{r}.pt", weights_only=True) for r in (0, 1))
        assert rank0["world_size"] == 2
        assert not torch.equal(rank0["seen"], rank1["seen"]), f"{name}: both ranks trained on the same images"
        assert rank0["state"] and rank0["state"].keys() == rank1["state"].keys()
        # batch-norm running statistics are per rank, like the students' (DDP broadcasts rank 0's at each step)
        for key, value in rank0["state"].items():
            if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                assert torch.equal(value, rank1["state"][key]), (name, key)
    moco = torch.load(tmp_path / "MoCo_rank0.pt", weights_only=True)["state"]
    # 2 ranks x 2 views x 8 keys gathered per step into 40 places: 32, then the 8 that fit (back to 0), 32
    # (each rank's own 16 keys alone would give 16, 32, 0)
    assert int(moco["criterion.memory_bank.bank_ptr"]) == 32


@pytest.mark.slow
def test_text_semisup_ranks_draw_distinct_texts_and_hold_equal_flexmatch_state(tmp_path):
    """The text DataModule with an unlabelled pool + FlexMatch under DDP: disjoint unlabelled texts per rank and
    epoch, new orders per epoch, the same per-sample state on both ranks."""
    run_ddp_script("text_semisup_worker.py", tmp_path, str(tmp_path))
    rank0, rank1 = (torch.load(tmp_path / f"text_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["world_size"] == 2 and len(rank0["seen"]) == 2
    for epoch in range(2):
        assert rank0["seen"][epoch] and set(rank0["seen"][epoch]).isdisjoint(rank1["seen"][epoch])
    assert rank0["seen"][0] != rank0["seen"][1]  # set_epoch reaches the pool's sampler through Lightning's wrapper
    assert torch.equal(rank0["selected_label"], rank1["selected_label"])
    recorded = set(torch.nonzero(rank0["selected_label"] >= 0).flatten().tolist())
    # threshold 0.1 < 1/2: every prediction is confident, so each rank recorded both ranks' texts
    assert recorded == {i for rank in (rank0, rank1) for epoch in rank["seen"] for i in epoch}
