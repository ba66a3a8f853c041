"""Code fingerprints of workflow jobs, derived from what their entry points import.

A job's `code` param is a hash of the library files it can run, so that editing one of
them re-runs the job and editing any other file does not. The files are found, not
listed: starting from the job's script (and, for a registry entry chosen by the study,
the entry's module), every `import selfsup...` statement is followed, those inside
functions included, with the packages that hold each module. A module added to the
library is in the fingerprint of exactly the jobs whose code imports it.

Registries name their entries by import path (selfsup.pretext.METHODS), which this walk
does not follow: a rotation job's fingerprint holds rotation.py and not simclr.py. The
workflow adds the chosen entry's module itself.

No Keras here: the workflow computes fingerprints while it parses.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent
PACKAGE = LIBRARY.name


def module_file(name: str) -> Path | None:
    """The library file of module `name` ("selfsup.data.splits"), or None when `name` is
    not a library module (a class or function imported from one)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = LIBRARY.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.cache
def imported_modules(path: Path) -> tuple[str, ...]:
    """Library modules that the Python file at `path` imports anywhere in its text."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's own package
                package = module_name(path).split(".")
                package = package[: len(package) - node.level + (path.name == "__init__.py")]
                module = ".".join([*package, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            # `from selfsup import training` imports a module; `from x import name` a name.
            names += [f"{module}.{alias.name}" for alias in node.names]
    return tuple(dict.fromkeys(n for n in names if module_file(n) is not None))


def module_name(path: Path) -> str:
    relative = path.resolve().relative_to(LIBRARY).with_suffix("")
    parts = [PACKAGE, *relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_files(*entries: str | os.PathLike) -> list[str]:
    """Library files (relative to selfsup/, sorted) reached from `entries`: module names
    ("selfsup.pretext.rotation") or paths of Python files outside the library (scripts)."""
    files: set[Path] = set()
    todo: list[Path] = []

    def reach(name: str) -> None:
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:end]))
            if path is not None and path not in files:
                files.add(path)
                todo.append(path)

    for entry in entries:
        if isinstance(entry, str) and module_file(entry) is not None:
            reach(entry)
        elif Path(entry).is_file():
            todo.append(Path(entry).resolve())
        else:
            raise ValueError(f"{entry!r} is neither a library module nor a file")
    while todo:
        for name in imported_modules(todo.pop()):
            reach(name)
    return sorted(path.relative_to(LIBRARY).as_posix() for path in files)


def _hash_files(names) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0")
        digest.update((LIBRARY / name).read_bytes())
    return digest.hexdigest()


@functools.cache
def fingerprint(*entries: str | os.PathLike) -> str:
    """A short hash of the names and contents of library_files(*entries)."""
    return _hash_files(library_files(*entries))[:16]


def library_digest() -> str:
    """A hash of every library file: what a cached study check depends on (the
    registries, encoders and methods it consults)."""
    return _hash_files(sorted(p.relative_to(LIBRARY).as_posix() for p in LIBRARY.rglob("*.py")))
