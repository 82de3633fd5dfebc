"""Lumbar level mentions ("L4-5", "L5/S1") and ranges ("from L1/L2 to L5/S1"), in vocab.LEVELS spelling."""

from __future__ import annotations

import re

from spinebench.vocab import LEVELS

_LEVEL_MENTION = re.compile(
    r"(?<![A-Za-z0-9])L\s?([1-5])\s*(?:/|-|–|—|\s)\s*(?:L\s?)?([1-5]|S\s?1)(?![0-9])", re.IGNORECASE
)
# "from L1/L2 to L5/S1", "L1/L2 through L3/L4": every level between the two.
_LEVEL_RANGE = re.compile(
    r"(?P<first>L\s?[1-5]\s*[/\-–]\s*(?:L\s?)?(?:[1-5]|S\s?1))\s*(?:to|through|thru|until|till|bis|hasta|a|à"
    r"|fino\s+a|至|到|~)\s*(?P<last>L\s?[1-5]\s*[/\-–]\s*(?:L\s?)?(?:[1-5]|S\s?1))",
    re.IGNORECASE,
)


def canonical_level(first: str, second: str) -> str | None:
    """The vocab.LEVELS spelling ("L4/L5") of a level mention's two halves; None unless adjacent levels."""
    upper = int(first)
    lower = second.upper().replace(" ", "")
    if lower == "S1":
        return "L5/S1" if upper == 5 else None
    return f"L{upper}/L{lower}" if int(lower) == upper + 1 else None


def level_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, canonical level) of every lumbar level mention, ranges expanded to each level in them."""
    spans = []
    for match in _LEVEL_MENTION.finditer(text):
        level = canonical_level(match[1], match[2])
        if level in LEVELS:
            spans.append((match.start(), match.end(), level))
    for match in _LEVEL_RANGE.finditer(text):
        first = mentioned_levels(match["first"])
        last = mentioned_levels(match["last"])
        if len(first) == 1 and len(last) == 1:
            low, high = sorted((LEVELS.index(first.pop()), LEVELS.index(last.pop())))
            spans.extend((match.start(), match.end(), level) for level in LEVELS[low : high + 1])
    return sorted(spans)


def mentioned_levels(text: str) -> set[str]:
    """Canonical lumbar levels (vocab.LEVELS strings) mentioned in `text`."""
    levels = {canonical_level(match[1], match[2]) for match in _LEVEL_MENTION.finditer(text)}
    return {level for level in levels if level in LEVELS}
