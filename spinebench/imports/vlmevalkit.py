"""Responses from VLMEvalKit prediction files, for the datasets of spinebench.exports.vlmevalkit.

VLMEvalKit's inference (`vlmeval/inference.py` infer_data_job) writes `{work_dir}/{model}/{eval_id}/
{model}_{dataset}.xlsx` (`.tsv` or `.json` with PRED_FORMAT=tsv|json, `vlmeval/smp/file.py`
get_pred_file_path): every column of the dataset's TSV but `image`, plus `prediction`, the model's raw text
(`str()` of what the model returned). That text is the response; our extraction reads it.

`path` is one prediction file, or a folder holding exactly one prediction file of the task (a file named
`..._SpineBench_DX[_SUB]_{version}.xlsx|tsv|json` for diagnosis, `_LOC` for localization; VLMEvalKit's
`{work_dir}/{model}/` and its run folders hold them).

Rows map to questions by the `question_id` column the export adds; a file without it (a TSV rebuilt by
hand) maps by `index`, with the export's rule (spinebench.exports.vlmevalkit: INDEX_BASE[task] + position in
the task's question_id order). When the file has the question text, options or answer, they must equal the
benchmark's: a file made on another version of the benchmark is refused rather than scored on the wrong
questions.

A prediction holding VLMEvalKit's failure text ("Failed to obtain answer", its INFER_FAIL_MSG, which it also
counts as a failed inference) or an empty cell is no response (None). Excel cells hold at most 32,767
characters and VLMEvalKit's writer (xlsxwriter) cuts longer text silently: rows at that length are logged
as truncated (the final answer at the end of a long reasoning may be lost); PRED_FORMAT=tsv avoids it.
Errors name the file and the row (as a spreadsheet numbers it, the header being row 1) or JSON record.
"""

from __future__ import annotations

import json
import logging
import math
import re
import zipfile
from pathlib import Path

import pandas as pd

from spinebench.exports.vlmevalkit import INDEX_BASE, INDEX_SPAN, TASK_NAMES
from spinebench.imports import RESPONSE_COLUMNS, ImportFormatError
from spinebench.prompts import question_options
from spinebench.vocab import LETTERS

log = logging.getLogger(__name__)

SUFFIXES = (".xlsx", ".tsv", ".json")

# vlmeval/smp/file.py INFER_FAIL_MSG: what VLMEvalKit writes in place of a response it could not obtain.
FAILURE_MARKER = "Failed to obtain answer"

# Excel's cell limit in UTF-16 code units; xlsxwriter truncates longer strings to it.
EXCEL_TEXT_LIMIT = 32767

# Columns a row is checked against the benchmark's question with, when the file has them.
CHECKED_COLUMNS: tuple[str, ...] = ("question", *LETTERS, "answer")


def prediction_file(path: Path, task: str) -> Path:
    """`path` itself, or the single prediction file of `task` in the folder `path`."""
    if not path.is_dir():
        if not path.is_file():
            raise ImportFormatError(f"{path}: VLMEvalKit prediction file not found")
        return path
    pattern = re.compile(rf"_SpineBench_{TASK_NAMES[task]}(_SUB)?(_[0-9a-f]+)?({'|'.join(SUFFIXES)})$")
    found = sorted(child for child in path.iterdir() if child.is_file() and pattern.search(child.name))
    if len(found) != 1:
        listed = ", ".join(child.name for child in found) or "none"
        raise ImportFormatError(
            f"{path}: expected one VLMEvalKit prediction file of the {task} task "
            f"(*_SpineBench_{TASK_NAMES[task]}*), found {listed}; give the file itself"
        )
    return found[0]


def read_prediction_table(file: Path) -> tuple[list[str], list[dict], str]:
    """The file's columns, its rows as dicts (cells as text; JSON values as they are) and what errors call a
    row: "row" (spreadsheet numbering) or "record"."""
    suffix = file.suffix.lower()
    if suffix == ".json":
        records = json_records(file)
        return sorted(set().union(*records)), records, "record"
    if suffix not in SUFFIXES:
        raise ImportFormatError(f"{file}: a VLMEvalKit prediction file ends in {', '.join(SUFFIXES)}")
    # Every cell as the text it holds: pandas would otherwise read "NA" or "None" as missing.
    try:
        if suffix == ".xlsx":
            frame = pd.read_excel(file, dtype=str, keep_default_na=False, engine="openpyxl")
        else:
            frame = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:  # pandas parser errors are ValueErrors
        raise ImportFormatError(f"{file}: cannot be read as a VLMEvalKit prediction file: {error}") from error
    return list(frame.columns), frame.to_dict("records"), "row"


def json_records(file: Path) -> list[dict]:
    """Records of a PRED_FORMAT=json prediction file: a list of objects (pandas' to_dict('records'))."""
    try:
        records = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ImportFormatError(f"{file}: not a JSON prediction file: {error}") from error
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise ImportFormatError(f"{file}: a JSON prediction file must be a list of objects")
    return records


def row_label(unit: str, position: int) -> str:
    """How errors name the `position`-th (0-based) row: spreadsheet row numbers count the header row."""
    return f"{unit} {position + 2 if unit == 'row' else position + 1}"


def is_blank(value: object) -> bool:
    """None, NaN or an empty string: a cell with nothing in it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip()


def index_question_ids(task: str, questions: pd.DataFrame) -> list[str]:
    """The task's question ids in index order: position p has index INDEX_BASE[task] + p."""
    return sorted(str(question_id) for question_id in questions["question_id"])


def parse_index(value: object, where: str) -> int:
    """A row's `index` as an integer (Excel and JSON may give 1000003.0 for 1000003)."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise ImportFormatError(f"{where}: index {value!r} is not an integer")
    return int(number)


def question_id_of(row: dict, where: str, task: str, by_index: list[str]) -> str:
    """The question a row answers: its question_id column, else its index mapped with the export's rule."""
    if "question_id" in row:
        if is_blank(row["question_id"]):
            raise ImportFormatError(f"{where}: empty question_id")
        return str(row["question_id"]).strip()
    index = parse_index(row["index"], where)
    position = index - INDEX_BASE[task]
    if not 0 <= position < min(len(by_index), INDEX_SPAN):
        raise ImportFormatError(
            f"{where}: index {index} is not a {task} question of this benchmark (its indexes run from "
            f"{INDEX_BASE[task]} to {INDEX_BASE[task] + len(by_index) - 1})"
        )
    return by_index[position]


def check_question(row: dict, where: str, question_id: str, expected: dict[str, str]) -> None:
    """Refuse a row whose question text, options or answer differ from the benchmark's question."""
    for column in CHECKED_COLUMNS:
        if column in row and str(row[column]).strip() != expected[column]:
            raise ImportFormatError(
                f"{where}: {question_id}'s {column} is {row[column]!r} in the file but "
                f"{expected[column]!r} in the benchmark: the predictions were made on another version"
            )


def benchmark_fields(question: dict) -> dict[str, str]:
    """The CHECKED_COLUMNS values of a benchmark question row, as the export wrote them."""
    return {
        "question": str(question["question"]).strip(),
        **question_options(question),
        "answer": question["answer"],
    }


def response_of(row: dict, where: str, unit: str) -> str | None:
    """The row's raw prediction; None for a blank cell or VLMEvalKit's failure text."""
    prediction = row["prediction"]
    if is_blank(prediction):
        return None
    if not isinstance(prediction, str):
        raise ImportFormatError(f"{where}: prediction must be text, got {type(prediction).__name__}")
    if FAILURE_MARKER in prediction:
        return None
    if unit == "row" and len(prediction.encode("utf-16-le")) // 2 >= EXCEL_TEXT_LIMIT:
        log.warning(
            "%s: the prediction fills an Excel cell (%d characters): it was probably cut off",
            where,
            EXCEL_TEXT_LIMIT,
        )
    return prediction


def read_responses(path: Path, task: str, questions: pd.DataFrame) -> pd.DataFrame:
    """question_id and response of every row of the VLMEvalKit prediction file of `task` at `path`."""
    file = prediction_file(Path(path), task)
    columns, rows, unit = read_prediction_table(file)
    if "prediction" not in columns or not {"question_id", "index"} & set(columns):
        raise ImportFormatError(
            f"{file}: a VLMEvalKit prediction file needs `prediction` and `question_id` or `index`"
        )
    by_index = index_question_ids(task, questions)
    expected = {str(row["question_id"]): row for row in questions.to_dict("records")}
    seen: dict[str, str] = {}
    records = []
    for position, row in enumerate(rows):
        label = row_label(unit, position)
        where = f"{file}: {label}"
        question_id = question_id_of(row, where, task, by_index)
        if question_id not in expected:
            raise ImportFormatError(f"{where}: {question_id} is not a {task} question of the benchmark")
        if question_id in seen:
            raise ImportFormatError(f"{where}: {question_id} was already answered in {seen[question_id]}")
        seen[question_id] = label
        check_question(row, where, question_id, benchmark_fields(expected[question_id]))
        records.append({"question_id": question_id, "response": response_of(row, where, unit)})
    # object columns: pandas would make a missing response NaN in a text column
    return pd.DataFrame(records, columns=RESPONSE_COLUMNS, dtype=object)
