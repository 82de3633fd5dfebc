"""Resumable prediction runs: questions -> backend -> append-only JSONL -> finalized Parquet.

The working file `results/predictions/{model}/{task}.jsonl` holds one JSON record per finished item
(question_id, fingerprint, response, error, latency_s, attempts). Each record is written and flushed as
soon as its item finishes, and the file is fsynced every `fsync_every` records, so a killed run loses at
most the items that were in flight. On start the file is read back: a torn last line (the kill hit a write)
is truncated away, records whose fingerprint is not the item's current one are ignored, and only items
without a successful current record are run. Items that failed after all retries are recorded with their
error and retried by the next run.

Fingerprints are per item: blake2b of the model fingerprint (backend + the settings that determine answers,
see `Backend.fingerprint_data`), the question id, the image id and the rendered prompt. The rendered prompt
covers the template text, the definitions switch and the question's text and options, so editing any of
them reruns exactly the affected items, while switching the split or adding questions reuses every
prediction already made.

`finalize` turns the current records into the *predictions* table of docs/contracts.md, extracting
answers with spinebench.extract and, optionally, asking a judge model about responses that no rule could
read (cached in `{task}.judge.jsonl` beside the working file, keyed by the judge's fingerprint and prompt).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spinebench.backends.base import Backend, Item, ItemResult
from spinebench.extract import extract_answer, judge_prompt, parse_judge_reply
from spinebench.prompts import question_options, render_prompt
from spinebench.vocab import LETTERS, TASKS

log = logging.getLogger(__name__)

RECORD_KEYS = ("question_id", "fingerprint", "response", "error", "latency_s", "attempts")

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("image_id", pa.string()),
        ("response", pa.string()),
        ("answer", pa.string()),
        ("extraction", pa.string()),
        ("latency_s", pa.float64()),
        ("error", pa.string()),
        ("attempts", pa.int64()),
    ]
)


class PredictionError(RuntimeError):
    """A prediction run or working file that cannot be used as is."""


def _digest(*parts: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")  # separator: ("ab", "c") and ("a", "bc") must differ
    return digest.hexdigest()


def model_fingerprint(backend: Backend) -> str:
    """Digest of the backend name and the settings that determine its answers."""
    data = {"backend": backend.backend_name, "settings": backend.fingerprint_data()}
    return _digest(json.dumps(data, sort_keys=True, default=str))


def item_fingerprint(model_fp: str, question_id: str, image_id: str, image_sha256: str, prompt: str) -> str:
    """Digest identifying one item's prediction: model, question, image (id and content) and exact prompt.

    The image's content digest (`png_sha256` of the catalog; empty where a table lacks it) makes a
    re-rendered image invalidate the predictions made on its previous rendering.
    """
    return _digest(model_fp, question_id, image_id, image_sha256, prompt)


# --- choosing the questions -------------------------------------------------------------------------


def select_questions(
    questions: pd.DataFrame, subset: pd.DataFrame | None, task: str, split: str
) -> pd.DataFrame:
    """The questions of `task` to evaluate: all (split `full`) or SpineBench-Sub's (split `subset`)."""
    if task not in TASKS:
        raise PredictionError(f"unknown task {task!r}")
    if questions["question_id"].duplicated().any():
        duplicate = questions.loc[questions["question_id"].duplicated(), "question_id"].iloc[0]
        raise PredictionError(f"question {duplicate} appears more than once in the {task} questions")
    if split == "full":
        chosen = questions
    elif split == "subset":
        if subset is None:
            raise PredictionError("split 'subset' needs the subset table")
        wanted = set(subset.loc[subset["task"] == task, "question_id"])
        unknown = sorted(wanted - set(questions["question_id"]))
        if unknown:
            raise PredictionError(f"subset question {unknown[0]} is not among the {task} questions")
        chosen = questions[questions["question_id"].isin(wanted)]
    else:
        raise PredictionError(f"unknown split {split!r}; expected 'subset' or 'full'")
    return chosen.sort_values("question_id", kind="mergesort").reset_index(drop=True)


# --- planning ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedItem:
    """One question ready to send: its prompt, options and fingerprint."""

    question_id: str
    image_id: str
    prompt: str
    options: Mapping[str, str]
    fingerprint: str


def plan_items(
    questions: pd.DataFrame,
    task: str,
    definitions: bool,
    model_fp: str,
    *,
    templates_dir: str | Path | None = None,
    definitions_path: str | Path | None = None,
) -> list[PlannedItem]:
    """Render every question's prompt and fingerprint, in question_id order."""
    planned = []
    for row in questions.sort_values("question_id", kind="mergesort").to_dict("records"):
        prompt = render_prompt(
            task, row, definitions, templates_dir=templates_dir, definitions_path=definitions_path
        )
        question_id, image_id = str(row["question_id"]), str(row["image_id"])
        planned.append(
            PlannedItem(
                question_id=question_id,
                image_id=image_id,
                prompt=prompt,
                options=question_options(row),
                fingerprint=item_fingerprint(
                    model_fp, question_id, image_id, str(row.get("png_sha256") or ""), prompt
                ),
            )
        )
    return planned


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
        if fingerprints.get(question_id) != record["fingerprint"]:
            continue
        previous = chosen.get(question_id)
        if previous is None or record["error"] is None or previous["error"] is not None:
            chosen[question_id] = record
    return chosen


def _write_lines_atomically(path: Path, records: Sequence[dict]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
    """Rewrite the working file without the records that can no longer count (stale fingerprints of planned
    questions, errors and duplicates superseded by a later or successful record). Records of questions
    outside this run are kept: another split may want them. The rewrite is atomic (temp file + rename)."""
    chosen = current_records(records, fingerprints)
    keep = [r for r in records if r["question_id"] not in fingerprints or chosen.get(r["question_id"]) is r]
    if len(keep) < len(records):
        log.info("%s: compacting %d superseded or stale records away", path, len(records) - len(keep))
        _write_lines_atomically(path, keep)


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


# --- images -----------------------------------------------------------------------------------------


class ShardImages:
    """PNG bytes of benchmark images, read from the rendered shards results/images/{source}/{shard}.parquet.

    The catalog's `source` and `shard` columns say which shard holds an image; only the shards that hold
    requested images are read, and only their image_id and png columns.
    """

    def __init__(self, catalog: pd.DataFrame, shard_paths: Sequence[str | os.PathLike]) -> None:
        self._shard_of = {
            str(image_id): (str(source), str(shard))
            for image_id, source, shard in zip(
                catalog["image_id"], catalog["source"], catalog["shard"], strict=True
            )
        }
        self._paths = {(Path(p).parent.name, Path(p).stem): Path(p) for p in shard_paths}

    def shard_of(self, image_id: str) -> tuple[str, str]:
        """(source, shard) holding the image; an error naming the image when the catalog lacks it."""
        try:
            return self._shard_of[image_id]
        except KeyError:
            raise PredictionError(f"image {image_id} is not in the catalog") from None

    def load(self, image_ids: Sequence[str]) -> dict[str, bytes]:
        """image_id -> PNG bytes for the requested images."""
        by_shard: dict[tuple[str, str], set[str]] = defaultdict(set)
        for image_id in image_ids:
            by_shard[self.shard_of(image_id)].add(image_id)
        images: dict[str, bytes] = {}
        for key, wanted in sorted(by_shard.items()):
            path = self._paths.get(key)
            if path is None:
                raise PredictionError(
                    f"image {min(wanted)} is in shard {key[0]}/{key[1]}, which is not among the image inputs"
                )
            table = pq.read_table(path, columns=["image_id", "png"])
            for image_id, png in zip(
                table.column("image_id").to_pylist(), table.column("png").to_pylist(), strict=True
            ):
                if image_id in wanted:
                    images[image_id] = png
            absent = sorted(wanted - images.keys())
            if absent:
                raise PredictionError(f"image {absent[0]} is missing from its shard {path}")
        return images


def _items(planned: Sequence[PlannedItem], task: str, images: ShardImages | None) -> Iterator[Item]:
    """Items for the backend, grouped by image shard so that each shard is read once; without `images`
    (a backend that does not look at pixels) no PNG is loaded."""
    if images is None:
        for entry in planned:
            yield Item(entry.question_id, entry.image_id, task, entry.prompt, entry.options, None)
        return
    by_shard: dict[tuple[str, str], list[PlannedItem]] = defaultdict(list)
    for entry in planned:
        by_shard[images.shard_of(entry.image_id)].append(entry)
    for key in sorted(by_shard):
        group = by_shard[key]
        pngs = images.load([entry.image_id for entry in group])
        for entry in group:
            yield Item(
                entry.question_id, entry.image_id, task, entry.prompt, entry.options, pngs[entry.image_id]
            )


# --- running ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """How a run went: planned items, reused records, and the outcome of the items it ran."""

    planned: int
    reused: int
    attempted: int
    succeeded: int
    failed: int


def run_predictions(
    questions: pd.DataFrame,
    images: ShardImages | None,
    backend: Backend,
    jsonl_path: str | os.PathLike,
    fingerprint: str,
    *,
    task: str,
    definitions: bool,
    templates_dir: str | Path | None = None,
    definitions_path: str | Path | None = None,
    fsync_every: int = 64,
    max_failed: int | None = None,
) -> RunSummary:
    """Run the backend on every question without a successful current record, appending to `jsonl_path`.

    `fingerprint` is the model fingerprint (`model_fingerprint(backend)`). Raises PredictionError when no
    question has a successful prediction after the run (a dead server or a wrong model name should fail the
    job, not produce a table of errors), and when more than `max_failed` items (None: no limit) still
    failed after all retries: the job then fails, its finished items stay in the JSONL, and the next run
    retries only the failed ones. Items that fail for good (say, refused by a content filter) are accepted
    by raising `max_failed` (params `evaluate.max_failed_items`).
    """
    jsonl_path = Path(jsonl_path)
    if backend.needs_images and images is None:
        raise PredictionError(
            f"model {backend.model_name!r} looks at the images, but no image source was given"
        )
    planned = plan_items(
        questions,
        task,
        definitions,
        fingerprint,
        templates_dir=templates_dir,
        definitions_path=definitions_path,
    )
    fingerprints = {entry.question_id: entry.fingerprint for entry in planned}
    records = read_records(jsonl_path)
    compact(jsonl_path, records, fingerprints)
    done = {qid for qid, record in current_records(records, fingerprints).items() if record["error"] is None}
    pending = [entry for entry in planned if entry.question_id not in done]
    log.info(
        "%s/%s: %d questions, %d already predicted, %d to run",
        backend.model_name,
        task,
        len(planned),
        len(done),
        len(pending),
    )
    outcome = {"succeeded": 0, "failed": 0}
    first_error: list[str] = []
    expected = {entry.question_id for entry in pending}

    with RecordWriter(jsonl_path, fsync_every) as writer:

        def record_result(result: ItemResult) -> None:
            if result.question_id not in expected:
                raise PredictionError(
                    f"backend returned item {result.question_id}, which was not pending or came twice"
                )
            expected.discard(result.question_id)
            writer.append(
                {
                    "question_id": result.question_id,
                    "fingerprint": fingerprints[result.question_id],
                    "response": result.response,
                    "error": result.error,
                    "latency_s": round(float(result.latency_s), 6),
                    "attempts": int(result.attempts),
                }
            )
            outcome["succeeded" if result.ok else "failed"] += 1
            if not result.ok and not first_error:
                first_error.append(f"{result.question_id}: {result.error}")

        if pending:
            backend.run(_items(pending, task, images if backend.needs_images else None), record_result)
    if expected:
        raise PredictionError(
            f"backend finished without answering {len(expected)} items, e.g. {min(expected)}"
        )
    summary = RunSummary(len(planned), len(done), len(pending), outcome["succeeded"], outcome["failed"])
    log.info("%s/%s: %s", backend.model_name, task, summary)
    if summary.failed:
        log.warning(
            "%s/%s: %d items failed; rerun the job to retry them", backend.model_name, task, summary.failed
        )
    if summary.attempted and summary.reused + summary.succeeded == 0:
        raise PredictionError(f"all {summary.attempted} items failed; first error: {first_error[0]}")
    if max_failed is not None and summary.failed > max_failed:
        finished = summary.reused + summary.succeeded
        raise PredictionError(
            f"{summary.failed} items failed after all retries (more than the {max_failed} allowed by "
            f"evaluate.max_failed_items); first error: {first_error[0]}. The {finished} finished items "
            f"are kept in {jsonl_path}: rerun to retry only the failed ones"
        )
    return summary


# --- finalizing -------------------------------------------------------------------------------------


@dataclass
class Judge:
    """A second backend reading the responses no extraction rule could, with its answer cache."""

    backend: Backend
    fingerprint: str  # model_fingerprint(backend)
    cache_path: Path


def _answer_text(letters: Sequence[str] | None, question_id: str) -> str | None:
    """Letters joined by ',' in letter order; an error naming the question for anything but A..E."""
    if letters is None:
        return None
    unknown = [letter for letter in letters if letter not in LETTERS]
    if unknown or not letters:
        raise PredictionError(f"question {question_id}: extraction gave invalid letters {tuple(letters)}")
    return ",".join(sorted(set(letters), key=LETTERS.index))


def judge_answers(
    judge: Judge, task: str, entries: Sequence[tuple[PlannedItem, str]]
) -> dict[str, tuple | None]:
    """question_id -> letters from the judge (None when it could not tell) for (item, response) pairs.

    Judge replies are cached by (judge fingerprint, judge prompt): rerunning, or another question with the
    same response and options, costs no request. Judge failures are cached as errors and retried next time.
    """
    prompts = {entry.question_id: judge_prompt(response, task, entry.options) for entry, response in entries}
    keys = {question_id: _digest(judge.fingerprint, prompt) for question_id, prompt in prompts.items()}
    cached = current_records(read_records(judge.cache_path), {key: key for key in keys.values()})
    missing: dict[str, Item] = {}
    for entry, _ in entries:
        key = keys[entry.question_id]
        if key not in missing and (key not in cached or cached[key]["error"] is not None):
            missing[key] = Item(key, entry.image_id, task, prompts[entry.question_id], entry.options, None)
    if missing:
        log.info("judge %s: %d responses to read", judge.backend.model_name, len(missing))
        with RecordWriter(judge.cache_path) as writer:

            def remember(result: ItemResult) -> None:
                record = {
                    "question_id": result.question_id,  # the cache key: one judge request per distinct prompt
                    "fingerprint": result.question_id,
                    "response": result.response,
                    "error": result.error,
                    "latency_s": round(float(result.latency_s), 6),
                    "attempts": int(result.attempts),
                }
                writer.append(record)
                if result.ok or result.question_id not in cached:
                    cached[result.question_id] = record

            judge.backend.run(list(missing.values()), remember)
    return {
        question_id: parse_judge_reply(cached[key]["response"], task) if key in cached else None
        for question_id, key in keys.items()
    }


def finalize(
    questions: pd.DataFrame,
    jsonl_path: str | os.PathLike,
    fingerprint: str,
    *,
    task: str,
    definitions: bool,
    judge: Judge | None = None,
    templates_dir: str | Path | None = None,
    definitions_path: str | Path | None = None,
) -> pd.DataFrame:
    """The *predictions* table (docs/contracts.md) from the current records, in question_id order."""
    planned = plan_items(
        questions,
        task,
        definitions,
        fingerprint,
        templates_dir=templates_dir,
        definitions_path=definitions_path,
    )
    records = current_records(
        read_records(jsonl_path), {entry.question_id: entry.fingerprint for entry in planned}
    )
    missing = [entry.question_id for entry in planned if entry.question_id not in records]
    if missing:
        raise PredictionError(
            f"{len(missing)} questions lack a prediction record in {jsonl_path}, e.g. {missing[0]}"
        )
    rows, unreadable = [], []
    for entry in planned:
        record = records[entry.question_id]
        row = {
            "question_id": entry.question_id,
            "image_id": entry.image_id,
            "response": record["response"],
            "answer": None,
            "extraction": "error",
            "latency_s": float(record["latency_s"]),
            "error": record["error"],
            "attempts": int(record["attempts"]),
        }
        if record["error"] is None:
            extraction = extract_answer(record["response"], task, entry.options)
            row["answer"] = _answer_text(extraction.letters, entry.question_id)
            row["extraction"] = extraction.method
            if extraction.method == "none":
                unreadable.append((entry, record["response"]))
        rows.append(row)
    if judge is not None and unreadable:
        verdicts = judge_answers(judge, task, unreadable)
        for row in rows:
            letters = verdicts.get(row["question_id"])
            if letters:
                row["answer"] = _answer_text(letters, row["question_id"])
                row["extraction"] = "judge"
    frame = pd.DataFrame(rows, columns=PREDICTIONS_SCHEMA.names)
    return frame


def write_predictions(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the finalized predictions table (deterministic, atomic)."""
    from spinebench.io import write_table

    write_table(frame, path, schema=PREDICTIONS_SCHEMA)


def jsonl_path_for(output_path: str | os.PathLike) -> Path:
    """The working file beside a predictions Parquet: {task}.parquet -> {task}.jsonl."""
    return Path(output_path).with_suffix(".jsonl")


def judge_cache_path_for(output_path: str | os.PathLike) -> Path:
    """The judge cache beside a predictions Parquet: {task}.parquet -> {task}.judge.jsonl."""
    return Path(output_path).with_suffix(".judge.jsonl")
