"""scripts/fewshot_compare.py: every method trained for the same wall-clock budget, tested on the same episodes."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.helpers import EXPERIMENTS, REPO

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

spec = importlib.util.spec_from_file_location("fewshot_compare", REPO / "scripts" / "fewshot_compare.py")
fewshot_compare = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fewshot_compare
spec.loader.exec_module(fewshot_compare)

FEWSHOT = EXPERIMENTS / "fewshot"


def test_parse_sets_reads_yaml_values_and_rejects_a_pair_without_equals():
    assert fewshot_compare.parse_sets(["a.b=1", "c=[1, 2]", "d=x"]) == {"a.b": 1, "c": [1, 2], "d": "x"}
    with pytest.raises(SystemExit, match="key=value"):
        fewshot_compare.parse_sets(["trainer.devices"])


def test_two_methods_at_one_budget_give_one_row_each_transductive_apart(tmp_path, capsys):
    out = tmp_path / "compare" / "results.json"
    configs = [str(FEWSHOT / "tim_digits_5w1s.yaml"), str(FEWSHOT / "simpleshot_digits_5w1s.yaml")]
    args = [*configs, "--max_time", "00:00:00:02", "--shots", "1", "5", "--episodes", "20", "--out", str(out)]
    fewshot_compare.main([*args, "--set", "data.init_args.eval_tasks_per_batch=10"])
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == ["TIM", "SimpleShot"] and [r["transductive"] for r in rows] == [True, False]
    for row in rows:
        assert row["steps"] > 0 and 1.5 <= row["train_s"] < 60  # trained for the budget, then stopped
        assert all(0.0 <= row[f"{k}-shot"][0] <= 1.0 and row[f"{k}-shot"][1] > 0 for k in (1, 5))
        assert str(tmp_path / "compare" / "runs") in row["checkpoint"]  # runs live beside the results, not in cwd
    table = capsys.readouterr().out.splitlines()
    body = [line for line in table if line.startswith("| ") and "config" not in line]
    assert body[0].startswith("| SimpleShot |") and body[1].startswith("| TIM (transductive) |")  # inductive first
    # a second call with the same --out skips what is done: the rows (and their checkpoints) are kept
    fewshot_compare.main(args)
    assert json.loads(out.read_text()) == rows
