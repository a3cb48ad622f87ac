"""Project rules that are easy to break silently: YAMLs without tests, README and CI drifting apart."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.helpers import EXPERIMENTS, REPO

TEST_SOURCES = "\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py"))
README = (REPO / "README.md").read_text()
CI = (REPO / ".ci" / "run").read_text()
YAMLS = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if p.parent.name != "suites")


def readme_test_command() -> str:
    block = re.search(r"## Set up and run.*?```bash\n(.*?)```", README, flags=re.S)
    assert block, "README lost its set-up block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2, "the set-up block holds exactly two commands: quickstart and tests"
    return lines[1].split("&&")[-1].strip()


def test_readme_quickstart_command():
    block = re.search(r"## Set up and run.*?```bash\n(.*?)```", README, flags=re.S).group(1)
    assert "ssl-lightning fit --config experiments/quickstart.yaml" in block.splitlines()[0]


def test_ci_runs_exactly_the_readme_test_command():
    command = readme_test_command()
    assert command.startswith("pytest")
    ci_lines = [line.strip() for line in CI.splitlines()]
    assert command in ci_lines, f"CI does not run the README's test command {command!r}"


@pytest.mark.parametrize("config", YAMLS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_yaml_is_run_by_a_test(config):
    by_name = config.name in TEST_SOURCES
    by_glob = re.search(rf'"{config.parent.name}"\)?\.r?glob\(', TEST_SOURCES) is not None
    assert by_name or by_glob, f"no test runs {config.relative_to(REPO)}"


@pytest.mark.parametrize("config", YAMLS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_yaml_is_in_the_readme(config):
    assert str(config.relative_to(REPO)) in README or f"{config.parent.relative_to(REPO)}/" in README, (
        f"{config.relative_to(REPO)} is not mentioned in the README"
    )


@pytest.mark.parametrize("config", YAMLS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_experiment_yaml_parses(config):
    assert isinstance(yaml.safe_load(config.read_text()), dict)
