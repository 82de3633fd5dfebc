"""The original SpineBench release's JSON layout, read back: its questions and predictions made against it.

`read_benchmark_json(path)` reads a question file of that layout (`all/train.json`, `evaluation/test.json`,
the release's or spinebench.exports.spinebench_json's) into this project's question tables, so predictions
made against the original release can be scored with this project's metrics. It is tolerant where the
release's layout is not known for sure (shared/SOURCES.md 0.4):

- `task`: the release's names (`spine_disease_classification`, `spine_lesion_localization`) or ours.
- `image` (or `image_path`): the image's path relative to the split folder. Without `image_id` and
  `question_id` keys, the image_id is that path without its extension and the question_id is
  `dx-{image_id}` / `loc-{image_id}` (the prefixes of spinebench.questions): our export names each image
  `{image_id}.png`, so both give its real ids.
- `question` (or `query`).
- options: `option A`..`option E` (any case, with a space, an underscore or nothing before the letter),
  `A`..`E`, or `options` / `choices` holding a list of five texts or a letter -> text mapping.
- `answers` (or `answer`): a text or a list of texts, each an option's text (compared without regard to
  case or repeated spaces: the release writes "cervical Lordosis") or an option letter. One for diagnosis,
  one or more for localization.
- `source`, `modality`, `region`, `disease` when present (our export's extra keys), else null; a diagnosis
  record without `disease` takes the vocabulary label its answer names, a localization record the disease
  of the diagnosis record of the same image.

`read_responses(path, task, questions)` reads predictions made against such a file: a JSON list or JSON
Lines of records that carry the question's keys plus the model's raw text under the first present of
RESPONSE_KEYS (null: no response). A record belongs to the task its `task` key names (or its question_id's
prefix says) and answers the question its `question_id` names, else the one its `image` and `task` derive.
When a record repeats the question's text or options, they must be the benchmark's. Every error names the
file and the record (JSON list position or JSON Lines line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pandas as pd

from spinebench.exports.spinebench_json import ORIGINAL_TASKS
from spinebench.imports import RESPONSE_COLUMNS, ImportFormatError
from spinebench.imports.jsonl import read_records
from spinebench.questions import QUESTION_COLUMNS
from spinebench.vocab import LABELS, LETTERS, TASKS

# The question_id prefix of each task (spinebench.questions: dx-{image_id}, loc-{image_id}).
QUESTION_ID_PREFIXES = {"diagnosis": "dx", "localization": "loc"}

# Keys a predictions record may hold the model's raw text under, in the order they are looked for.
RESPONSE_KEYS: tuple[str, ...] = ("response", "prediction", "output", "model_output")

# Metadata keys copied from a record when present (our export writes them).
METADATA_KEYS: tuple[str, ...] = ("source", "modality", "region", "disease")

TASK_OF_NAME = {**{name: task for task, name in ORIGINAL_TASKS.items()}, **{task: task for task in TASKS}}


def comparable(text: str) -> str:
    """Text as answers are compared with options: case-folded, runs of spaces collapsed."""
    return " ".join(text.split()).casefold()


def first_present(record: Mapping, keys: tuple[str, ...]) -> str | None:
    """The first of `keys` the record has."""
    return next((key for key in keys if key in record), None)


def text_field(record: Mapping, keys: tuple[str, ...], where: str) -> str:
    """The non-empty text under the first of `keys` present; an error naming the record otherwise."""
    key = first_present(record, keys)
    value = record.get(key) if key else None
    if not isinstance(value, str) or not value.strip():
        raise ImportFormatError(f"{where}: {' or '.join(repr(k) for k in keys)} must be a non-empty string")
    return value


def record_task(record: Mapping, where: str) -> str:
    """Our task name for a record's `task`."""
    name = record.get("task")
    if name not in TASK_OF_NAME:
        known = ", ".join(sorted(TASK_OF_NAME))
        raise ImportFormatError(f"{where}: task {name!r} is not one of {known}")
    return TASK_OF_NAME[name]


def image_id_of(record: Mapping, where: str) -> str:
    """The record's `image_id`, else its image path relative to the split folder without the extension."""
    if "image_id" in record:
        return text_field(record, ("image_id",), where)
    path = PurePosixPath(text_field(record, ("image", "image_path"), where).strip())
    if path.is_absolute() or ".." in path.parts:
        raise ImportFormatError(f"{where}: image {str(path)!r} is not a path inside the split folder")
    return str(path.with_suffix(""))


def question_id_of(record: Mapping, task: str, where: str) -> str:
    """The record's `question_id`, else the one its image and task derive."""
    if "question_id" in record:
        return text_field(record, ("question_id",), where)
    return f"{QUESTION_ID_PREFIXES[task]}-{image_id_of(record, where)}"


def option_key_letter(key: str) -> str | None:
    """The letter an option key names: `option A`, `Option_a`, `optionA` or `A` (any case)."""
    match = re.fullmatch(r"(?:option[ _]?)?([a-e])", key.strip(), flags=re.IGNORECASE)
    return match.group(1).upper() if match else None


def record_options(record: Mapping, where: str) -> dict[str, str]:
    """Letters A..E mapped to the record's option texts, from whichever layout it uses."""
    listed = record.get("options", record.get("choices"))
    if isinstance(listed, list):
        found = dict(zip(LETTERS, listed, strict=False)) if len(listed) == len(LETTERS) else {}
    elif isinstance(listed, Mapping):
        found = {option_key_letter(str(key)): value for key, value in listed.items()}
    else:
        found = {option_key_letter(str(key)): value for key, value in record.items()}
    options = {letter: found.get(letter) for letter in LETTERS}
    if not all(isinstance(text, str) and text.strip() for text in options.values()):
        raise ImportFormatError(
            f"{where}: five options A..E expected (keys 'option A'..'option E', 'A'..'E', or 'options'), "
            f"found {sorted(letter for letter in found if letter)}"
        )
    if len({comparable(text) for text in options.values()}) != len(LETTERS):
        raise ImportFormatError(f"{where}: options are not distinct: {options}")
    return options


def answer_letter(text: str, options: Mapping[str, str], where: str) -> str:
    """The letter of the option an answer names, by its text (case and spacing aside) or as a letter."""
    for letter, option in options.items():
        if comparable(option) == comparable(text):
            return letter
    if text.strip().upper() in LETTERS:
        return text.strip().upper()
    raise ImportFormatError(f"{where}: answer {text!r} is none of the options {list(options.values())}")


def answer_letters(record: Mapping, task: str, options: Mapping[str, str], where: str) -> list[str]:
    """Sorted letters of the record's `answers` (or `answer`): a text or a list of texts."""
    key = first_present(record, ("answers", "answer"))
    answers = record.get(key) if key else None
    answers = [answers] if isinstance(answers, str) else answers
    if not isinstance(answers, list) or not answers or not all(isinstance(text, str) for text in answers):
        raise ImportFormatError(f"{where}: 'answers' must be a text or a non-empty list of texts")
    letters = [answer_letter(text, options, where) for text in answers]
    if task == "diagnosis" and len(letters) != 1:
        raise ImportFormatError(f"{where}: a diagnosis question has one answer, not {answers}")
    if len(set(letters)) != len(letters):
        raise ImportFormatError(f"{where}: answers {answers} name an option twice")
    return sorted(letters)


def vocabulary_label(text: str) -> str | None:
    """The vocab.LABELS label `text` names, compared as answers are ("cervical Lordosis" in the release)."""
    return next((label for label in LABELS if comparable(label) == comparable(text)), None)


def question_row(record: object, where: str) -> tuple[str, dict]:
    """(task, question row in our schema) of one benchmark record."""
    if not isinstance(record, Mapping):
        raise ImportFormatError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    task = record_task(record, where)
    options = record_options(record, where)
    letters = answer_letters(record, task, options, where)
    metadata = {key: record.get(key) if isinstance(record.get(key), str) else None for key in METADATA_KEYS}
    if task == "diagnosis" and metadata["disease"] is None:
        metadata["disease"] = vocabulary_label(options[letters[0]])
    row = {
        "question_id": question_id_of(record, task, where),
        "image_id": image_id_of(record, where),
        **metadata,
        "question": text_field(record, ("question", "query"), where),
        **{f"option_{letter.lower()}": text for letter, text in options.items()},
        "answer": ",".join(letters),
        "paraphrase": None,
    }
    return task, row


def read_benchmark_json(path: str | Path) -> dict[str, pd.DataFrame]:
    """Our question tables (spinebench.questions.QUESTION_COLUMNS, question_id order) of every task, from a
    question file in the release's layout; `paraphrase` is null (the release does not say)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(f"{path}: benchmark JSON file not found")
    rows: dict[str, list[dict]] = {task: [] for task in TASKS}
    seen: dict[str, str] = {}
    for where, record in read_records(path):
        task, row = question_row(record, where)
        if row["question_id"] in seen:
            raise ImportFormatError(
                f"{where}: question {row['question_id']} appears again (first at {seen[row['question_id']]})"
            )
        seen[row["question_id"]] = where
        rows[task].append(row)
    fill_localization_diseases(rows)
    return {task: question_table(task_rows) for task, task_rows in rows.items()}


def fill_localization_diseases(rows: dict[str, list[dict]]) -> None:
    """Give a localization question without a disease the disease of its image's diagnosis question."""
    disease_of_image = {row["image_id"]: row["disease"] for row in rows["diagnosis"]}
    for row in rows["localization"]:
        if row["disease"] is None:
            row["disease"] = disease_of_image.get(row["image_id"])


def question_table(rows: list[dict]) -> pd.DataFrame:
    """Rows in question_id order with the question tables' columns: text columns of Python objects (a
    missing value stays None), paraphrase a nullable integer."""
    frame = pd.DataFrame(rows, columns=list(QUESTION_COLUMNS), dtype=object)
    frame["paraphrase"] = frame["paraphrase"].astype("Int64")
    return frame.sort_values("question_id", kind="mergesort").reset_index(drop=True)


def response_of(record: Mapping, where: str) -> str | None:
    """The model's raw text: the value of the first RESPONSE_KEYS key present (null: no response)."""
    key = first_present(record, RESPONSE_KEYS)
    if key is None:
        raise ImportFormatError(f"{where}: no response; expected one of the keys {', '.join(RESPONSE_KEYS)}")
    value = record[key]
    if value is not None and not isinstance(value, str):
        raise ImportFormatError(f"{where}: {key} must be a string or null, got {type(value).__name__}")
    return value


def prediction_task(record: Mapping, where: str) -> str:
    """The task a predictions record answers: its `task` key, else its question_id's prefix."""
    if "task" in record or "question_id" not in record:
        return record_task(record, where)
    question_id = text_field(record, ("question_id",), where)
    for task, prefix in QUESTION_ID_PREFIXES.items():
        if question_id.startswith(f"{prefix}-"):
            return task
    raise ImportFormatError(f"{where}: no task, and question_id {question_id!r} does not say one")


def check_same_question(record: Mapping, where: str, question: Mapping) -> None:
    """Refuse a record whose question text or options differ from the benchmark question it answers."""
    question_id = question["question_id"]
    if "question" in record and comparable(str(record["question"])) != comparable(str(question["question"])):
        raise ImportFormatError(
            f"{where}: the question of {question_id} differs from the benchmark's: "
            "the predictions were made on another version"
        )
    has_options = (
        any(option_key_letter(str(key)) for key in record) or "options" in record or "choices" in record
    )
    if has_options:
        options = record_options(record, where)
        expected = {letter: str(question[f"option_{letter.lower()}"]) for letter in LETTERS}
        if any(comparable(options[letter]) != comparable(expected[letter]) for letter in LETTERS):
            raise ImportFormatError(
                f"{where}: the options of {question_id} differ from the benchmark's {expected}: "
                "the predictions were made on another version"
            )


def read_responses(path: Path, task: str, questions: pd.DataFrame) -> pd.DataFrame:
    """question_id and response of every record of `task` in the predictions file `path` (a JSON list or
    JSON Lines; see the module docstring)."""
    path = Path(path)
    by_id = {str(row["question_id"]): row for row in questions.to_dict("records")}
    seen: dict[str, str] = {}
    rows = []
    for where, record in read_records(path):
        if not isinstance(record, Mapping):
            raise ImportFormatError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
        if prediction_task(record, where) != task:
            continue
        question_id = question_id_of(record, task, where)
        if question_id not in by_id:
            raise ImportFormatError(f"{where}: {question_id} is not a {task} question of the benchmark")
        if question_id in seen:
            raise ImportFormatError(
                f"{where}: {question_id} is answered again (first at {seen[question_id]})"
            )
        seen[question_id] = where
        check_same_question(record, where, by_id[question_id])
        rows.append({"question_id": question_id, "response": response_of(record, where)})
    # object columns: pandas would make a missing response NaN in a text column
    return pd.DataFrame(rows, columns=RESPONSE_COLUMNS, dtype=object)
