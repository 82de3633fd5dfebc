"""Inventories of extracted source folders, so that Snakemake notices a file changed inside one.

Snakemake dates a folder input by the folder's own mtime (or a `.snakemake_timestamp` file in it), which an
edit of a file deeper down does not change: a film replaced inside an extracted VinDr folder would never
rerun anything. The workflow therefore declares, for a source read from a folder, an inventory file listing
every file's relative path, size and mtime, rewritten only when that listing changed. Its mtime then moves
exactly when the folder's content may have changed; the content-addressed store (spinebench.store) makes
the rerun cost only the files whose bytes really changed.

Walking the folder costs a stat per file (about a second for the real RSNA set's 150,000 DICOMs), paid once
per Snakemake invocation. The walk is spinebench.archive.walk_folder, the one the stages read the folder
with, so the inventory lists exactly the files they see: symbolic links inside the folder are followed, and
a link that leaves it (or is broken) raises ArchiveError here, before any job runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from spinebench.archive import walk_folder


def folder_listing(folder: str | os.PathLike) -> str:
    """Tab-separated `path size mtime_ns` lines of every file under `folder`, sorted by path.

    Files behind symbolic links are listed under the link's name with the target's size and mtime, so
    replacing a film on the disk a link points to moves the inventory too.
    """
    return "".join(f"{file.name}\t{file.size}\t{file.mtime_ns}\n" for file in walk_folder(folder))


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
