"""Stages 3 and 4, affirmed mentions: runs of option mentions that their clause does not negate."""

from __future__ import annotations

from typing import NamedTuple

from spinebench.extraction.cues import concludes, cued
from spinebench.extraction.lines import whole_line_list
from spinebench.extraction.lists import AND, OR
from spinebench.extraction.names import OptionNames
from spinebench.extraction.negation import is_normal, negated
from spinebench.extraction.sentences import clause_bounds, sentences


class Run(NamedTuple):
    """Option mentions joined by list separators ("L4/L5 and L5/S1"), with what the response says of them."""

    start: int
    end: int
    letters: tuple[str, ...]
    strong: bool  # a concluding phrase introduces the run, or it fills a line on its own
    sentence: tuple[int, int]


def affirmed_runs(text: str, names: OptionNames, task: str) -> list[Run]:
    """Every run of option mentions that its clause does not negate, in text order.

    A negation before the run in its clause ("no spondylolisthesis", "loss of the normal cervical lordosis")
    or right after it ("osteophytes are absent", "was also considered", "L1/L2 is normal") excludes the run.
    Questions and an unfinished last sentence are not read.
    """
    spans = sentences(text)
    found = []
    for index, (sentence_start, sentence_end) in enumerate(spans):
        body = text[sentence_start:sentence_end]
        mentions = names.mentions(body)
        last = index == len(spans) - 1
        if body.rstrip().endswith("?") or (last and _truncated(body, len(spans), mentions)):
            continue
        concluding = concludes(body)
        alone = whole_line_list(body, names)
        for start, end, letters in _runs(body, mentions):
            clause_start, clause_end = clause_bounds(body, start, end)
            after = body[end:]
            if negated(body[clause_start:start], after):
                continue
            if is_normal(body[end:clause_end], task):
                continue
            strong = (
                concluding
                or cued(body[:start], body[end:clause_end])
                or (alone is not None and alone.by_text)
            )
            found.append(
                Run(
                    sentence_start + start,
                    sentence_start + end,
                    letters,
                    strong,
                    (sentence_start, sentence_end),
                )
            )
    return found


def _runs(body: str, mentions: list[tuple[int, int, str]]) -> list[tuple[int, int, tuple[str, ...]]]:
    """Mentions grouped into runs: consecutive mentions with only a list separator between them."""
    runs: list[tuple[int, int, tuple[str, ...]]] = []
    for start, end, letter in mentions:
        gap = body[runs[-1][1] : start] if runs else ""
        if runs and (start < runs[-1][1] or not gap.strip() or AND.fullmatch(gap) or OR.fullmatch(gap)):
            first = runs[-1]
            runs[-1] = (first[0], max(first[1], end), first[2] + (letter,))
        else:
            runs.append((start, end, (letter,)))
    return runs


def _truncated(sentence: str, count: int, mentions: list[tuple[int, int, str]]) -> bool:
    """Whether the last sentence is an unfinished half-thought ("At L4/L5 the disc") to be left unread.

    A sentence that ends with an option's name ("Diagnosis: Spondylolisthesis") or a short unpunctuated
    answer that is the whole response ("L4/L5 and L5/S1") is finished.
    """
    stripped = sentence.rstrip()
    if stripped[-1:] in tuple(".!?)]\"'") or any(end >= len(stripped) for _, end, _ in mentions):
        return False
    return count > 1 or len(stripped.split()) > 8
