"""Sentence and clause bounds, aware of lone option letters ("C. ...") and hard-wrapped lines."""

from __future__ import annotations

import re

# Sentence ends: closing punctuation before a space (not after a lone option letter, "C. Spondylolisthesis"),
# and line breaks, except a break inside a hard-wrapped sentence (a lower-case word or comma before it and a
# lower-case word after it).
_SENTENCE_END = re.compile(r"(?<![\s(\[][A-E])(?<!^[A-E])[.!?;]+(?=\s|$)|\n", re.MULTILINE)


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, in order (see `_SENTENCE_END`)."""
    spans, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        if end[0] == "\n" and wrapped_line(text, end.start()):
            continue
        if text[start : end.end()].strip():
            spans.append((start, end.end()))
        start = end.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def wrapped_line(text: str, newline: int) -> bool:
    """Whether the line break at `newline` continues a sentence on the next line."""
    before = text[:newline].rstrip(" \t")
    after = text[newline + 1 :].lstrip(" \t")
    if re.search(r"\b(?:at|of|in|on|to|the|an?|and|or|with|from|by|is|are|was|were)$", before, re.IGNORECASE):
        return bool(after) and not after.startswith(("-", "*", "•"))
    return bool(re.search(r"[a-z0-9,]$", before) and re.match(r"[a-z]", after))


# Clause boundaries for negation scope: punctuation and contrast words ("..., but", "while ...").
_CLAUSE_BOUNDARY = re.compile(r"[,;:]|\b(?:but|while|whereas|although|however)\b", re.IGNORECASE)


def clause_bounds(sentence: str, start: int, end: int) -> tuple[int, int]:
    """The clause around `sentence[start:end]`: between punctuation and contrast words."""
    clause_start, clause_end = 0, len(sentence)
    for boundary in _CLAUSE_BOUNDARY.finditer(sentence):
        if boundary.end() <= start:
            clause_start = boundary.end()
        elif boundary.start() >= end and clause_end == len(sentence):
            clause_end = boundary.start()
    return clause_start, clause_end
