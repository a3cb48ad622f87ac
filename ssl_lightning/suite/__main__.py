"""``python -m ssl_lightning.suite``: the ``ssl-lightning-suite`` command."""

from ssl_lightning.suite.cli import main

main()
