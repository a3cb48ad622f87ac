"""The suite's YAML: methods x labels per class x seeds, each method an experiment config plus steps.

:meth:`SuiteSpec.from_yaml` reads and validates it (unknown or missing keys are errors that
name the key), resolving every config path; see :mod:`ssl_lightning.suite` for the format.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_LABELS_KEY = "--data.init_args.labels_per_class"


@dataclass
class SelectSpec:
    """How a method chooses its labelled examples: an ``ssl-lightning-select`` config and strategy.

    The selection's DataModule must describe the training run's pool (same data, ``val_size``
    and seed; ``seed_keys`` set the data seed to the suite's seed): a run whose pool differs
    refuses the subset file (its pool fingerprint).
    """

    config: str
    strategy: str = "typiclust"
    overrides: list[str] = field(default_factory=list)
    seed_keys: list[str] = field(default_factory=lambda: ["--seed", "--data.init_args.seed"])


@dataclass
class PretrainSpec:
    """A run once per seed (shared by every label budget) whose output file the method's run loads.

    ``output_key`` tells the pretrain run where to write (e.g. ``--model.init_args.encoder_path``);
    ``checkpoint_key`` passes that file to the method's run (e.g. ``--model.init_args.backbone_checkpoint``).
    """

    config: str
    output_key: str
    checkpoint_key: str
    overrides: list[str] = field(default_factory=list)
    seed_keys: list[str] = field(default_factory=lambda: ["--seed_everything", "--data.init_args.seed"])
    output_name: str = "encoder.pt"


@dataclass
class MethodSpec:
    """One line of the plot: a config and how to set its labels per class and seed."""

    name: str
    config: str
    overrides: list[str] = field(default_factory=list)
    labels_key: str = DEFAULT_LABELS_KEY
    seed_keys: list[str] = field(default_factory=lambda: ["--seed_everything", "--data.init_args.seed"])
    labels_per_class: list[int | None] | None = None
    select: SelectSpec | None = None
    subset_key: str | None = None
    pretrain: PretrainSpec | None = None

    def __post_init__(self) -> None:
        if self.select is not None and self.subset_key is None:
            self.subset_key = self.labels_key.rsplit(".", 1)[0] + ".subset_file"


def _spec(cls: type, raw: Any, where: str, suite_path: Path) -> Any:
    """Build a spec dataclass from a YAML mapping, naming unknown and missing keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"{suite_path}: {where} must be a mapping, got {raw!r}")
    fields = cls.__dataclass_fields__
    unknown = set(raw) - set(fields) - ({"name"} if cls is MethodSpec else set())
    if unknown:
        allowed = sorted(f for f in fields if f != "name")
        raise ValueError(f"{suite_path}: {where} has unknown keys {sorted(unknown)}; allowed: {allowed}")
    required = {f for f, info in fields.items() if info.default is info.default_factory is MISSING} - {"name"}
    missing = required - set(raw)
    if missing:
        raise ValueError(f"{suite_path}: {where} needs {sorted(missing)}")
    raw = dict(raw)
    if "config" in raw:
        raw["config"] = str(resolve_config(raw["config"], suite_path))
    return raw


@dataclass
class SuiteSpec:
    """A whole suite: where it writes, its grid (labels per class x seeds) and its methods.

    Example::

        suite = SuiteSpec.from_yaml("experiments/suites/digits.yaml")
        [m.name for m in suite.methods], suite.labels_per_class, suite.seeds
    """

    output_dir: Path
    labels_per_class: list[int | None]
    seeds: list[int]
    methods: list[MethodSpec]
    metric: str = "test/acc"
    trainer_overrides: list[str] = field(default_factory=list)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SuiteSpec:
        """Read and validate a suite YAML; errors name the unknown or missing key and the method."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"suite config {path} does not exist; see experiments/suites/ for examples")
        raw = yaml.safe_load(path.read_text())
        known = {"output_dir", "labels_per_class", "seeds", "methods", "metric", "trainer_overrides"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown suite keys {sorted(unknown)}; allowed: {sorted(known)}")
        missing = {"output_dir", "labels_per_class", "seeds", "methods"} - set(raw)
        if missing:
            raise ValueError(f"{path}: missing suite keys {sorted(missing)}")
        methods = []
        for name, spec in raw["methods"].items():
            if not isinstance(spec, dict) or "config" not in spec:
                raise ValueError(f"{path}: method {name!r} needs a 'config' (path to an experiment YAML)")
            spec = _spec(MethodSpec, spec, f"method {name!r}", path)
            if spec.get("select") is not None:
                spec["select"] = SelectSpec(**_spec(SelectSpec, spec["select"], f"method {name!r} select", path))
            if spec.get("pretrain") is not None:
                spec["pretrain"] = PretrainSpec(
                    **_spec(PretrainSpec, spec["pretrain"], f"method {name!r} pretrain", path)
                )
            methods.append(MethodSpec(name=name, **spec))
        return cls(
            output_dir=Path(raw["output_dir"]),
            labels_per_class=list(raw["labels_per_class"]),
            seeds=[int(s) for s in raw["seeds"]],
            methods=methods,
            metric=raw.get("metric", "test/acc"),
            trainer_overrides=[str(a) for a in raw.get("trainer_overrides", [])],
        )


def resolve_config(config: str, suite_path: Path) -> Path:
    """A method's config path: as given (relative to the working directory), else relative to the
    suite file's folder or one of its parents (so suites run from anywhere in the repo)."""
    candidate = Path(config).expanduser()
    if candidate.is_absolute() or candidate.is_file():
        return candidate
    for folder in [suite_path.resolve().parent, *suite_path.resolve().parents]:
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"{suite_path}: method config {config} not found (relative to the working directory "
                            f"or to the suite file's folders)")


def method_labels(suite: SuiteSpec, method: MethodSpec) -> list[int | None]:
    """The labels-per-class grid of ``method``: its own when it has one, else the suite's."""
    return suite.labels_per_class if method.labels_per_class is None else method.labels_per_class
