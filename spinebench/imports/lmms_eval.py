"""Responses from lmms-eval's `--log_samples` output for the exported SpineBench tasks.

lmms-eval 0.7 writes one JSONL file per task, `{output_path}/{model}/{date}_samples_{task_name}.jsonl`
(EvaluationTracker.save_results_samples), with one record per document: `doc_id` (the document's row in the
task's split), `target` (the answer, as text), `input` (the prompt), `filtered_resps` (the response lmms-eval
scored: a string, as a SpineBench document makes one request), `resps` (the raw response, only where a
filter changed it), `doc_hash`, `token_counts`, and the values process_results returned, one key per metric.
The document itself is not kept.

A record's question is found, in this order:
1. in its metric values: the SpineBench tasks' process_results put `question_id` in each
   (spinebench.harness.lmms_eval);
2. in `doc.question_id`, for lmms-eval releases that kept the document in the record;
3. from `doc_id`, for `--predict_only` runs (they skip process_results): the Hugging Face export writes each
   split in question_id order, so `doc_id` is the position in that order. Only the full split can be mapped
   so (a reader is given the task's question table, not the subset), and each record's `target` must equal
   the answer of the question so found, which catches samples made on another benchmark build.

`path` is a samples file, or a folder searched (recursively) for the one samples file of the task, on the
full split (`spinebench_{task}`) or the subset (`spinebench_{task}_subset`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd

from spinebench.imports import RESPONSE_COLUMNS, ImportFormatError

# `{date}_samples_{task_name}.jsonl`, for the SpineBench task names of spinebench.exports.lmms_eval.
SAMPLES_NAME = re.compile(r"_samples_spinebench_(?P<task>[a-z]+?)(?P<subset>_subset)?\.jsonl$")


def samples_split(file: Path, task: str) -> str | None:
    """The split (`full`, `subset`) a samples file's name says it holds; None for a file named otherwise.
    A file named after the other task is an error."""
    match = SAMPLES_NAME.search(file.name)
    if match is None:
        return None
    if match["task"] != task:
        raise ImportFormatError(f"{file}: the samples of spinebench_{match['task']}, not of the {task} task")
    return "subset" if match["subset"] else "full"


def samples_file(path: Path, task: str) -> Path:
    """The samples file of `task`: `path` itself, or the one such file under the folder `path`."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such lmms-eval samples file or folder")
    found = sorted(
        file
        for pattern in (f"*_samples_spinebench_{task}.jsonl", f"*_samples_spinebench_{task}_subset.jsonl")
        for file in path.rglob(pattern)
    )
    if not found:
        raise ImportFormatError(
            f"{path}: no lmms-eval samples file of spinebench_{task} (or its _subset) in it"
        )
    if len(found) > 1:
        listed = ", ".join(str(file.relative_to(path)) for file in found)
        raise ImportFormatError(
            f"{path}: {len(found)} samples files of the {task} task ({listed}); name one file per task"
        )
    return found[0]


def read_records(file: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) of every non-blank line of a samples file, read a line at a time (a full-scale
    run logs every prompt and response: hundreds of megabytes)."""
    try:
        with open(file, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield number, parse_record(line, f"{file}:{number}")
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFormatError(f"{file}: cannot read it: {error}") from error


def parse_record(line: str, where: str) -> dict:
    """One samples line as a JSON object."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ImportFormatError(f"{where}: not a JSON record ({error})") from error
    if not isinstance(record, dict):
        raise ImportFormatError(f"{where}: not a JSON object")
    return record


def logged_question_id(record: Mapping, where: str) -> str | None:
    """The question id the record's metric values (or its kept document) name; None when none does."""
    named = {
        value["question_id"]
        for value in record.values()
        if isinstance(value, Mapping) and "question_id" in value
    }
    if len(named) > 1:
        raise ImportFormatError(f"{where}: the record's metric values name several questions {sorted(named)}")
    if named:
        (question_id,) = named
        if not isinstance(question_id, str):
            raise ImportFormatError(f"{where}: question_id {question_id!r} is not text")
        return question_id
    document = record.get("doc")
    if isinstance(document, Mapping) and isinstance(document.get("question_id"), str):
        return document["question_id"]
    return None


def split_order(questions: pd.DataFrame) -> list[tuple[str, str]]:
    """(question_id, answer) of the questions in question_id order: the rows of the full split's export."""
    ordered = questions.sort_values("question_id", kind="mergesort")
    return [
        (str(qid), str(answer)) for qid, answer in zip(ordered["question_id"], ordered["answer"], strict=True)
    ]


def positional_question_id(
    record: Mapping, where: str, split: str | None, order: list[tuple[str, str]]
) -> str:
    """The question at the record's `doc_id` in the full split's order (split_order), checked by `target`."""
    if split != "full":
        raise ImportFormatError(
            f"{where}: the record names no question_id (lmms-eval run with --predict_only?), and only the "
            "samples of a full-split task (*_samples_spinebench_<task>.jsonl) can be mapped by doc_id; "
            "run lmms-eval without --predict_only"
        )
    doc_id = record.get("doc_id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, int) or not 0 <= doc_id < len(order):
        raise ImportFormatError(f"{where}: doc_id {doc_id!r} is not a row of the {len(order)} questions")
    question_id, answer = order[doc_id]
    if "target" in record and str(record["target"]) != answer:
        raise ImportFormatError(
            f"{where}: target {record['target']!r} of doc_id {doc_id} is not the answer {answer!r} of "
            f"{question_id}: the samples were not made on this benchmark build"
        )
    return question_id


def logged_response(record: Mapping, where: str) -> str | None:
    """The response lmms-eval scored (`filtered_resps`): text or null, or a list of one of these."""
    if "filtered_resps" not in record:
        raise ImportFormatError(f"{where}: the record has no filtered_resps")
    response = record["filtered_resps"]
    if isinstance(response, list):
        if len(response) != 1:
            raise ImportFormatError(f"{where}: {len(response)} responses in filtered_resps, expected one")
        response = response[0]
    if response is not None and not isinstance(response, str):
        raise ImportFormatError(f"{where}: the response is {type(response).__name__}, not text")
    return response


def read_responses(path: Path, task: str, questions: pd.DataFrame) -> pd.DataFrame:
    """question_id and response of every record of the task's lmms-eval samples file (see the module)."""
    file = samples_file(Path(path), task)
    split, order = samples_split(file, task), split_order(questions)
    rows, seen = [], {}
    for number, record in read_records(file):
        where = f"{file}:{number}"
        question_id = logged_question_id(record, where) or positional_question_id(record, where, split, order)
        if question_id in seen:
            raise ImportFormatError(
                f"{where}: question {question_id} was already answered on line {seen[question_id]}"
            )
        seen[question_id] = number
        rows.append({"question_id": question_id, "response": logged_response(record, where)})
    return pd.DataFrame(rows, columns=RESPONSE_COLUMNS)
