"""The ``ssl-lightning-suite`` command (the suite's format: :mod:`ssl_lightning.suite`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_lightning.suite.run import run_suite
from ssl_lightning.suite.spec import SuiteSpec


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ``ssl-lightning-suite --config SUITE.yaml [--dry_run] [--methods ...] [--seeds ...]``."""
    from ssl_lightning import suite as package  # its docstring is the format reference --help shows

    parser = argparse.ArgumentParser(prog="ssl-lightning-suite", description=package.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="suite YAML (see experiments/suites/)")
    parser.add_argument("--output_dir", default=None, help="override the suite's output_dir")
    parser.add_argument("--dry_run", action="store_true", help="list the runs that would run, run nothing")
    parser.add_argument("--methods", nargs="+", default=None, help="run only these methods of the suite")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="override the suite's seeds")
    args = parser.parse_args(argv)
    suite = SuiteSpec.from_yaml(args.config)
    if args.methods:
        unknown = sorted(set(args.methods) - {m.name for m in suite.methods})
        if unknown:
            names = [m.name for m in suite.methods]
            parser.error(f"--methods {unknown} are not in {args.config}; its methods: {names}")
        suite.methods = [m for m in suite.methods if m.name in args.methods]
    if args.output_dir:
        suite.output_dir = Path(args.output_dir)
    if args.seeds:
        suite.seeds = args.seeds
    run_suite(suite, dry_run=args.dry_run)
    print(f"results: {suite.output_dir / 'results.csv'}\ntable: {suite.output_dir / 'summary.md'}\n"
          f"plot: {suite.output_dir / 'accuracy_vs_labels.png'}")
    print((suite.output_dir / "summary.md").read_text() if (suite.output_dir / "summary.md").exists() else "")
