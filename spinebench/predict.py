"""Resumable prediction runs: questions -> backend -> append-only JSONL -> finalized Parquet.

The working file `results/predictions/{model}/{task}.jsonl` holds one JSON record per finished item
(question_id, fingerprint, response, error, latency_s, attempts). Each record is written and flushed as
soon as its item finishes, and the file is fsynced every `fsync_every` records, so a killed run loses at
most the items that were in flight. On start the file is read back: a torn last line (the kill hit a write)
is truncated away, records whose fingerprint is not the item's current one are ignored (their successful
answers are kept, so a setting flipped back finds them again), and only items without a successful current
record are run. Items that failed after all retries are recorded with their
error and retried by the next run. A backend that gives up on a run (`RunStopped`: every request failing,
see the openai backend's failure budget) ends it with one summary; what finished stays in the file.

Every response and error text is passed through the backend's `redact` when it is written, and the records
read back are too (the file is rewritten if that removed anything), so an API key never stays in the
working file or the tables finalized from it.

Fingerprints are per item: blake2b of the model fingerprint (backend + the settings that determine answers,
see `Backend.fingerprint_data`), the question id, the image id and the rendered prompt. The rendered prompt
covers the template text, the definitions switch and the question's text and options, so editing any of
them reruns exactly the affected items, while switching the split or adding questions reuses every
prediction already made.

The working file itself is `spinebench.journal`; `spinebench.finalize` turns its current records into the
predictions table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spinebench.backends.base import Backend, Item, ItemResult, RunStopped
from spinebench.benchmark_images import ShardImages
from spinebench.journal import (
    PredictionError,
    RecordWriter,
    compact,
    current_records,
    read_records,
    redact_records,
)
from spinebench.progress import LogProgress
from spinebench.prompts import question_options, render_prompt

log = logging.getLogger(__name__)


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


def stopped_summary(
    where: str, stop: RunStopped, summary: RunSummary, not_tried: int, jsonl_path: Path
) -> str:
    """The one line ending a run the backend gave up on: the cause, then what finished, failed and was not
    tried, and that a rerun asks only the unfinished items."""
    kept = summary.reused + summary.succeeded
    return (
        f"{where}: stopped early: {stop.cause}. Of {summary.attempted} items to run, {summary.succeeded} "
        f"finished, {summary.failed} failed and {not_tried} were not tried; the {kept} answered items are "
        f"kept in {jsonl_path} and a rerun asks only the other {summary.failed + not_tried}"
    )


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
    job, not produce a table of errors), when the backend stopped the run early (RunStopped: one summary
    naming the cause), and when more than `max_failed` items (None: no limit) still failed after all
    retries. The job then fails, its finished items stay in the JSONL, and the next run retries only the
    others. Items that fail for good (say, refused by a content filter) are accepted by raising
    `max_failed` (params `evaluate.max_failed_items`).
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
    if not planned:
        # Not an error: a task can have no question (no kept image with lumbar levels, say); the
        # predictions table is then empty and the task's metrics undefined.
        log.warning("%s/%s: no question to predict", backend.model_name, task)
    fingerprints = {entry.question_id: entry.fingerprint for entry in planned}
    records = redact_records(jsonl_path, read_records(jsonl_path), backend.redact)
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
    stopped: RunStopped | None = None

    label = f"{backend.model_name}/{task}"
    with RecordWriter(jsonl_path, fsync_every) as writer, LogProgress(log, label, len(pending)) as progress:

        def record_result(result: ItemResult) -> None:
            if result.question_id not in expected:
                raise PredictionError(
                    f"backend returned item {result.question_id}, which was not pending or came twice"
                )
            expected.discard(result.question_id)
            error = None if result.error is None else backend.redact(result.error)
            writer.append(
                {
                    "question_id": result.question_id,
                    "fingerprint": fingerprints[result.question_id],
                    "response": None if result.response is None else backend.redact(result.response),
                    "error": error,
                    "latency_s": round(float(result.latency_s), 6),
                    "attempts": int(result.attempts),
                }
            )
            outcome["succeeded" if result.ok else "failed"] += 1
            progress.advance(failed=not result.ok)
            if not result.ok and not first_error:
                first_error.append(f"{result.question_id}: {error}")

        if pending:
            try:
                backend.run(_items(pending, task, images if backend.needs_images else None), record_result)
            except RunStopped as stop:
                # Raised below, outside this handler: the writer closes (and syncs) first, and no chained
                # traceback repeats the cause in the log.
                stopped = stop
    summary = RunSummary(len(planned), len(done), len(pending), outcome["succeeded"], outcome["failed"])
    if stopped is not None:
        where = f"{backend.model_name}/{task}"
        raise PredictionError(stopped_summary(where, stopped, summary, len(expected), jsonl_path))
    if expected:
        raise PredictionError(
            f"backend finished without answering {len(expected)} items, e.g. {min(expected)}"
        )
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
