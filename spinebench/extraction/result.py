"""What extraction produces: the result and its paths, the candidate answers of stages 1 and 2, validity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from spinebench.extraction.lists import LetterList
from spinebench.vocab import LETTERS

METHODS: tuple[str, ...] = ("final_phrase", "fallback", "option_text", "low_confidence", "none")

# Extraction paths whose answers a configured judge reads again (finalize.judge_answers).
JUDGED_METHODS: tuple[str, ...] = ("low_confidence", "none")


class Extraction(NamedTuple):
    """What was extracted: sorted unique letters (None when nothing valid) and the stage that decided."""

    letters: tuple[str, ...] | None
    method: str


NONE = Extraction(None, "none")


def validate_letters(
    letters: tuple[str, ...], task: str, options: Mapping[str, str]
) -> tuple[str, ...] | None:
    """The task's answer from extracted letters: None when a letter is not an option or the count is wrong.

    Diagnosis answers are exactly one letter; localization answers are one or more letters, sorted, unique.
    """
    allowed = set(options) if options else set(LETTERS)
    unique = tuple(sorted(set(letters)))
    if not unique or any(letter not in allowed for letter in unique):
        return None
    if task == "diagnosis" and len(unique) != 1:
        return None
    return unique


class Candidate(NamedTuple):
    """A statement of an answer at `position`: its letters, or None for a statement that is no answer."""

    position: int
    letters: tuple[str, ...] | None
    by_text: bool


def list_candidate(position: int, parsed: LetterList) -> Candidate:
    """A candidate from a parsed list: no letters when the list hedges or conflicts with its own texts."""
    letters = None if parsed.hedged or parsed.conflict else parsed.letters
    return Candidate(position, letters, parsed.by_text)
