"""The judge model: its prompt, and the reading of its reply with the extraction rules."""

from __future__ import annotations

import re
from collections.abc import Mapping

from spinebench.extraction.pipeline import extract_answer


def judge_prompt(response: str | None, task: str, options: Mapping[str, str]) -> str:
    """Prompt asking a judge model which option(s) `response` commits to, answered in the final-phrase form.

    The judge reads the response only; it is told not to answer the question itself, so that a judge
    cannot turn a non-answer into a correct one.
    """
    listed = "\n".join(f"{letter}: {options[letter]}" for letter in sorted(options))
    if task == "diagnosis":
        rule = "The question has exactly one correct option; the response may commit to one letter."
        form = "My final option: [X]"
    else:
        rule = "The question may have several correct options; the response may commit to several letters."
        form = "My final options: [X, Y, ...]"
    return (
        "You are grading how a model answered a multiple-choice question. Do not answer the question "
        "yourself and do not judge whether the answer is right: report only which option letter(s) the "
        f"response finally commits to.\n{rule}\n\nOptions:\n{listed}\n\n"
        f"Response:\n<<<\n{response or ''}\n>>>\n\n"
        f"Reply with exactly one line of the form `{form}`, using the option letters above. If the response "
        "refuses, is cut off before concluding, or commits to no option, reply `My final option: [NONE]`."
    )


def parse_judge_reply(text: str | None, task: str) -> tuple[str, ...] | None:
    """Letters from a judge reply to `judge_prompt`; None for NONE, an invalid or an unreadable reply."""
    if not text:
        return None
    result = extract_answer(text, task, {})
    return result.letters if result.method in ("final_phrase", "fallback") else None


def judge_says_none(text: str | None) -> bool:
    """Whether a judge reply states that the response commits to no option (`[NONE]`)."""
    return bool(text) and re.search(r"\[\s*none\s*\]", text, re.IGNORECASE) is not None
