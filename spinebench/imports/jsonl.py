"""This project's plain predictions format: one JSON object per question, for any script to write.

    {"question_id": "dx-rsna-...", "response": "... My final option: [B]"}
    {"question_id": "loc-rsna-...", "response": "... My final options: [A, C]", "task": "localization"}

`path` is either one file holding both tasks, or a folder holding `diagnosis.jsonl` and
`localization.jsonl`. A file is JSON Lines (one object a line, blank lines skipped) or, when its first
character is `[`, one JSON list of the same objects. `response` is the model's raw text (null: the model gave
none, which the imported backend records as a failed item); the optional `task` says which task a record
answers. In a file holding both tasks, a record without `task` belongs to the task whose questions hold its
id, and is skipped when reading the other task. Other keys (a latency, the model's name) are ignored.
Every error names the file and the line (JSON Lines) or the record's position (JSON list).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from spinebench.imports import ImportFormatError
from spinebench.vocab import TASKS


def task_file(path: Path, task: str) -> Path:
    """The file holding `task`'s records: `path` itself, or `{task}.jsonl` inside a folder `path`."""
    if not path.is_dir():
        return path
    file = path / f"{task}.jsonl"
    if not file.is_file():
        raise ImportFormatError(
            f"{path}: a jsonl predictions folder must hold {task}.jsonl, which is missing"
        )
    return file


def read_records(file: Path) -> Iterator[tuple[str, object]]:
    """(where, parsed record) for every record of `file`, `where` naming the file and the line or position."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise ImportFormatError(f"{file}: predictions file not found") from error
    except UnicodeDecodeError as error:
        raise ImportFormatError(f"{file}: not UTF-8 text ({error})") from error
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ImportFormatError(f"{file}:{error.lineno}: not valid JSON ({error.msg})") from error
        for position, record in enumerate(records, start=1):
            yield f"{file}: record {position}", record
        return
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ImportFormatError(f"{file}:{line_number}: not a JSON object ({error.msg})") from error
        yield f"{file}:{line_number}", record


def checked_record(where: str, record: object) -> tuple[str, str | None, str | None]:
    """(question_id, response, task or None) of one record; an error naming `where` for a malformed one."""
    if not isinstance(record, dict):
        raise ImportFormatError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    missing = [key for key in ("question_id", "response") if key not in record]
    if missing:
        raise ImportFormatError(f"{where}: the record lacks {', '.join(missing)}")
    question_id, response, task = record["question_id"], record["response"], record.get("task")
    if not isinstance(question_id, str) or not question_id:
        raise ImportFormatError(f"{where}: question_id must be a non-empty string, got {question_id!r}")
    if response is not None and not isinstance(response, str):
        raise ImportFormatError(
            f"{where}: response of {question_id} must be a string or null, got {type(response).__name__}"
        )
    if task is not None and task not in TASKS:
        raise ImportFormatError(
            f"{where}: task of {question_id} is {task!r}; expected one of {', '.join(TASKS)}"
        )
    return question_id, response, task


def read_responses(path: Path, task: str, questions: pd.DataFrame) -> pd.DataFrame:
    """The responses to `task`'s questions in the file or folder `path` (see the module docstring).

    Every record of a folder's `{task}.jsonl`, and every record of a shared file that names `task`, must
    answer one of `questions`; a record of a shared file without a task counts when its id is one of them.
    A question answered twice is an error naming both places.
    """
    path = Path(path)
    one_task_file = path.is_dir()
    known_ids = set(questions["question_id"])
    seen: dict[str, str] = {}
    rows = []
    for where, record in read_records(task_file(path, task)):
        question_id, response, record_task = checked_record(where, record)
        if one_task_file and record_task not in (None, task):
            raise ImportFormatError(f"{where}: a record of task {record_task!r} in the {task} file")
        if record_task != task and not one_task_file:
            if record_task is not None or question_id not in known_ids:
                continue  # the other task's record
        if question_id not in known_ids:
            raise ImportFormatError(
                f"{where}: question {question_id} is not among the benchmark's {task} questions"
            )
        if question_id in seen:
            raise ImportFormatError(
                f"{where}: question {question_id} is answered again (first at {seen[question_id]})"
            )
        seen[question_id] = where
        rows.append({"question_id": question_id, "response": response})
    return pd.DataFrame(rows, columns=["question_id", "response"])
