"""Per-answer views of the scored models for the report: every counted answer with its option texts and raw
response, the diagnosis confusion matrix, per-level localization scores, example questions and the audit of
answers that no extraction rule produced (the judge's).

`answer_table` joins, per model, the scored questions (results/metrics/models/{model}.questions.parquet: the
questions counted under the split, with truth, extracted answer, extraction path and correctness) with the
question tables (question text, options). Raw responses are read only for the answers the report shows
(`responses_to_read`, `read_responses`): a model's responses to the full benchmark run to gigabytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from spinebench.benchmark_images import ShardImages
from spinebench.vocab import LABELS, LETTERS, LEVELS, TASKS

OPTION_COLUMNS: tuple[str, ...] = tuple(f"option_{letter.lower()}" for letter in LETTERS)

# Extraction paths whose answers a person should check: the judge model's (no rule read the response, or the
# rules read it with low confidence and the judge decided) and the rules' low-confidence readings (left as
# they are when no judge is configured). metrics.EXTRACTION_PATHS lists every path.
AUDIT_PATHS: tuple[str, ...] = ("judge", "low_confidence")

# Columns of a predictions table the report shows for an answer; `judge_response` (the judge's raw reply)
# only where the table has it.
RESPONSE_COLUMNS: tuple[str, ...] = ("response", "error", "judge_response")

# Audited answers listed per model and task (the first, by question id); the report says how many there are.
AUDIT_LIMIT = 50

# Example questions shown per task, drawn from SpineBench-Sub with the subset seed.
EXAMPLES_PER_TASK = 2

# Longest side of an example image in the report, and its JPEG quality: enough to see the film, small
# enough to keep the report a few hundred kilobytes.
EXAMPLE_IMAGE_SIDE = 256
EXAMPLE_IMAGE_QUALITY = 85

NO_ANSWER = "No answer"

SCORED_COLUMNS: tuple[str, ...] = (
    "task",
    "question_id",
    "image_id",
    "disease",
    "truth",
    "predicted",
    "extraction",
    "correct",
)


def answer_table(scored: Mapping[str, pd.DataFrame], questions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per model and counted question: the scored columns and the question's text and options.

    `scored`: model -> scored questions; `questions`: task -> question table (question_id, question,
    option_a .. option_e). Ordered by model (as given), task (vocab.TASKS) and question id.
    """
    frames = []
    for model, table in scored.items():
        for task in TASKS:
            part = table.loc[table["task"] == task, list(SCORED_COLUMNS)]
            options = questions[task][["question_id", "question", *OPTION_COLUMNS]]
            part = part.merge(options, on="question_id", how="left", validate="many_to_one")
            frames.append(part.sort_values("question_id", kind="mergesort").assign(model=model))
    columns = ["model", *SCORED_COLUMNS, "question", *OPTION_COLUMNS]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def audited_answers(
    answers: pd.DataFrame, model: str, task: str, paths: Sequence[str] = AUDIT_PATHS
) -> pd.DataFrame:
    """A model's counted answers to a task whose extraction path is in `paths`, by question id."""
    selected = (
        (answers["model"] == model) & (answers["task"] == task) & answers["extraction"].isin(list(paths))
    )
    return answers[selected]


def responses_to_read(
    answers: pd.DataFrame,
    chosen: Sequence[tuple[str, str]],
    models: Sequence[str],
    paths: Sequence[str] = AUDIT_PATHS,
    limit: int = AUDIT_LIMIT,
) -> dict[str, dict[str, list[str]]]:
    """model -> task -> question ids whose raw response the report shows: the example questions (every
    model) and the audited answers it lists (audit_rows: the first `limit` per model and task)."""
    wanted: dict[str, dict[str, list[str]]] = {}
    for model in models:
        for task in TASKS:
            ids = {question_id for example_task, question_id in chosen if example_task == task}
            ids |= set(audited_answers(answers, model, task, paths)["question_id"].head(limit))
            wanted.setdefault(model, {})[task] = sorted(ids)
    return wanted


def read_responses(
    prediction_paths: Mapping[str, Mapping[str, str | os.PathLike]], wanted: Mapping[str, Mapping[str, list]]
) -> dict[tuple[str, str], dict]:
    """(model, question_id) -> {response, error, judge_response} of the `wanted` questions
    (responses_to_read), reading only those rows of each model's predictions table (`prediction_paths`:
    model -> task -> path); `judge_response` is None where the table has no such column."""
    responses = {}
    for model, tasks in wanted.items():
        for task, ids in tasks.items():
            if not ids:
                continue
            path = prediction_paths[model][task]
            present = [column for column in RESPONSE_COLUMNS if column in pq.read_schema(path).names]
            table = pq.read_table(
                path, columns=["question_id", *present], filters=[("question_id", "in", list(ids))]
            )
            for row in table.to_pylist():
                responses[(model, row["question_id"])] = {
                    column: row.get(column) for column in RESPONSE_COLUMNS
                }
    return responses


def letters_of(answer) -> list[str]:
    """The letters of an answer ('A,C' -> ['A', 'C']); none for a missing or empty answer."""
    if answer is None or pd.isna(answer):
        return []
    return [letter.strip() for letter in str(answer).split(",") if letter.strip()]


def option_texts(row: Mapping, answer) -> list[str]:
    """The option texts an answer's letters stand for in the question `row` (unknown letters kept as is)."""
    texts = []
    for letter in letters_of(answer):
        column = f"option_{letter.lower()}"
        value = row.get(column) if letter in LETTERS else None
        texts.append(letter if value is None or pd.isna(value) else str(value))
    return texts


def labelled_answer(row: Mapping, answer) -> str:
    """An answer as 'A: text, C: text'; an en dash when there is none."""
    letters = letters_of(answer)
    if not letters:
        return "–"
    return ", ".join(
        f"{letter}: {text}" for letter, text in zip(letters, option_texts(row, answer), strict=True)
    )


def confusion_matrices(answers: pd.DataFrame, models: Sequence[str]) -> dict:
    """Diagnosis confusion matrices, one per model, on shared axes.

    Rows are the true labels present (vocab.LABELS order), columns every label that is a truth or an answer
    of some model, then 'No answer' (no extracted answer, a failed request or no prediction). Returns
    {"truths": [...], "answers": [...], "matrices": {model: [[count, ...], ...]}}.
    """
    diagnosis = answers[answers["task"] == "diagnosis"]
    answered = [
        (texts[0] if texts else NO_ANSWER)
        for texts in (option_texts(row, row["predicted"]) for row in diagnosis.to_dict("records"))
    ]
    diagnosis = diagnosis.assign(answered=answered)
    truths = ordered(diagnosis["disease"], LABELS)
    labels = ordered(pd.concat([diagnosis["disease"], diagnosis["answered"]]), LABELS)
    columns = [label for label in labels if label != NO_ANSWER] + [NO_ANSWER]
    matrices = {}
    for model in models:
        part = diagnosis[diagnosis["model"] == model]
        table = pd.crosstab(part["disease"], part["answered"]).reindex(
            index=truths, columns=columns, fill_value=0
        )
        matrices[model] = table.fillna(0).astype(int).to_numpy().tolist()
    return {"truths": truths, "answers": columns, "matrices": matrices}


def ordered(values: pd.Series, order: Sequence[str]) -> list[str]:
    """Distinct values: those in `order` first, in that order, then the rest by name."""
    present = set(values.dropna())
    known = [value for value in order if value in present]
    return known + sorted(present - set(known))


def level_scores(answers: pd.DataFrame, models: Sequence[str]) -> list[dict]:
    """Per model and lumbar level, over the counted localization questions: how often the model's call on
    that level (named or not) agrees with the truth (accuracy), and precision and recall of naming it.

    Returns rows {model, level, questions, truth, answered, accuracy, precision, recall}; a ratio without a
    denominator (a level no answer named, or no truth holds) is None.
    """
    localization = answers[answers["task"] == "localization"]
    rows = []
    for model in models:
        part = localization[localization["model"] == model].to_dict("records")
        truth_sets = [set(option_texts(row, row["truth"])) for row in part]
        answer_sets = [set(option_texts(row, row["predicted"])) for row in part]
        for level in LEVELS:
            in_truth = np.array([level in levels for levels in truth_sets], dtype=bool)
            in_answer = np.array([level in levels for levels in answer_sets], dtype=bool)
            both = int((in_truth & in_answer).sum())
            rows.append(
                {
                    "model": model,
                    "level": level,
                    "questions": len(part),
                    "truth": int(in_truth.sum()),
                    "answered": int(in_answer.sum()),
                    "accuracy": float((in_truth == in_answer).mean()) if part else None,
                    "precision": both / int(in_answer.sum()) if in_answer.any() else None,
                    "recall": both / int(in_truth.sum()) if in_truth.any() else None,
                }
            )
    return rows


def pick_examples(
    subset: pd.DataFrame, seed: int, per_task: int = EXAMPLES_PER_TASK
) -> list[tuple[str, str]]:
    """(task, question_id) of `per_task` SpineBench-Sub questions per task, drawn with `seed` from the
    sorted ids, in vocab.TASKS order then question id: the same subset and seed give the same examples."""
    rng = np.random.default_rng(seed)
    chosen = []
    for task in TASKS:
        ids = sorted(subset.loc[subset["task"] == task, "question_id"])
        picked = rng.choice(len(ids), size=min(per_task, len(ids)), replace=False) if ids else []
        chosen.extend((task, ids[index]) for index in sorted(int(index) for index in picked))
    return chosen


def read_images(
    catalog: pd.DataFrame, shard_paths: Sequence[str | os.PathLike], image_ids: Sequence[str]
) -> dict[str, bytes]:
    """image_id -> PNG bytes of `image_ids`, read from the shards the catalog places them in (only those
    shards, only those rows). An id whose shard is not among `shard_paths` raises MissingImageError."""
    return ShardImages(catalog, shard_paths).load(image_ids)


def thumbnail_jpeg(png: bytes, side: int = EXAMPLE_IMAGE_SIDE, quality: int = EXAMPLE_IMAGE_QUALITY) -> bytes:
    """An image scaled to at most `side` pixels on its longest side, as baseline JPEG (deterministic)."""
    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()


def example_questions(
    answers: pd.DataFrame,
    responses: Mapping[tuple[str, str], Mapping],
    questions: Mapping[str, pd.DataFrame],
    chosen: Sequence[tuple[str, str]],
    models: Sequence[str],
) -> list[dict]:
    """The chosen questions: text, options (truth marked), truth and every model's answer, extraction path,
    correctness and raw response and error (`responses`: read_responses(); None where there is none)."""
    examples = []
    for task, question_id in chosen:
        table = questions[task]
        question = table.loc[table["question_id"] == question_id].to_dict("records")[0]
        truth = set(letters_of(question["answer"]))
        by_model = answers[(answers["task"] == task) & (answers["question_id"] == question_id)].set_index(
            "model"
        )
        shown = []
        for model in models:
            row = by_model.loc[model].to_dict() if model in by_model.index else None
            prediction = responses.get((model, question_id), {})
            shown.append(
                {
                    "model": model,
                    "answer": labelled_answer(question, row["predicted"]) if row else "–",
                    "extraction": row["extraction"] if row else "not counted",
                    "correct": None if row is None else bool(row["correct"]),
                    "response": text_or_none(prediction.get("response")),
                    "error": text_or_none(prediction.get("error")),
                    "judge_response": text_or_none(prediction.get("judge_response")),
                }
            )
        examples.append(
            {
                "task": task,
                "question_id": question_id,
                "image_id": question["image_id"],
                "disease": question["disease"],
                "question": question["question"],
                "options": [
                    {"letter": letter, "text": question[column], "truth": letter in truth}
                    for letter, column in zip(LETTERS, OPTION_COLUMNS, strict=True)
                ],
                "truth": labelled_answer(question, question["answer"]),
                "responses": shown,
            }
        )
    return examples


def text_or_none(value) -> str | None:
    """A string value, None for a null."""
    return None if value is None or pd.isna(value) else str(value)


def audit_rows(
    answers: pd.DataFrame,
    responses: Mapping[tuple[str, str], Mapping],
    models: Sequence[str],
    paths: Sequence[str] = AUDIT_PATHS,
    limit: int = AUDIT_LIMIT,
) -> list[dict]:
    """Per model and task, the counted answers whose extraction path is in `paths`: the raw response and the
    judge's raw reply (`responses`: read_responses()) beside the answer taken from them, with the truth; the
    first `limit` by question id, and how many there are."""
    groups = []
    for model in models:
        for task in TASKS:
            part = audited_answers(answers, model, task, paths)
            if part.empty:
                continue
            rows = [
                audit_row(row, responses.get((model, row["question_id"]), {}))
                for row in part.head(limit).to_dict("records")
            ]
            groups.append({"model": model, "task": task, "total": len(part), "rows": rows})
    return groups


def audit_row(row: Mapping, prediction: Mapping) -> dict:
    """One audited answer: question, extraction path, raw response and judge reply (`prediction`), the
    answer and the truth as 'letter: option text', and whether it is right."""
    return {
        "question_id": row["question_id"],
        "extraction": row["extraction"],
        "response": text_or_none(prediction.get("response")) or "",
        "judge_response": text_or_none(prediction.get("judge_response")),
        "answer": labelled_answer(row, row["predicted"]),
        "truth": labelled_answer(row, row["truth"]),
        "correct": bool(row["correct"]),
    }
