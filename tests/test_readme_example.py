"""The README's 'new method is one file' example runs as written, through the CLI."""

from __future__ import annotations

import re
import sys

import torch

from tests.helpers import EXPERIMENTS, REPO, fast_dev_run


def test_readme_subclass_example_trains(chdir_tmp, monkeypatch):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"```python\n# my_methods.py\n(.*?)```", readme, flags=re.S).group(1)
    (chdir_tmp / "my_methods.py").write_text(code)
    monkeypatch.syspath_prepend(str(chdir_tmp))
    sys.modules.pop("my_methods", None)
    cli = fast_dev_run(EXPERIMENTS / "fewshot" / "protonet_digits_5w1s.yaml", "--model", "my_methods.NearestNeighbour",
                       "--test_after_fit", "false")
    assert type(cli.model).__name__ == "NearestNeighbour" and cli.trainer.state.finished

    # 1-NN logits: each query scores its class by the nearest support item of that class.
    model = cli.model
    support_x, query_x = torch.randn(4, 1, 16, 16), torch.randn(3, 1, 16, 16)
    support_y = torch.tensor([0, 0, 1, 1])
    logits = model.task_logits(support_x, support_y, query_x, n_way=2)
    features = model(torch.cat([support_x, query_x]))
    distances = torch.cdist(features[4:], features[:4]) ** 2
    expected = torch.stack([-distances[:, :2].min(1).values, -distances[:, 2:].min(1).values], dim=1)
    torch.testing.assert_close(logits, expected)
