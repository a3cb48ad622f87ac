"""The sample-efficiency suite: methods x labels per class x seeds, one command.

Every run is an ordinary experiment config plus overrides, trained and tested through the
same CLI as any other run and logged to TensorBoard under ``<output_dir>/tensorboard``.
Results are appended to ``<output_dir>/results.csv`` as runs finish, so an interrupted suite
resumes: re-running skips finished runs, re-runs failed or missing ones and never rewrites
earlier rows. ``summary.md`` (mean +- std over seeds) and ``accuracy_vs_labels.png`` are
derived from the CSV after every run.

Suite config::

    output_dir: runs/suites/digits
    labels_per_class: [1, 5, 10, null]     # null = all labels
    seeds: [0, 1, 2]
    methods:
      baseline:
        config: experiments/quickstart.yaml
        overrides: ["--trainer.max_epochs", "30"]
      augment:
        config: experiments/digits/lenet_10pc_augment.yaml
    metric: test/acc

    ssl-lightning-suite --config experiments/suites/digits.yaml
    ssl-lightning-suite --config experiments/suites/digits.yaml --methods lenet simclr_probe --seeds 0 1 2

Two optional steps per method, both cached under ``output_dir`` and never overwritten:

* ``select``: choose which examples to label instead of a random ``labels_per_class``. For every
  (labels, seed) the suite writes one subset file with ``ssl-lightning-select`` (budget =
  labels per class x number of classes, in total, class-agnostic) and the run trains on exactly
  those examples (``subset_key`` is set, ``labels_key`` null). "All labels" runs select nothing.
* ``pretrain``: a run (e.g. SimCLR) once per seed, shared by every label budget, whose output
  (an encoder file) is passed to the method's run through ``checkpoint_key``.

::

    methods:
      lenet+typiclust:
        config: experiments/digits/lenet_10pc.yaml
        labels_per_class: [2, 5, 10]          # this method's own grid (default: the suite's)
        select:
          config: experiments/selection/digits_effnet.yaml
          strategy: typiclust
        # subset_key default: labels_key with its last part replaced by subset_file
      simclr_probe:
        config: experiments/transfer/simclr_probe_digits.yaml
        pretrain:
          config: experiments/pretrain/simclr_digits.yaml
          overrides: ["--trainer.max_steps", "300"]
          seed_keys: ["--seed_everything", "--data.init_args.source.init_args.seed"]
          output_key: --model.init_args.encoder_path
          checkpoint_key: --model.init_args.backbone_checkpoint


Layout: :mod:`~ssl_lightning.suite.spec` (the YAML and its validation),
:mod:`~ssl_lightning.suite.run` (the grid, resuming, the select/pretrain steps, each run through
:func:`ssl_lightning.cli.run_config`), :mod:`~ssl_lightning.suite.report` (CSV, Markdown, plot),
:mod:`~ssl_lightning.suite.cli` (the ``ssl-lightning-suite`` command).
"""

from ssl_lightning.suite.cli import main
from ssl_lightning.suite.report import (
    CSV_FIELDS,
    append_result,
    labels_order,
    read_results,
    refresh_reports,
    summarize,
    write_markdown,
    write_plot,
)
from ssl_lightning.suite.run import (
    file_sha,
    finished_keys,
    pretrained_file,
    reuse_or_make,
    run_key,
    run_one,
    run_overrides,
    run_suite,
    select_request,
    subset_file,
)
from ssl_lightning.suite.spec import (
    DEFAULT_LABELS_KEY,
    MethodSpec,
    PretrainSpec,
    SelectSpec,
    SuiteSpec,
    method_labels,
    resolve_config,
)

__all__ = [
    "CSV_FIELDS",
    "DEFAULT_LABELS_KEY",
    "MethodSpec",
    "PretrainSpec",
    "SelectSpec",
    "SuiteSpec",
    "append_result",
    "file_sha",
    "finished_keys",
    "labels_order",
    "main",
    "method_labels",
    "pretrained_file",
    "read_results",
    "refresh_reports",
    "resolve_config",
    "reuse_or_make",
    "run_key",
    "run_one",
    "run_overrides",
    "run_suite",
    "select_request",
    "subset_file",
    "summarize",
    "write_markdown",
    "write_plot",
]
