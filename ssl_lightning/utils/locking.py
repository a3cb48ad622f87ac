"""An exclusive, cross-process file lock: one process builds a shared cache, the others wait.

Used by the packaged-weights reassembly (``utils/split_packages.py``) and the decoded image cache
(``data/decoded_cache.py``): both build into a temporary folder and rename it into place, and hold
this lock around the build so that concurrent processes (DDP ranks, several runs) build once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str = "a shared cache") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing); other holders block until it is released.

    Logs once when it has to wait for another process. Where ``fcntl`` does not exist (Windows) it locks
    nothing; the callers' atomic rename still keeps a half-written build from being used.

    Args:
        path: the lock file (its contents are never read).
        what: what the lock guards, for the waiting message.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to finish building %s (%s)", what, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
