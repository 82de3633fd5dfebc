"""Cutting a generated continuation: a new question or dialogue turn invented after the answer."""

from __future__ import annotations

import re

from spinebench.extraction.names import OptionNames
from spinebench.extraction.statements import has_explicit_answer

# A line that starts a generated continuation: a new question, or a new dialogue turn.
_CONTINUATION = re.compile(
    r"^[ \t>\-]*(?:human|user|assistant|next\s+question|the\s+question\s+is|question(?:\s*\d+)?|q\d+"
    r"|pregunta|frage|问题|問題)\s*(?::|\.|$)",
    re.IGNORECASE | re.MULTILINE,
)


def cut_continuation(text: str, names: OptionNames, task: str) -> str:
    """The text before the first generated continuation that follows an explicit answer.

    A continuation before any answer (a response that restates the question first) is kept: cutting there
    would lose the answer that follows it.
    """
    for match in _CONTINUATION.finditer(text):
        prefix = text[: match.start()]
        if prefix.strip() and has_explicit_answer(prefix, names, task):
            return prefix
    return text
