"""Stage 2: every explicit statement of letters in a response, gathered in text order."""

from __future__ import annotations

from spinebench.extraction.final_phrase import final_phrase_candidate
from spinebench.extraction.lines import bare_line_candidates
from spinebench.extraction.markers import letter_first_candidates, marker_candidates
from spinebench.extraction.names import OptionNames
from spinebench.extraction.references import reference_candidates
from spinebench.extraction.result import Candidate


def explicit_candidates(text: str, names: OptionNames, task: str) -> list[Candidate]:
    """Every explicit statement of letters in `text` (stage 2), in text order."""
    candidates = (
        marker_candidates(text, names)
        + letter_first_candidates(text, names)
        + reference_candidates(text, names, task)
        + bare_line_candidates(text, names, task)
    )
    return sorted(candidates, key=lambda candidate: candidate.position)


def has_explicit_answer(text: str, names: OptionNames, task: str) -> bool:
    """Whether `text` states an answer in so many words (stage 1 or 2)."""
    return final_phrase_candidate(text, names) is not None or bool(explicit_candidates(text, names, task))
