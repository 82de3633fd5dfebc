"""The whole extraction: the response prepared, then the stages in order (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping

from spinebench.extraction.continuation import cut_continuation
from spinebench.extraction.final_phrase import final_phrase_candidate
from spinebench.extraction.names import OptionNames
from spinebench.extraction.normalize import normalize_response
from spinebench.extraction.option_text import option_text_answer
from spinebench.extraction.result import NONE, Candidate, Extraction, validate_letters
from spinebench.extraction.statements import explicit_candidates


def extract_answer(response: str | None, task: str, options: Mapping[str, str]) -> Extraction:
    """The answer a response commits to, and the stage that found it (see the package docstring).

    `options` maps letters A-E to option texts. Diagnosis gives exactly one letter; localization a sorted
    tuple of unique letters; `Extraction(None, "none")` when nothing valid is found.
    """
    if task not in ("diagnosis", "localization"):
        raise ValueError(f"unknown task {task!r}")
    if response is None or not response.strip():
        return NONE
    names = OptionNames.of(options)
    text = cut_continuation(normalize_response(response), names, task)
    if not text.strip():
        return NONE
    final = final_phrase_candidate(text, names)
    if final is not None:
        return _decide(final, task, names, "final_phrase")
    explicit = explicit_candidates(text, names, task)
    if explicit:
        last = explicit[-1]
        return _decide(last, task, names, "option_text" if last.by_text else "fallback")
    return option_text_answer(text, names, task) or NONE


def _decide(candidate: Candidate, task: str, names: OptionNames, method: str) -> Extraction:
    """The answer of the deciding candidate, or none when it is no valid answer."""
    if candidate.letters is None:
        return NONE
    valid = validate_letters(candidate.letters, task, names.options)
    return Extraction(valid, method) if valid else NONE
