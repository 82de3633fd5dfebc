"""Synthetic archives through the content-addressed store: a second clone copies them instead of drawing them.

A synthetic archive is a pure function of its source, its count, the seed, the decoy switch, the film size
(radiograph sources) and the generator's code, so it is stored once per such key: a *tree* entry (a JSON
list of relative paths and file digests) and one *file* entry per file, keyed by the file's own digest
(identical files are stored once). Restoring copies each file out of the store, verifying it on the way,
into a staging folder that replaces the output only when every file is in place; a damaged entry makes the
archive be generated again (and the store repaired).
"""

from __future__ import annotations

import json
import logging
import pkgutil
from pathlib import Path

import spinebench.synth as synth_package
from spinebench.codeversion import code_version
from spinebench.io import staged_directory
from spinebench.store import Store, Tally, content_key, file_digest
from spinebench.synth import COUNT_KEYS, FILM_SIZE_SOURCES, write_source

log = logging.getLogger(__name__)

TREE_KIND = "synthetic_tree"
FILE_KIND = "synthetic_file"
# Libraries whose output bytes end up in the archives (phantom filtering, PNG/JPEG/J2K encoders, xlsx).
SYNTH_LIBRARIES = ("numpy", "scipy", "pillow", "pydicom", "pylibjpeg-openjpeg", "openpyxl")


def generator_version() -> str:
    """Code version of the synthetic generator: every module of spinebench.synth and what they import."""
    modules = [f"spinebench.synth.{info.name}" for info in pkgutil.iter_modules(synth_package.__path__)]
    modules += ["spinebench.synth", "spinebench.seeding", "spinebench.vocab"]
    return code_version(modules, SYNTH_LIBRARIES)


def archive_key(source: str, counts: dict, seed: int, decoys: bool, film_size: str = "compact") -> str:
    """Store key of one source's synthetic archive (only that source's count matters, and the film size
    only for the sources it applies to)."""
    fields = {
        "source": source,
        "count": counts[COUNT_KEYS[source]],
        "seed": int(seed),
        "decoys": bool(decoys),
        "code": generator_version(),
    }
    if source in FILM_SIZE_SOURCES:
        fields["film_size"] = film_size
    return content_key(TREE_KIND, fields)


def _file_key(digest: str) -> str:
    return content_key(FILE_KIND, {"sha256": digest})


def _restore(store: Store, tree: list[dict], out_dir: Path) -> bool:
    """Copy a stored archive into `out_dir` (atomically); False, leaving `out_dir` alone, if any file is
    missing or damaged."""
    try:
        with staged_directory(out_dir) as staging:
            for entry in tree:
                if not store.get_file(FILE_KIND, _file_key(entry["sha256"]), staging / entry["path"]):
                    raise FileNotFoundError(entry["path"])
    except FileNotFoundError as missing:
        log.warning("stored synthetic archive lacks a whole %s: generating it again", missing)
        return False
    return True


def _save(store: Store, key: str, out_dir: Path) -> list[dict]:
    """Store every file of a freshly written archive, then its tree (the tree last: it promises the files)."""
    tree = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        digest = file_digest(path)
        store.put_file(FILE_KIND, _file_key(digest), path)
        tree.append({"path": path.relative_to(out_dir).as_posix(), "sha256": digest})
    store.put(TREE_KIND, key, json.dumps(tree, sort_keys=True).encode("utf-8"))
    return tree


def write_source_stored(
    store: Store,
    source: str,
    out_dir: Path,
    counts: dict,
    seed: int,
    decoys: bool,
    workers: int | None = None,
    film_size: str = "compact",
) -> bool:
    """Write the synthetic archive of `source` into `out_dir`, from the store when it holds it.

    Returns True when the archive came from the store. Refs are recorded so that `prune` keeps it while
    `out_dir` exists.
    """
    out_dir = Path(out_dir)
    key = archive_key(source, counts, seed, decoys, film_size)
    tree_tally, file_tally = Tally(), Tally()
    payload = store.get(TREE_KIND, key, tree_tally)
    tree = json.loads(payload) if payload is not None else None
    restored = tree is not None and _restore(store, tree, out_dir)
    if not restored:
        write_source(source, out_dir, counts, seed=seed, decoys=decoys, workers=workers, film_size=film_size)
        tree = _save(store, key, out_dir)
        tree_tally.keys.append(key)
    file_tally.keys.extend(_file_key(entry["sha256"]) for entry in tree)
    store.record_refs(out_dir, TREE_KIND, tree_tally)
    store.record_refs(out_dir, FILE_KIND, file_tally)
    return restored
