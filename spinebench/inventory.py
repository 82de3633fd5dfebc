"""Inventories of extracted source folders, so that Snakemake notices a file changed inside one.

Snakemake dates a folder input by the folder's own mtime (or a `.snakemake_timestamp` file in it), which an
edit of a file deeper down does not change: a film replaced inside an extracted VinDr folder would never
rerun anything. The workflow therefore declares, for a source read from a folder, an inventory file listing
every file's relative path, size and mtime, rewritten only when that listing changed. Its mtime then moves
exactly when the folder's content may have changed; the content-addressed store (spinebench.store) makes
the rerun cost only the files whose bytes really changed.

Walking the folder costs a stat per file (about a second for the real RSNA set's 150,000 DICOMs), paid once
per Snakemake invocation.
"""

from __future__ import annotations

import os
from pathlib import Path


def folder_listing(folder: str | os.PathLike) -> str:
    """Tab-separated `path size mtime_ns` lines of every file under `folder`, sorted by path.

    Symlinked folders are followed, as the render stage reads through them.
    """
    root = Path(folder)
    lines = []
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        subdirectories.sort()
        for name in files:
            path = Path(directory) / name
            try:
                status = path.stat()
            except OSError:  # a dangling link: the stages that read it report it
                continue
            lines.append(f"{path.relative_to(root).as_posix()}\t{status.st_size}\t{status.st_mtime_ns}")
    return "".join(f"{line}\n" for line in sorted(lines))


def write_inventory(folder: str | os.PathLike, destination: str | os.PathLike) -> str:
    """Write the inventory of `folder` to `destination` unless it already holds exactly that; returns the
    destination (the input a rule declares)."""
    listing = folder_listing(folder)
    destination = Path(destination)
    try:
        if destination.read_text(encoding="utf-8") == listing:
            return str(destination)
    except FileNotFoundError:
        pass
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    temporary.write_text(listing, encoding="utf-8")
    os.replace(temporary, destination)
    return str(destination)
