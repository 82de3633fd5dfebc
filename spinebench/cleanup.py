"""Removing the temporaries a killed run leaves behind.

Every writer in the project writes to a temporary next to its output (`.{name}.{random}.tmp`, a file or a
staging folder; `.{name}.{random}.old` for an output being replaced) and renames it into place, so a
finished output is never partial. A run killed with SIGKILL (the OOM killer, a lost node) cannot remove
its temporaries; the next run does, when it starts, under the Snakemake lock, so no other run of this
workflow can be writing them. The content-addressed store is not swept here: it may be shared by several
workflows at once, and `spinebench-store prune` removes its temporaries once they are old.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# `.{output name}.{anything}.tmp` or `.old`: the names tempfile.mkstemp/mkdtemp get from our writers.
TEMPORARY_NAME = re.compile(r"^\.[^/]+\.(?:tmp|old)$")


def stale_temporaries(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Temporaries under `roots` (folders that may not exist), each once, sorted."""
    found = []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for folder, subfolders, files in os.walk(root):
            for name in files + subfolders:
                if TEMPORARY_NAME.match(name):
                    found.append(Path(folder) / name)
            # A staging folder is removed whole: do not look inside it.
            subfolders[:] = [name for name in subfolders if not TEMPORARY_NAME.match(name)]
    return sorted(set(found))  # roots may nest


def remove_stale_temporaries(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove every temporary under `roots` and return what was removed (each logged)."""
    removed = stale_temporaries(roots)
    for path in removed:
        if not os.path.lexists(path):  # inside a staging folder removed just before
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        log.warning("removed %s, left behind by an interrupted run", path)
    return removed
