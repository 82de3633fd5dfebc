"""Stage 2, answer-only lines: "(B) Disc space narrowing", "B, D", a bare letter before an explanation."""

from __future__ import annotations

import re

from spinebench.extraction.lists import LetterList, joined, scan_list
from spinebench.extraction.names import OptionNames
from spinebench.extraction.result import Candidate, list_candidate
from spinebench.extraction.sentences import wrapped_line

_LINE_LABEL = re.compile(
    r"^[\s\-•>]*(?:(?:options?|answers?|choices?|selected|final)\s*[:\-]\s*|(?:options?|choices?)\s+(?=\(?[A-E]\b))",
    re.IGNORECASE,
)


def whole_line_list(line: str, names: OptionNames) -> LetterList | None:
    """The answer list when a whole line is only that ("C", "(C)", "[A, C]", "B. L4/L5", "L4/L5 and L5/S1",
    "Osteophytes."); None when anything else is on the line."""
    body = _LINE_LABEL.sub("", line.strip()).strip()
    body = re.sub(r"[\s.!]+$", "", body)
    if not body:
        return None
    parsed = scan_list(body, names)
    if parsed is None or body[parsed.end :].strip(" .,;:!)]"):
        return None
    return parsed


def bare_line_candidates(text: str, names: OptionNames, task: str) -> list[Candidate]:
    """Candidates for answer-only lines: the last block of them, and the first line when it is one.

    Bare lines elsewhere are usually headings of a discussion of each option, so only these two positions
    count, and the first line only when no other line names a different option the same way. A response
    that is only upper-case letters ("BD") lists them.
    """
    lines = text.split("\n")
    starts = [sum(len(line) + 1 for line in lines[:index]) for index in range(len(lines))]
    # A line that a hard-wrapped sentence runs into or out of is part of that sentence, not a line of its own.
    wrapped = [index > 0 and wrapped_line(text, starts[index] - 1) for index in range(len(lines))] + [False]
    parsed = [
        None if wrapped[index] or wrapped[index + 1] else whole_line_list(line, names)
        for index, line in enumerate(lines)
    ]
    filled = [index for index, line in enumerate(lines) if line.strip()]
    if not filled:
        return []
    candidates = []
    block: LetterList | None = None
    block_start = None
    for index in reversed(filled):
        if parsed[index] is None:
            break
        block = parsed[index] if block is None else joined(parsed[index], block)
        block_start = index
    if block is not None and not _restates_options(block, names):
        candidates.append(list_candidate(starts[block_start], block))
    first = filled[0]
    others = {letter for index in filled[1:] if parsed[index] for letter in parsed[index].letters}
    if parsed[first] is not None and block_start != first and not others - set(parsed[first].letters):
        candidates.append(list_candidate(starts[first], parsed[first]))
    concatenated = re.fullmatch(r"\s*([A-E]{2,5})\s*", text)
    if concatenated and task == "localization" and len(set(concatenated[1])) == len(concatenated[1]):
        candidates.append(Candidate(0, tuple(concatenated[1]), False))
    return candidates


def _restates_options(parsed: LetterList, names: OptionNames) -> bool:
    """Whether a list of lines is the option list read back (every option, in letter order)."""
    return len(names.options) > 1 and list(parsed.letters) == sorted(names.options)
