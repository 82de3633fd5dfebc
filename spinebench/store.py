"""Content-addressed store for the expensive per-item work (rendered images, embeddings, synthetic files).

Snakemake decides *which jobs* run; this store decides *which items inside a job* are computed. An entry is
named by a key: the SHA-256 of everything that determines the item's bytes (`content_key`), never a path or a
time, so a job that reruns because a file was touched, copied or checked out again finds its items here.

Layout of a store folder (one per user or shared by several clones on one filesystem)::

    objects/{kind}/{key[:2]}/{key}   immutable entries: a fixed header (magic, payload length, payload
                                     SHA-256) followed by the payload
    refs/{digest of output path}.json which entries an output file references (for `prune`), with the
                                     hits and misses of the job that last wrote it (for `stats`)

Entries are written to a unique temporary file beside their final name and renamed into place, so a reader
sees a whole entry or none, and two builds writing the same key at once both leave a complete entry. Every
read checks the length and digest in the header: a damaged entry is reported, never served, and the next
`put` of the same key replaces it. No entry is ever changed in place; `prune` only deletes entries that no
live output references and that are older than a grace period (a build still running may not have written
its refs yet).

The store never decides what an output contains: the same inputs give byte-identical outputs whether items
came from the store or were computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Environment variable naming the store folder; it wins over params `cache.dir` so that each user or cluster
# can point at its own (or a shared) store without editing the tracked params.
STORE_ENV = "SPINEBENCH_CACHE"
# Default store folder, relative to the workflow's working directory (ignored by git and DVC).
DEFAULT_STORE_DIR = ".cache/spinebench"

# Entry header: magic, payload length, payload SHA-256.
HEADER = struct.Struct(">8sQ32s")
MAGIC = b"SBSTORE1"
# Streaming copies (synthetic archive files can be GiB) move this many bytes at a time.
CHUNK = 8 << 20


class StoreError(RuntimeError):
    """A store folder that cannot be used (not a folder, not writable)."""


def content_key(kind: str, fields: Mapping) -> str:
    """The key of an item: SHA-256 of a canonical JSON encoding of its kind and determining fields."""
    document = json.dumps({"kind": kind, **fields}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def bytes_digest(data: bytes) -> str:
    """Hex SHA-256 of `data` (the digest keys are built from)."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def job_store(config: Mapping) -> Store:
    """The store a Snakemake job uses, from the workflow config (`cache.dir`, or $SPINEBENCH_CACHE).

    Read from the config rather than a rule param on purpose: where the store lives never changes an output,
    so moving it must rerun nothing.
    """
    return Store(store_location(config["cache"]["dir"]))


def store_location(configured: str | None, base: str | os.PathLike = ".") -> Path:
    """The store folder: $SPINEBENCH_CACHE, else params `cache.dir`, else `.cache/spinebench` under `base`."""
    chosen = os.environ.get(STORE_ENV) or configured or DEFAULT_STORE_DIR
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else (Path(base) / path).resolve()


@dataclass
class Tally:
    """Hits and misses of one job's lookups, and entries found damaged."""

    hits: int = 0
    misses: int = 0
    damaged: int = 0
    keys: list[str] = field(default_factory=list)

    def summary(self, kind: str) -> str:
        """One log line the benchmarks parse: `store kind=K hits=H misses=M damaged=D`."""
        return f"store kind={kind} hits={self.hits} misses={self.misses} damaged={self.damaged}"


class Store:
    """A content-addressed store folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        try:
            (self.root / "objects").mkdir(parents=True, exist_ok=True)
            (self.root / "refs").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cache folder {self.root} cannot be created: {error}") from error

    # ------------------------------------------------------------------------------------------ entries

    def entry_path(self, kind: str, key: str) -> Path:
        """Where the entry `key` of `kind` lives (two-character fan-out keeps folders small)."""
        if not kind.isidentifier() or len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a store kind and key: {kind!r}, {key!r}")
        return self.root / "objects" / kind / key[:2] / key

    def get(self, kind: str, key: str, tally: Tally | None = None) -> bytes | None:
        """The payload of an entry, or None when it is absent or damaged (a damaged entry is logged)."""
        path = self.entry_path(kind, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return self._miss(tally)
        payload, problem = _unpack(data)
        if problem:
            log.warning("cache entry %s is damaged (%s): recomputing it", path, problem)
            if tally is not None:
                tally.damaged += 1
            return self._miss(tally)
        if tally is not None:
            tally.hits += 1
            tally.keys.append(key)
        return payload

    def put(self, kind: str, key: str, payload: bytes, tally: Tally | None = None) -> None:
        """Write an entry atomically (replacing a damaged one); concurrent writers of one key are safe."""
        header = HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest())
        with _AtomicWriteHandle(self.entry_path(kind, key)) as handle:
            handle.write(header)
            handle.write(payload)
        if tally is not None:
            tally.keys.append(key)

    def get_file(self, kind: str, key: str, destination: str | os.PathLike) -> bool:
        """Copy an entry's payload to `destination`, verifying it while streaming; False if absent/damaged.

        For payloads too big to hold in memory (synthetic archive files). `destination` is only replaced
        once the whole payload has been checked.
        """
        path = self.entry_path(kind, key)
        destination = Path(destination)
        try:
            source = path.open("rb")
        except FileNotFoundError:
            return False
        with source, _AtomicFile(destination) as target:
            problem = _copy_verified(source, target.handle)
            if problem:
                target.discard()
                log.warning("cache entry %s is damaged (%s): recomputing it", path, problem)
                return False
        return True

    def put_file(self, kind: str, key: str, source: str | os.PathLike) -> None:
        """Store a file's bytes as the payload of entry `key`, streaming (two passes: digest, then copy)."""
        source = Path(source)
        size = source.stat().st_size
        digest = bytes.fromhex(file_digest(source))
        with _AtomicWriteHandle(self.entry_path(kind, key)) as handle, source.open("rb") as reader:
            handle.write(HEADER.pack(MAGIC, size, digest))
            while chunk := reader.read(CHUNK):
                handle.write(chunk)

    @staticmethod
    def _miss(tally: Tally | None) -> None:
        if tally is not None:
            tally.misses += 1
        return None

    # ------------------------------------------------------------------------------------------- refs

    def record_refs(self, output: str | os.PathLike, kind: str, tally: Tally) -> None:
        """Record that `output` references `tally.keys` (kept alive by `prune` while `output` exists), and log
        the job's `Tally.summary` line."""
        output = str(Path(output).resolve())
        document = {
            "output": output,
            "kind": kind,
            "keys": sorted(set(tally.keys)),
            "hits": tally.hits,
            "misses": tally.misses,
            "damaged": tally.damaged,
            "written": time.time(),
        }
        name = hashlib.sha256(f"{kind}\0{output}".encode()).hexdigest()
        with _AtomicWriteHandle(self.root / "refs" / f"{name}.json") as handle:
            handle.write(json.dumps(document, sort_keys=True).encode("utf-8"))
        log.info("%s", tally.summary(kind))

    def refs(self) -> Iterator[tuple[Path, dict]]:
        """Every readable refs file with its content (unreadable ones are logged and skipped)."""
        for path in sorted((self.root / "refs").glob("*.json")):
            try:
                yield path, json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                log.warning("skipping unreadable refs file %s: %s", path, error)

    def entries(self) -> Iterator[tuple[str, str, os.stat_result]]:
        """(kind, key, stat) of every entry in the store."""
        objects = self.root / "objects"
        for kind_dir in sorted(path for path in objects.iterdir() if path.is_dir()):
            for path in sorted(kind_dir.glob("??/*")):
                if not path.name.startswith("."):
                    yield kind_dir.name, path.name, path.stat()

    def temporaries(self) -> Iterator[Path]:
        """Temporary files left by writers that died before renaming them into place."""
        yield from (self.root / "objects").glob("*/??/.*.tmp")
        yield from (self.root / "refs").glob(".*.tmp")


# ------------------------------------------------------------------------------------------ reports


@dataclass
class KindStats:
    """Size and hit rate of one kind of entry."""

    entries: int = 0
    bytes: int = 0
    referenced: int = 0
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float | None:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


def store_stats(store: Store) -> dict[str, KindStats]:
    """Per kind: entries and bytes on disk, entries live outputs reference, and the hits and misses of the
    last job that wrote each live output (what a rerun of the current outputs found in the store)."""
    stats: dict[str, KindStats] = {}
    documents = live_refs(store, remove_stale=False)
    live = keys_by_kind(documents)
    for kind, key, stat in store.entries():
        entry = stats.setdefault(kind, KindStats())
        entry.entries += 1
        entry.bytes += stat.st_size
        entry.referenced += key in live.get(kind, set())
    for document in documents:
        entry = stats.setdefault(document["kind"], KindStats())
        entry.hits += int(document.get("hits", 0))
        entry.misses += int(document.get("misses", 0))
    return stats


def live_refs(store: Store, remove_stale: bool) -> list[dict]:
    """Refs of outputs that still exist; those of vanished outputs are stale (deleted with `remove_stale`)."""
    live = []
    for path, document in store.refs():
        if Path(document["output"]).exists():
            live.append(document)
        elif remove_stale:
            path.unlink(missing_ok=True)
    return live


def keys_by_kind(documents: list[dict]) -> dict[str, set[str]]:
    """The entry keys that refs documents reference, per kind."""
    keys: dict[str, set[str]] = {}
    for document in documents:
        keys.setdefault(document["kind"], set()).update(document["keys"])
    return keys


@dataclass
class PruneReport:
    """What `prune` deleted and kept."""

    deleted: int = 0
    deleted_bytes: int = 0
    kept: int = 0
    too_young: int = 0
    temporaries: int = 0


def prune(store: Store, min_age_s: float = 3600.0, now: float | None = None) -> PruneReport:
    """Delete entries no live output references, once they are older than `min_age_s` seconds.

    The grace period protects a build that is writing entries right now and has not recorded its refs yet.
    Refs of outputs that no longer exist are removed first; abandoned temporary files go too.
    """
    now = time.time() if now is None else now
    live = keys_by_kind(live_refs(store, remove_stale=True))
    report = PruneReport()
    for kind, key, stat in store.entries():
        if key in live.get(kind, set()):
            report.kept += 1
        elif now - stat.st_mtime < min_age_s:
            report.too_young += 1
        else:
            store.entry_path(kind, key).unlink(missing_ok=True)
            report.deleted += 1
            report.deleted_bytes += stat.st_size
    for path in store.temporaries():
        if now - path.stat().st_mtime >= min_age_s:
            path.unlink(missing_ok=True)
            report.temporaries += 1
    return report


# ------------------------------------------------------------------------------------- entry format


def _unpack(data: bytes) -> tuple[bytes, str | None]:
    """(payload, None) for a whole entry, else (b"", what is wrong with it)."""
    if len(data) < HEADER.size:
        return b"", f"{len(data)} bytes, shorter than the header"
    magic, length, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        return b"", "unknown header"
    payload = data[HEADER.size :]
    if len(payload) != length:
        return b"", f"payload of {len(payload)} bytes, header says {length}"
    if hashlib.sha256(payload).digest() != digest:
        return b"", "payload digest mismatch"
    return payload, None


def _copy_verified(source, target) -> str | None:
    """Copy an entry's payload from `source` to `target`; what is wrong with it, or None."""
    header = source.read(HEADER.size)
    if len(header) < HEADER.size:
        return "shorter than the header"
    magic, length, digest = HEADER.unpack(header)
    if magic != MAGIC:
        return "unknown header"
    hasher, copied = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        hasher.update(chunk)
        target.write(chunk)
        copied += len(chunk)
    if copied != length:
        return f"payload of {copied} bytes, header says {length}"
    if hasher.digest() != digest:
        return "payload digest mismatch"
    return None


class _AtomicFile:
    """A temporary file beside `path`, renamed onto it on a clean exit unless discarded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.discarded = False

    def __enter__(self) -> _AtomicFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        self.handle = os.fdopen(fd, "wb")
        return self

    def discard(self) -> None:
        self.discarded = True

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.handle.close()
        if exc_type is None and not self.discarded:
            os.chmod(self.temporary, 0o644)  # mkstemp makes 0600; a shared store is read by other users
            os.replace(self.temporary, self.path)
        else:
            os.unlink(self.temporary)


class _AtomicWriteHandle(_AtomicFile):
    """`_AtomicFile` used as `with ... as handle`: yields the writable file object itself."""

    def __enter__(self):
        return super().__enter__().handle
