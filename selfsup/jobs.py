"""Small helpers every workflow script uses."""

from __future__ import annotations

import hashlib
import json
import os
import sys


def log_to(path: str | os.PathLike) -> None:
    """Send this process's stdout and stderr, native libraries' included, to `path`."""
    stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
    for fd in (1, 2):
        os.dup2(stream.fileno(), fd)
    sys.stdout = sys.stderr = stream


def digest(value) -> str:
    """A short stable hash of a JSON-serializable value."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_json(path: str | os.PathLike, value) -> None:
    """Write JSON through a temporary file, so a killed job leaves no half file."""
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(partial, path)
