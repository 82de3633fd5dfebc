"""Finalizing a prediction run: current records -> extracted answers (and judge verdicts) -> Parquet.

`finalize` turns the current records of the working file into the *predictions* table of
docs/contracts.md, extracting answers with spinebench.extract and, optionally, asking a judge model about
the responses no rule could read and those the rules read with low confidence (extract.JUDGED_METHODS;
cached in `{task}.judge.jsonl` beside the working file, keyed by the judge's fingerprint and prompt). The
judge's raw reply is kept in the table (`judge_response`) so that every judge decision can be audited
beside the response it read (docs/extraction.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyarrow as pa

from spinebench.backends.base import Backend, Item, ItemResult, RunStopped
from spinebench.extract import (
    JUDGED_METHODS,
    extract_answer,
    judge_prompt,
    judge_says_none,
    parse_judge_reply,
)
from spinebench.journal import (
    PredictionError,
    RecordWriter,
    current_records,
    read_records,
    redact_records,
)
from spinebench.predict import PlannedItem, _digest, plan_items
from spinebench.vocab import LETTERS

log = logging.getLogger(__name__)

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
        # The judge's raw reply for a response it read (after the judge backend's redaction); null when the
        # judge was not configured, not asked, or failed.
        ("judge_response", pa.string()),
    ]
)


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


class JudgeVerdict(NamedTuple):
    """What the judge said of one response: its letters (None when it named none) and its raw reply (None
    when it gave no reply: it failed, or a stopped run left the response unread)."""

    letters: tuple[str, ...] | None
    reply: str | None

    @property
    def says_none(self) -> bool:
        """The judge read the response and found no answer in it (`[NONE]`)."""
        return self.letters is None and judge_says_none(self.reply)


def judge_answers(
    judge: Judge, task: str, entries: Sequence[tuple[PlannedItem, str]]
) -> dict[str, JudgeVerdict]:
    """question_id -> the judge's verdict on each (item, response) pair.

    Judge replies are cached by (judge fingerprint, judge prompt): rerunning, or another question with the
    same response and options, costs no request. Judge failures are cached as errors and retried next time;
    so is a judge run the judge backend stopped early (RunStopped), which leaves one warning and the
    responses it did not read unjudged. Cached replies pass through the judge backend's `redact`.
    """
    prompts = {entry.question_id: judge_prompt(response, task, entry.options) for entry, response in entries}
    keys = {question_id: _digest(judge.fingerprint, prompt) for question_id, prompt in prompts.items()}
    records = redact_records(judge.cache_path, read_records(judge.cache_path), judge.backend.redact)
    cached = current_records(records, {key: key for key in keys.values()})
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
                    "response": None if result.response is None else judge.backend.redact(result.response),
                    "error": None if result.error is None else judge.backend.redact(result.error),
                    "latency_s": round(float(result.latency_s), 6),
                    "attempts": int(result.attempts),
                }
                writer.append(record)
                if result.ok or result.question_id not in cached:
                    cached[result.question_id] = record

            try:
                judge.backend.run(list(missing.values()), remember)
            except RunStopped as stop:
                # Judging is best effort (an unread response stays unanswered, as when the judge fails on
                # it); the warning says why, and the next finalize asks the judge again.
                log.warning(
                    "judge %s: stopped early: %s; the responses it did not read stay unjudged",
                    judge.backend.model_name,
                    stop.cause,
                )
    verdicts = {}
    for question_id, key in keys.items():
        reply = cached[key]["response"] if key in cached else None
        verdicts[question_id] = JudgeVerdict(parse_judge_reply(reply, task), reply)
    return verdicts


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
    rows, to_judge = [], []
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
            "judge_response": None,
        }
        if record["error"] is None:
            extraction = extract_answer(record["response"], task, entry.options)
            row["answer"] = _answer_text(extraction.letters, entry.question_id)
            row["extraction"] = extraction.method
            if extraction.method in JUDGED_METHODS:
                to_judge.append((entry, record["response"]))
        rows.append(row)
    if judge is not None and to_judge:
        verdicts = judge_answers(judge, task, to_judge)
        for row in rows:
            if row["question_id"] in verdicts:
                apply_verdict(row, verdicts[row["question_id"]])
    frame = pd.DataFrame(rows, columns=PREDICTIONS_SCHEMA.names)
    return frame


def apply_verdict(row: dict, verdict: JudgeVerdict) -> None:
    """Let the judge decide a row the rules could not read, or read with low confidence.

    Letters from the judge become the answer (path `judge`); a judge that finds no answer (`[NONE]`)
    leaves none (path `none`), also over a low-confidence reading, as it is the more careful reader; a
    judge that gave no reply or an unreadable one leaves the rules' answer as it was.
    """
    if verdict.reply is None:
        return
    row["judge_response"] = verdict.reply
    if verdict.letters:
        row["answer"] = _answer_text(verdict.letters, row["question_id"])
        row["extraction"] = "judge"
    elif verdict.says_none:
        row["answer"] = None
        row["extraction"] = "none"


def write_predictions(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the finalized predictions table (deterministic, atomic)."""
    from spinebench.io import write_table

    write_table(frame, path, schema=PREDICTIONS_SCHEMA)
