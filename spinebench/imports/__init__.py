"""Predictions made elsewhere, read into this project's responses.

A model evaluated outside this workflow (through lmms-eval, VLMEvalKit, the original SpineBench scripts or
any script writing our plain JSONL) is declared with `backend: imported`; its responses are read here and
then go through the same extraction, metrics and report as a model this workflow queried itself.

Each format is one module `spinebench.imports.{format}` with

    read_responses(path: Path, task: str, questions: pd.DataFrame) -> pd.DataFrame

returning the columns `question_id` (str) and `response` (str or None), one row per question of `task` found
in the file. `questions` is the benchmark's question table of `task`, for readers that map a row index or an
image path back to a question id. The modules are imported by name on first use, so a reader is plugged in
by adding its module and its name to FORMATS, and a format whose reader needs an optional dependency costs
nothing to the others.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where it is used: the workflow imports FORMATS at every start
    import pandas as pd

FORMATS = ("jsonl", "lmms_eval", "spinebench_json", "vlmevalkit")
RESPONSE_COLUMNS = ["question_id", "response"]


class ImportFormatError(ValueError):
    """A predictions file that cannot be read as its declared format; the text names the file and the row,
    record or question at fault."""


def check_format(format: str) -> str:
    """Return `format` if it names a known reader, else raise ImportFormatError listing the known ones."""
    if format not in FORMATS:
        known = ", ".join(FORMATS)
        raise ImportFormatError(f"unknown predictions format {format!r}; expected one of {known}")
    return format


def read_responses(format: str, path: str | Path, task: str, questions: pd.DataFrame) -> pd.DataFrame:
    """Read the responses of `task` from the predictions file (or folder) `path` written in `format`.

    The reader's table is checked before anyone uses it (a reader bug or a file that slipped through must
    not turn into wrong scores): the two columns, text question ids that are unique and belong to the
    benchmark's `task`, responses that are text or missing. The rows come back sorted by question id.
    """
    reader = importlib.import_module(f"spinebench.imports.{check_format(format)}")
    path = Path(path)
    responses = reader.read_responses(path, task, questions)
    return check_responses(responses, path, task, questions)


def is_missing(value: object) -> bool:
    """True for None and pandas' scalar missing values (NaN, NA, NaT), false for anything else."""
    import pandas as pd

    return value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value))


def check_responses(responses: pd.DataFrame, path: Path, task: str, questions: pd.DataFrame) -> pd.DataFrame:
    """Validate a reader's table (see read_responses) and return it with exactly its two columns, sorted by
    question id; every error names the file `path`."""
    import pandas as pd

    missing = [column for column in RESPONSE_COLUMNS if column not in responses.columns]
    if missing:
        raise ImportFormatError(f"{path}: the reader returned no column(s) {', '.join(missing)}")
    responses = responses[RESPONSE_COLUMNS].reset_index(drop=True)
    not_text = [qid for qid in responses["question_id"] if not isinstance(qid, str)]
    if not_text:
        raise ImportFormatError(f"{path}: question ids must be text, got {not_text[0]!r}")
    duplicated = sorted(set(responses.loc[responses["question_id"].duplicated(), "question_id"]))
    if duplicated:
        raise ImportFormatError(
            f"{path}: {len(duplicated)} question id(s) answered more than once, e.g. {duplicated[0]!r}"
        )
    unknown = sorted(set(responses["question_id"]) - set(questions["question_id"]))
    if unknown:
        raise ImportFormatError(
            f"{path}: {len(unknown)} question id(s) not among the benchmark's {task} questions, "
            f"e.g. {unknown[0]!r}"
        )
    # A reader building its table through pandas may hold a missing response as NaN: that is None.
    responses["response"] = pd.Series(
        [None if is_missing(response) else response for response in responses["response"]], dtype=object
    )
    bad_response = [
        (qid, response)
        for qid, response in zip(responses["question_id"], responses["response"], strict=True)
        if response is not None and not isinstance(response, str)
    ]
    if bad_response:
        qid, response = bad_response[0]
        raise ImportFormatError(
            f"{path}: the response to {qid!r} must be text or missing, got {type(response).__name__}"
        )
    return responses.sort_values("question_id", kind="stable").reset_index(drop=True)
