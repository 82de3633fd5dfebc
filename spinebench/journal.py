"""The append-only JSONL working files of prediction runs and judge caches.

`results/predictions/{model}/{task}.jsonl` holds one JSON record per finished item (question_id,
fingerprint, response, error, latency_s, attempts), written and flushed as soon as the item finishes and
fsynced every few records, so a killed run loses at most the items in flight. Reading it back truncates a torn
last line (the kill hit a write) and rejects anything else malformed with the file and line. Which record
counts for an item is decided here (`current_records`), and so is what a rewrite may drop (`compact`) and
what secrets a rewrite strips (`redact_records`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from spinebench.io import create_temporary

log = logging.getLogger(__name__)

RECORD_KEYS = ("question_id", "fingerprint", "response", "error", "latency_s", "attempts")


class PredictionError(RuntimeError):
    """A prediction run or working file that cannot be used as is."""


# --- the JSONL working file -------------------------------------------------------------------------


def _check_record(record, path: Path, line_number: int) -> dict:
    """A parsed record with the expected keys and types; a clear error naming the file line otherwise."""
    where = f"{path}:{line_number}"
    if not isinstance(record, dict):
        raise PredictionError(f"{where}: record is not a JSON object")
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise PredictionError(f"{where}: record lacks {', '.join(missing)}")
    if not isinstance(record["question_id"], str) or not isinstance(record["fingerprint"], str):
        raise PredictionError(f"{where}: question_id and fingerprint must be strings")
    if (record["response"] is None) == (record["error"] is None):
        raise PredictionError(
            f"{where}: record {record['question_id']} must carry exactly one of response, error"
        )
    return record


def read_records(path: str | os.PathLike, *, repair: bool = True) -> list[dict]:
    """Every record of a JSONL working file, in file order; [] when the file does not exist.

    A last line without its newline is a write torn by a kill: it is dropped and, with `repair`, truncated
    from the file so that the next append starts on a clean line. A bad line elsewhere cannot come from a
    kill and is an error naming the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        log.warning(
            "%s: dropping a torn last line of %d bytes (interrupted write)", path, len(data) - complete
        )
        if repair:
            with open(path, "r+b") as handle:
                handle.truncate(complete)
                handle.flush()
                os.fsync(handle.fileno())
    records = []
    for line_number, line in enumerate(data[:complete].split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PredictionError(f"{path}:{line_number}: corrupt record ({error})") from error
        records.append(_check_record(record, path, line_number))
    return records


def current_records(records: Sequence[dict], fingerprints: Mapping[str, str]) -> dict[str, dict]:
    """The record that counts for each planned question: its fingerprint matches, a success beats an error,
    and among equals the latest (last in the file) wins."""
    chosen: dict[str, dict] = {}
    for record in records:
        question_id = record["question_id"]
        if fingerprints.get(question_id) == record["fingerprint"] and _supersedes(
            record, chosen.get(question_id)
        ):
            chosen[question_id] = record
    return chosen


def _supersedes(record: Mapping, previous: Mapping | None) -> bool:
    """Whether `record`, later in the file, counts instead of `previous` for the same item: a success beats
    an error, and among equals the later wins."""
    return previous is None or record["error"] is None or previous["error"] is not None


def _write_lines_atomically(path: Path, records: Sequence[dict]) -> None:
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(_record_line(record))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def compact(path: Path, records: Sequence[dict], fingerprints: Mapping[str, str]) -> None:
    """Rewrite the working file without the records that can no longer count: errors and duplicates
    superseded by a later or successful record of the same question and fingerprint, and errors of
    fingerprints no longer planned. Successful records of other fingerprints are kept, so that flipping a
    setting back (render settings A -> B -> A change every image's fingerprint and back) asks the model
    nothing again; so are records of questions outside this run (another split may want them). The rewrite
    is atomic (temp file + rename)."""
    best: dict[tuple[str, str], dict] = {}
    for record in records:
        variant = (record["question_id"], record["fingerprint"])
        if _supersedes(record, best.get(variant)):
            best[variant] = record

    def still_counts(record: dict) -> bool:
        planned = fingerprints.get(record["question_id"], record["fingerprint"])
        return best[(record["question_id"], record["fingerprint"])] is record and (
            record["error"] is None or planned == record["fingerprint"]
        )

    keep = [record for record in records if still_counts(record)]
    if len(keep) < len(records):
        log.info("%s: compacting %d superseded or stale records away", path, len(records) - len(keep))
        _write_lines_atomically(path, keep)


def redact_records(path: Path, records: Sequence[dict], redact: Callable[[str], str]) -> list[dict]:
    """The records with `redact` applied to their response and error texts. When that changes any, the
    file is rewritten with them (atomically): a key written by an older version, or echoed before it was
    redacted, must not outlive the fix in the working file or in the tables finalized from it."""
    clean = [
        {
            **record,
            **{key: redact(record[key]) for key in ("response", "error") if isinstance(record[key], str)},
        }
        for record in records
    ]
    changed = sum(fixed != record for fixed, record in zip(clean, records, strict=True))
    if changed:
        log.warning("%s: removed secrets from %d records", path, changed)
        _write_lines_atomically(path, clean)
    return clean


def _record_line(record: Mapping) -> str:
    # One line per record: json.dumps escapes newlines, so a torn write never contains a newline.
    return json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"


class RecordWriter:
    """Appends records to a JSONL file: flushed per record, fsynced every `fsync_every` and on close."""

    def __init__(self, path: Path, fsync_every: int = 64) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8")
        self._fsync_every = max(1, fsync_every)
        self._unsynced = 0

    def append(self, record: Mapping) -> None:
        self._handle.write(_record_line(record))
        self._handle.flush()  # in the OS page cache now: survives a kill of this process
        self._unsynced += 1
        if self._unsynced >= self._fsync_every:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._handle.fileno())  # on disk: survives a machine crash
        self._unsynced = 0

    def close(self) -> None:
        if not self._handle.closed:
            self.sync()
            self._handle.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def jsonl_path_for(output_path: str | os.PathLike) -> Path:
    """The working file beside a predictions Parquet: {task}.parquet -> {task}.jsonl."""
    return Path(output_path).with_suffix(".jsonl")


def judge_cache_path_for(output_path: str | os.PathLike) -> Path:
    """The judge cache beside a predictions Parquet: {task}.parquet -> {task}.judge.jsonl."""
    return Path(output_path).with_suffix(".judge.jsonl")
