"""Reading a user-given JSON file (split files, subset files) with errors that name the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_file(path: Path, what: str, missing_hint: str) -> Any:
    """The parsed contents of the JSON file ``path``.

    Args:
        path: the file.
        what: how the error messages name the file (e.g. ``"split_file"``, ``"subset file"``).
        missing_hint: what the user should do when the file does not exist.

    Raises:
        FileNotFoundError: ``path`` is not a file (``"<what> <path> does not exist. <missing_hint>"``).
        ValueError: the file is not valid JSON.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist. {missing_hint}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON ({err}).") from err
