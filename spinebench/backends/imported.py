"""Backend `imported`: a model whose predictions were made elsewhere (lmms-eval, VLMEvalKit, a script).

Its predict job asks no model: it reads the responses of the job's task from the predictions file with the
format's reader (spinebench.imports) when it opens, and answers each item with the response recorded for
its question. The responses then go through the same extraction (and judge, when one is configured),
metrics and report as those of a model this workflow queried itself.

A question the file does not answer, or answers with null, is a failed item whose error names the file and
the question: `evaluate.max_failed_items` decides whether the job accepts it (as a wrong answer) or fails.

The fingerprint holds the SHA-256 of the predictions file(s) and a digest of the responses read from them,
not their path: an edited file is imported again (as is the same file read differently by a fixed reader),
while a file moved elsewhere with the same content reuses every item already recorded.

Settings (params.yaml `models.{name}` with `backend: imported`): `format` (one of
spinebench.imports.FORMATS) and either `path` (one file or folder holding both tasks) or `tasks`
(task -> file or folder, for formats written one file per task). Relative paths are relative to the
project folder (the workflow's working directory).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

import pandas as pd

from spinebench.backends.base import (
    Backend,
    BackendContext,
    BackendError,
    Item,
    ItemResult,
    ResultSink,
    check_settings,
)
from spinebench.imports import FORMATS, read_responses
from spinebench.imports.locations import IMPORTED_BACKEND, content_digest, predictions_path

SETTINGS = ("format", "path", "tasks")


def responses_digest(responses: pd.DataFrame) -> str:
    """SHA-256 of the (question id, response) pairs read, in question id order."""
    pairs = sorted(zip(responses["question_id"], responses["response"], strict=True))
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


class ImportedBackend(Backend):
    """Answers each item with the response a predictions file made elsewhere records for its question."""

    backend_name = IMPORTED_BACKEND
    needs_images = False

    def __init__(self, model_name: str, settings: Mapping, context: BackendContext) -> None:
        super().__init__(model_name)
        check_settings(model_name, settings, SETTINGS, required=("format",))
        self.format = settings["format"]
        if self.format not in FORMATS:
            raise BackendError(
                f"model {model_name!r}: unknown predictions format {self.format!r}; "
                f"expected one of {', '.join(FORMATS)}"
            )
        if context.task is None or context.questions is None:
            raise BackendError(
                f"model {model_name!r}: an imported model answers only a predict job's questions "
                "(the context lacks the job's task and question table; it cannot be a judge)"
            )
        self.task = context.task
        self.path = predictions_path(model_name, settings, self.task)
        if not self.path.exists():
            raise BackendError(f"model {model_name!r}: predictions path {self.path} does not exist")
        self.sha256 = content_digest(self.path)
        responses = read_responses(self.format, self.path, self.task, context.questions)
        self.responses: dict[str, str | None] = dict(
            zip(responses["question_id"], responses["response"], strict=True)
        )
        self._responses_sha256 = responses_digest(responses)

    def fingerprint_data(self) -> dict:
        return {"format": self.format, "sha256": self.sha256, "responses": self._responses_sha256}

    def answer(self, question_id: str) -> ItemResult:
        """The item's result: its recorded response, or an error naming the file and the question."""
        if question_id not in self.responses:
            error = f"{self.path}: no prediction for question {question_id}"
        elif self.responses[question_id] is None:
            error = f"{self.path}: the prediction for question {question_id} has no response"
        else:
            return ItemResult(question_id, self.responses[question_id], None, 0.0, 1)
        return ItemResult(question_id, None, error, 0.0, 1)

    def run(self, items: Iterable[Item], on_result: ResultSink) -> None:
        for item in items:
            if item.task != self.task:
                raise BackendError(
                    f"model {self.model_name!r} imported {self.task} predictions, "
                    f"but was asked {item.task} question {item.question_id}"
                )
            on_result(self.answer(item.question_id))
