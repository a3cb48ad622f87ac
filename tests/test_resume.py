"""Exact resume after a SIGKILL in the middle of an epoch, and runs that never overwrite earlier runs.

The resume tests run ``python -m ssl_lightning.cli fit`` in subprocesses: an uninterrupted run,
and a run that writes a checkpoint every 5 steps and SIGKILLs itself at step 17 (step 15 is in
the middle of epoch 1), then a run resumed from the killed run's newest ``last*.ckpt`` in a new
process. The resumed run must end with exactly the uninterrupted run's weights and metrics, and
train on exactly the same (augmented) batches after the resume, through the rest of epoch 1 and
all of epoch 2 (the samplers' next epoch must be right too).

Not covered here (see the report of issue 9): a ``max_steps`` run resumed from a checkpoint
written after the end of an epoch (Lightning then passes ``set_epoch`` the next epoch + 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from ssl_lightning.data.base import EpochSeededSampler
from ssl_lightning.data.episodic.sampling import EpisodeSampler
from ssl_lightning.data.resampling import inverse_frequency_sampler
from ssl_lightning.data.resumable import ResumableDataLoader
from tests.helpers import EXPERIMENTS, REPO, run_cli

# Written into tmp_path and added with --trainer.callbacks+=resume_callbacks.<Name> (PYTHONPATH=tmp_path).
CALLBACKS = '''
import json, os, signal

import lightning.pytorch as pl
import torch


class KillAtStep(pl.Callback):
    """SIGKILL this process once global_step reaches ``step`` (no cleanup, like an OOM kill or a lost node)."""

    def __init__(self, step: int = 17) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class Record(pl.Callback):
    """Write what each training step saw and the final weights and metrics to ``<path>.json`` / ``<path>.pt``."""

    def __init__(self, path: str = "record") -> None:
        self.path = path
        self.steps = []
        self.epoch_metrics = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:  # the previous epoch's epoch-level training metrics
            train = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
            self.epoch_metrics.append([trainer.current_epoch, train])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tensors = batch.values() if isinstance(batch, dict) else batch
        fingerprint = sum(float(t.double().sum()) for t in tensors if torch.is_tensor(t))
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.steps.append([trainer.current_epoch, batch_idx, trainer.global_step, fingerprint, float(loss)])

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(pl_module.state_dict(), self.path + ".pt")
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        with open(self.path + ".json", "w") as f:
            json.dump({"steps": self.steps, "epoch_metrics": self.epoch_metrics, "metrics": metrics}, f)
'''

MAX_STEPS, EVERY, KILL_AT, RESUMED_FROM = 30, 5, 17, 15  # 10 steps per epoch: resume in epoch 1, end in 2


def _command(config: Path, record: str, *overrides: str, kill_at: int | None = None) -> list[str]:
    kill = ["--trainer.callbacks+=resume_callbacks.KillAtStep", f"--trainer.callbacks.step={kill_at}"]
    return [
        sys.executable, "-m", "ssl_lightning.cli", "fit", "--config", str(config),
        "--trainer.accelerator=cpu", f"--trainer.max_steps={MAX_STEPS}", "--trainer.max_epochs=-1",
        "--test_after_fit=false",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.every_n_train_steps={EVERY}", "--trainer.callbacks.save_last=link",
        "--trainer.callbacks.filename=step-{step}",
        "--trainer.callbacks+=resume_callbacks.Record", f"--trainer.callbacks.path={record}",
        *(kill if kill_at is not None else []),
        *overrides,
    ]  # fmt: skip


def _start(cwd: Path, command: list[str], tmp_path: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "OMP_NUM_THREADS": "1"}
    with open(cwd / "log.txt", "w") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(process: subprocess.Popen, cwd: Path) -> int:
    return process.wait(timeout=300)


def newest_last_checkpoint(run_dir: Path) -> Path:
    """What ``--ckpt_path last`` should resume: the newest ``last*.ckpt`` of the run (Lightning's rule)."""
    candidates = [p for p in (run_dir / "checkpoints").glob("last*.ckpt") if p.exists()]
    assert candidates, f"no last*.ckpt in {run_dir}/checkpoints"
    return max(candidates, key=lambda p: p.stat().st_mtime_ns)


def _digest(directory: Path) -> dict[str, str]:
    """sha1 of every file under ``directory`` (a symlink: its target name and the bytes it points to)."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(directory))] = "-> " + os.readlink(path)
        if path.is_file():
            out[str(path.relative_to(directory)) + ("@" if path.is_symlink() else "")] = hashlib.sha1(
                path.read_bytes()
            ).hexdigest()
    return out


def _check_exact_resume(tmp_path: Path, config: Path, *overrides: str) -> None:
    (tmp_path / "resume_callbacks.py").write_text(CALLBACKS)
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    # the two independent runs share the 2 cores
    straight = _start(straight_dir, _command(config, "record", *overrides), tmp_path)
    killed = _start(killed_dir, _command(config, "record", *overrides, kill_at=KILL_AT), tmp_path)
    assert _wait(straight, straight_dir) == 0, (straight_dir / "log.txt").read_text()[-3000:]
    assert _wait(killed, killed_dir) == -signal.SIGKILL, (killed_dir / "log.txt").read_text()[-3000:]
    assert not (killed_dir / "record.pt").exists()  # it really died before the end

    first_run = killed_dir / "lightning_logs" / "version_0"
    last = newest_last_checkpoint(first_run)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == RESUMED_FROM and state["epoch"] == 1  # the middle of epoch 1
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] > 0
    before = _digest(first_run)

    resumed = _start(killed_dir, _command(config, "record", *overrides, "--ckpt_path", str(last)), tmp_path)
    assert _wait(resumed, killed_dir) == 0, (killed_dir / "log.txt").read_text()[-3000:]
    assert _digest(first_run) == before  # the resumed run wrote version_1, not into version_0
    assert (killed_dir / "lightning_logs" / "version_1" / "checkpoints").is_dir()

    expected = json.loads((straight_dir / "record.json").read_text())
    got = json.loads((killed_dir / "record.json").read_text())
    # the same batches (after augmentation), in the same order, with the same losses, from step 16 on
    assert got["steps"] == expected["steps"][RESUMED_FROM:]
    assert got["metrics"] == expected["metrics"]
    # epoch 1's training metrics (logged when epoch 2 starts) cover all of epoch 1, not only the batches
    # after the resume: the modules save their training metric states in checkpoints
    assert got["epoch_metrics"] == [e for e in expected["epoch_metrics"] if e[0] == 2]
    assert got["epoch_metrics"][0][1], "no train/ metrics were logged"
    weights, straight_weights = (torch.load(d / "record.pt", weights_only=True) for d in (killed_dir, straight_dir))
    assert weights.keys() == straight_weights.keys()
    for name, value in straight_weights.items():
        if torch.is_tensor(value):
            assert torch.equal(weights[name], value), name
        else:
            assert weights[name] == value, name


@pytest.mark.slow
def test_classifier_with_augmentation_resumes_exactly_after_sigkill(tmp_path):
    # 100 labelled digits in batches of 10: 10 steps per epoch; random affine + cutout on every batch
    _check_exact_resume(tmp_path, EXPERIMENTS / "digits" / "lenet_10pc_augment.yaml", "--data.init_args.batch_size=10")


@pytest.mark.slow
def test_protonet_resumes_exactly_after_sigkill(tmp_path):
    # 10 episodes per epoch; new episodes every epoch (seeded by seed, epoch, rank)
    _check_exact_resume(
        tmp_path, EXPERIMENTS / "fewshot" / "protonet_digits_5w1s.yaml", "--data.init_args.train_episodes=10"
    )


@pytest.mark.slow
def test_flexmatch_resumes_exactly_after_sigkill(tmp_path):
    # 1,137 unlabelled digits, 7 x 16 a step: 11 steps per epoch. FlexMatch's per-sample pseudo-labels and
    # learning effects are buffers, so the resumed run continues them; threshold 0.5 makes them move early.
    config = EXPERIMENTS / "semisup" / "flexmatch_digits.yaml"
    _check_exact_resume(tmp_path, config, "--model.init_args.threshold=0.5")
    state = torch.load(tmp_path / "straight" / "record.pt", weights_only=True)
    assert (state["selected_label"] >= 0).sum() > 0 and state["learning_effect"].sum() > 0


QUICK = ("--config", str(EXPERIMENTS / "quickstart.yaml"), "--trainer.accelerator=cpu", "--trainer.max_steps=3",
         "--trainer.limit_val_batches=1", "--test_after_fit=false", "--trainer.enable_model_summary=false")  # fmt: skip


def test_second_run_leaves_first_runs_logs_and_checkpoints_untouched(chdir_tmp):
    run_cli("fit", *QUICK)
    first = chdir_tmp / "lightning_logs" / "version_0"
    before = _digest(first)
    assert any(name.startswith("checkpoints/") for name in before) and "config.yaml" in before
    run_cli("fit", *QUICK, "--trainer.max_steps=4")
    assert _digest(first) == before
    second = _digest(chdir_tmp / "lightning_logs" / "version_1")
    assert any(name.startswith("checkpoints/") for name in second) and "config.yaml" in second


def test_ckpt_path_last_resumes_the_previous_run(chdir_tmp):
    run_cli("fit", *QUICK)
    cli = run_cli("fit", *QUICK, "--trainer.max_steps=6", "--ckpt_path=last")
    assert cli.trainer.ckpt_path is not None and "version_0" in str(cli.trainer.ckpt_path)
    assert cli.trainer.global_step == 6  # continued from step 3, did not restart
    assert (chdir_tmp / "lightning_logs" / "version_1").is_dir()  # the resumed run logs to a new version
    again = run_cli("fit", *QUICK, "--trainer.max_steps=9", "--ckpt_path=last")
    assert "version_1" in str(again.trainer.ckpt_path) and again.trainer.global_step == 9


# ---- the loader alone --------------------------------------------------------------------------------------


def _batches(loader) -> list[list[int]]:
    return [batch[0].tolist() for batch in loader]


@pytest.mark.parametrize("kind", ["permutation", "weighted"])
def test_loader_resumes_mid_epoch_with_the_rest_of_that_epoch(kind):
    dataset = TensorDataset(torch.arange(23), torch.arange(23) % 3)

    def make() -> ResumableDataLoader:
        sampler = (
            EpochSeededSampler(23, seed=4)
            if kind == "permutation"
            else inverse_frequency_sampler(dataset.tensors[1], 4)
        )
        return ResumableDataLoader(dataset, batch_size=4, sampler=sampler)

    loader = make()
    loader.sampler.set_epoch(3)
    epoch = _batches(loader)
    loader.sampler.set_epoch(3)
    iterator = iter(loader)
    head = [next(iterator)[0].tolist() for _ in range(2)]
    state = loader.state_dict()
    assert state == {"epoch": 3, "batches": 2}

    restored = make()  # a new process: fresh sampler at epoch 0
    restored.load_state_dict(state)
    assert restored.sampler.epoch == 3 and len(restored) == len(loader)  # Lightning expects the full length
    assert head + _batches(restored) == epoch
    assert restored.state_dict() == {"epoch": 3, "batches": len(epoch)}
    restored.sampler.set_epoch(4)
    loader.sampler.set_epoch(4)
    assert _batches(restored) == _batches(loader)  # later epochs are whole again


def test_state_at_the_end_of_an_epoch_skips_nothing():
    loader = ResumableDataLoader(TensorDataset(torch.arange(10)), batch_size=3, sampler=EpochSeededSampler(10, 0))
    whole = _batches(loader)
    loader.load_state_dict(loader.state_dict())
    assert loader.state_dict()["batches"] == 4 and _batches(loader) == whole


def test_episode_loader_resumes_mid_epoch():
    labels = torch.arange(60) % 6

    def make() -> ResumableDataLoader:
        sampler = EpisodeSampler(labels, n_way=3, k_shot=1, n_query=2, num_episodes=8, seed=1)
        return ResumableDataLoader(TensorDataset(torch.arange(60)), sampler=sampler, batch_size=1)

    loader = make()
    loader.sampler.set_epoch(2)
    epoch = _batches(loader)
    restored = make()
    restored.load_state_dict({"epoch": 2, "batches": 3})
    assert _batches(restored) == epoch[3:]


def test_loader_with_persistent_workers_skips_only_once():
    dataset = TensorDataset(torch.arange(12))

    def make() -> ResumableDataLoader:
        return ResumableDataLoader(
            dataset, batch_size=2, sampler=EpochSeededSampler(12, 0), num_workers=1, persistent_workers=True
        )

    reference = make()
    reference.sampler.set_epoch(1)
    epoch_1 = _batches(reference)
    reference.sampler.set_epoch(2)
    epoch_2 = _batches(reference)
    restored = make()
    restored.load_state_dict({"epoch": 1, "batches": 4})  # set_epoch before the workers prefetch indices
    assert _batches(restored) == epoch_1[4:]
    restored.sampler.set_epoch(2)
    assert _batches(restored) == epoch_2


def test_negative_batch_count_is_rejected():
    loader = ResumableDataLoader(TensorDataset(torch.arange(4)), batch_size=2)
    with pytest.raises(ValueError, match="batches >= 0"):
        loader.load_state_dict({"epoch": None, "batches": -1})
