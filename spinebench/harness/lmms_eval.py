"""The functions of SpineBench's lmms-eval tasks, which the exported task folder's utils.py names.

A document is one row of the Hugging Face export (spinebench.exports.hf): question_id, image_id, image (a PIL
image once `datasets` decodes it), question, options (five texts, A to E), answer (letters joined by ","),
and the image's metadata.

- `doc_to_visual`: the image, RGB.
- `SpineBenchTask(task, templates_dir).doc_to_text`: the paper's prompt (spinebench.prompts.render_prompt).
- `SpineBenchTask.process_results`: this project's answer extraction (spinebench.extract.extract_answer),
  then the per-question scores exactly as sql/metrics/score_{task}.sql computes them.
- `mean_score`: the aggregation, a mean over questions, as sql/metrics/summary.sql.

So lmms-eval's `accuracy` of `spinebench_diagnosis` is this project's diagnosis_accuracy, and the
`accuracy`, `precision`, `recall` of `spinebench_localization` are localization_accuracy, _precision and
_recall (PROJECT_METRICS), on the same responses. Answers no rule can read count as wrong; there is no judge
model on this path.

Each per-document metric value is a dict {question_id, image_id, predicted, extraction, score}: lmms-eval
copies these into its `--log_samples` records, which do not keep the document, so they are how
spinebench.imports.lmms_eval maps a record back to its question; lmms-eval's clustered standard error groups
the `score`s by `image_id` (the task's cluster_key), as this project's bootstrap resamples images.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spinebench.extract import extract_answer
from spinebench.prompts import OPTION_COLUMNS, render_prompt
from spinebench.vocab import LETTERS, TASKS

# The metrics each task reports to lmms-eval. Both tasks call their exact-match metric `accuracy` so that a
# group's unweighted mean of `accuracy` is the paper's overall accuracy (metrics.point_metrics).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "diagnosis": ("accuracy",),
    "localization": ("accuracy", "precision", "recall"),
}

# (task, lmms-eval metric) -> the same metric's name in this project's metric tables (metrics.METRICS).
PROJECT_METRICS: dict[tuple[str, str], str] = {
    (task, metric): f"{task}_{metric}" for task, metrics in TASK_METRICS.items() for metric in metrics
}


class HarnessDocError(ValueError):
    """A document or model output the SpineBench task cannot use; the text names the question."""


def question_label(doc: Mapping) -> str:
    """How an error names a document: its question_id when it has one."""
    return str(doc.get("question_id", "<document without question_id>"))


def doc_to_visual(doc: Mapping) -> list:
    """The document's image as a one-element list of RGB PIL images (what lmms-eval's models take)."""
    image = doc.get("image")
    if image is None or not hasattr(image, "convert"):
        raise HarnessDocError(f"question {question_label(doc)}: the document has no decoded image")
    return [image.convert("RGB")]


def doc_options(doc: Mapping) -> dict[str, str]:
    """Letters A..E mapped to the document's five option texts."""
    options = doc.get("options")
    if options is None or len(options) != len(LETTERS):
        raise HarnessDocError(
            f"question {question_label(doc)}: expected {len(LETTERS)} options, got {options!r}"
        )
    return {letter: str(text) for letter, text in zip(LETTERS, options, strict=True)}


def prompt_fields(doc: Mapping) -> dict[str, str]:
    """The question-table fields render_prompt reads (question_id, question, option_a .. option_e)."""
    options = doc_options(doc)
    return {
        "question_id": question_label(doc),
        "question": doc.get("question"),
        **{column: options[letter] for letter, column in zip(LETTERS, OPTION_COLUMNS, strict=True)},
    }


def single_response(doc: Mapping, results: Sequence) -> str | None:
    """The model's response to the document: lmms-eval passes one result per request, and a SpineBench
    document makes one request."""
    if len(results) != 1:
        raise HarnessDocError(f"question {question_label(doc)}: expected one response, got {len(results)}")
    response = results[0]
    if response is not None and not isinstance(response, str):
        raise HarnessDocError(f"question {question_label(doc)}: the response is {type(response).__name__}")
    return response


def answer_letters(text: str | None) -> set[str]:
    """The distinct letters of an answer written as letters joined by ','; none for a missing answer."""
    return set(text.split(",")) if text else set()


def question_scores(task: str, truth: str, predicted: str | None) -> dict[str, float]:
    """One question's scores, as sql/metrics/score_{task}.sql computes them.

    Diagnosis: accuracy = 1 when the extracted letter equals the truth. Localization, with m matched, p
    predicted and g true letters: accuracy = 1[m = g and p = g], precision = m / p (0 when nothing was
    extracted), recall = m / g.
    """
    if task == "diagnosis":
        return {"accuracy": int(predicted is not None and predicted == truth)}
    if task != "localization":
        raise HarnessDocError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    true_letters, predicted_letters = answer_letters(truth), answer_letters(predicted)
    matched, predicted_count, truth_count = (
        len(true_letters & predicted_letters),
        len(predicted_letters),
        len(true_letters),
    )
    return {
        "accuracy": int(matched == truth_count and predicted_count == truth_count),
        "precision": 0.0 if predicted_count == 0 else matched / predicted_count,
        "recall": matched / truth_count,
    }


@dataclass(frozen=True)
class SpineBenchTask:
    """The prompt and scoring functions of one task (`diagnosis` or `localization`).

    `templates_dir` holds the prompt templates ({task}.j2); the exported task folder passes its own copy
    (`prompts/`), so that the folder keeps the prompts it was exported with.
    """

    task: str
    templates_dir: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise HarnessDocError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")

    def doc_to_text(self, doc: Mapping) -> str:
        """The paper's prompt for the document (without the disease definitions)."""
        directory = Path(self.templates_dir) if self.templates_dir is not None else None
        return render_prompt(self.task, prompt_fields(doc), definitions=False, templates_dir=directory)

    def process_results(self, doc: Mapping, results: Sequence) -> dict[str, dict]:
        """metric -> {question_id, image_id, predicted, extraction, score} for the document's response."""
        truth = doc.get("answer")
        if not isinstance(truth, str) or not answer_letters(truth) <= set(LETTERS):
            raise HarnessDocError(f"question {question_label(doc)}: answer {truth!r} is not letters A-E")
        extraction = extract_answer(single_response(doc, results), self.task, doc_options(doc))
        predicted = ",".join(extraction.letters) if extraction.letters else None
        record = {
            "question_id": question_label(doc),
            "image_id": str(doc.get("image_id")),
            "predicted": predicted,
            "extraction": extraction.method,
        }
        scores = question_scores(self.task, truth, predicted)
        return {metric: {**record, "score": scores[metric]} for metric in TASK_METRICS[self.task]}


def mean_score(items: Sequence[Mapping]) -> float | None:
    """The mean `score` of the per-question values (None without questions): each metric's aggregation."""
    if not items:
        return None
    return math.fsum(item["score"] for item in items) / len(items)
