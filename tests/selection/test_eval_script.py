"""scripts/selection_eval.py prints a Markdown table with one row per strategy."""

from __future__ import annotations

import importlib.util

from tests.helpers import EXPERIMENTS, REPO


def test_eval_script_table(chdir_tmp, capsys):
    spec = importlib.util.spec_from_file_location("selection_eval", REPO / "scripts" / "selection_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main(
        [
            "--config",
            str(EXPERIMENTS / "selection" / "digits_lenet.yaml"),
            "--features",
            "pixels",
            "--budgets",
            "[20]",
            "--strategies",
            "[random,typiclust]",
            "--seeds",
            "[0,1]",
        ]
    )
    lines = table.splitlines()
    assert lines[0].startswith("| strategy (raw pixels, 1137-item pool, 360 test) | 20 labels |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["random", "typiclust"]
    for line in lines[2:]:
        mean = float(line.split("|")[2].split("±")[0])
        assert 0.3 < mean <= 1.0  # 20 labels of digits: well above chance (0.1)
    assert "Wall time" in capsys.readouterr().out
