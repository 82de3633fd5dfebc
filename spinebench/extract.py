"""Answer extraction: from a model's free-text response to the option letters it committed to.

The stable import path of the extraction rules, which live in spinebench/extraction/ (one concern a module;
the stages and the module map are in its package docstring, the contract in docs/extraction.md).
"""

from __future__ import annotations

from spinebench.extraction.judge import judge_prompt, judge_says_none, parse_judge_reply
from spinebench.extraction.levels import mentioned_levels
from spinebench.extraction.lists import parse_letter_list
from spinebench.extraction.normalize import normalize_response
from spinebench.extraction.pipeline import extract_answer
from spinebench.extraction.result import JUDGED_METHODS, METHODS, Extraction, validate_letters
from spinebench.extraction.synonyms import OPTION_SYNONYMS

__all__ = [
    "JUDGED_METHODS",
    "METHODS",
    "OPTION_SYNONYMS",
    "Extraction",
    "extract_answer",
    "judge_prompt",
    "judge_says_none",
    "mentioned_levels",
    "normalize_response",
    "parse_judge_reply",
    "parse_letter_list",
    "validate_letters",
]
