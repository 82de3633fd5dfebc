"""Where an imported model's predictions lie, what they hash to, and what its predict jobs declare as inputs.

Kept free of pandas and the readers: the workflow calls `workflow_inputs` while it parses the rules, on
every `snakemake` start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from spinebench.backends.base import BackendError
from spinebench.release import file_sha256
from spinebench.vocab import TASKS

# The backend name whose models read predictions files (spinebench.backends.imported).
IMPORTED_BACKEND = "imported"


def folder_files(folder: Path) -> list[Path]:
    """Every file under `folder` (recursively, hidden ones left out), in sorted relative-path order."""
    files = [
        file
        for file in folder.rglob("*")
        if file.is_file() and not any(part.startswith(".") for part in file.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda file: file.relative_to(folder).as_posix())


def content_digest(path: Path) -> str:
    """SHA-256 of a predictions file, or for a folder the SHA-256 of its files' relative paths and
    SHA-256s: the same content gives the same digest wherever it lies."""
    if path.is_file():
        return file_sha256(path)
    listing = "".join(
        f"{file.relative_to(path).as_posix()}\t{file_sha256(file)}\n" for file in folder_files(path)
    )
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def predictions_path(model_name: str, settings: Mapping, task: str) -> Path:
    """The file or folder holding `task`'s predictions: `tasks[task]`, else `path`."""
    has_path, has_tasks = settings.get("path") is not None, settings.get("tasks") is not None
    if has_path == has_tasks:
        raise BackendError(f"model {model_name!r}: give exactly one of the settings 'path' and 'tasks'")
    if has_path:
        location = settings["path"]
    else:
        tasks = settings["tasks"]
        if not isinstance(tasks, Mapping) or set(tasks) != set(TASKS):
            raise BackendError(
                f"model {model_name!r}: setting 'tasks' must map each of {', '.join(TASKS)} to a path"
            )
        location = tasks[task]
    if not isinstance(location, str) or not location:
        raise BackendError(f"model {model_name!r}: a predictions path must be a non-empty string")
    return Path(location)


def workflow_inputs(model_name: str, settings: Mapping, task: str) -> list[str]:
    """What a predict job of `model_name` reads besides the benchmark, for the rule to declare as inputs:
    for an imported model, its predictions file(s) for `task` (every file of a folder, since Snakemake sees
    only a folder's own mtime) and the readers' code; nothing for a model of any other backend.

    The readers' paths are relative to the project folder, as the rules' other code inputs are.
    """
    if settings.get("backend") != IMPORTED_BACKEND:
        return []
    location = predictions_path(model_name, settings, task)
    files = folder_files(location) if location.is_dir() else [location]
    readers = sorted(Path("spinebench/imports").glob("*.py"))
    return [str(file) for file in files + readers]
