"""How a question's options are named in a response: by their text, a synonym, or a lumbar level."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from spinebench.extraction.levels import level_spans, mentioned_levels
from spinebench.extraction.synonyms import OPTION_SYNONYMS

# A whole study called normal names the Healthy option ("The lumbar spine radiograph is normal.").
_NORMAL_STUDY = re.compile(
    r"\b(?:spine|study|radiograph|image|examination|exam|mri|scan|x-ray)\s+(?:is|appears|looks)\s+"
    r"(?:entirely\s+|completely\s+)?(?:normal|unremarkable)\b"
    r"|\bno\s+(?:abnormality|abnormalities)\s+(?:is\s+|are\s+)?(?:seen|identified|detected)\b",
    re.IGNORECASE,
)

_HEALTHY_ADJECTIVE = re.compile(
    r"\s+(?!(?:spine|spinal|lumbar|cervical|study|patient|individual|image|appearance|subject|person|and|or|"
    r"with|without|on|in|at|overall)\b)[a-z]",
)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def fold(text: str) -> str:
    """Lower case without accents, one character for one (so that positions stay valid in the original)."""
    folded = []
    for char in text:
        lower = char.lower()
        char = lower if len(lower) == 1 else char
        decomposed = unicodedata.normalize("NFKD", char)
        folded.append(decomposed[0] if decomposed[:1].isascii() and decomposed[:1].isalpha() else char)
    return "".join(folded)


@dataclass(frozen=True)
class OptionNames:
    """How a question's options can be named in a response: by text (and synonyms) or by lumbar level.

    Option texts too short to be told apart from ordinary text (a digit, a single letter such as "A")
    are never matched as text: "5 lumbar vertebrae" does not name an option "5".
    """

    options: Mapping[str, str]
    patterns: tuple[tuple[str, re.Pattern], ...]  # (letter, name pattern over folded text)
    level_letters: Mapping[str, str]  # canonical level -> letter, for options that are levels

    @classmethod
    def of(cls, options: Mapping[str, str] | None) -> OptionNames:
        options = dict(options or {})
        patterns, level_letters = [], {}
        for letter, text in sorted(options.items()):
            levels = mentioned_levels(text)
            if len(levels) == 1 and re.fullmatch(r"\s*L\s?\d\s*[/\-]\s*[LS]?\s?\d\s*", text):
                level_letters[levels.pop()] = letter
                continue
            for name in (text, *OPTION_SYNONYMS.get(text, ())):
                pattern = _name_pattern(name)
                if pattern is not None:
                    patterns.append((letter, pattern))
        return cls(options, tuple(patterns), level_letters)

    def mentions(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, letter) of every option named in `text`, by text or by level, in text order.

        A shorter name inside a longer one of another option ("stenosis" in ...) cannot occur with the
        benchmark's labels; overlapping mentions of the same option are kept once.
        """
        folded = fold(text)
        found = [
            (match.start(), match.end(), letter)
            for letter, pattern in self.patterns
            for match in pattern.finditer(folded)
        ]
        found += [
            (start, end, self.level_letters[level])
            for start, end, level in level_spans(text)
            if level in self.level_letters
        ]
        if "Healthy" in self.options.values():
            healthy = next(letter for letter, text in self.options.items() if text == "Healthy")
            found += [(match.start(), match.end(), healthy) for match in _NORMAL_STUDY.finditer(text)]
            # "healthy discs", "healthy segments": the adjective of something else, not the Healthy option.
            found = [
                mention
                for mention in found
                if mention[2] != healthy or not _HEALTHY_ADJECTIVE.match(text, mention[1])
            ]
        return _drop_overlaps(sorted(found, key=lambda mention: (mention[0], mention[0] - mention[1])))

    def name_at(self, text: str) -> tuple[int, tuple[str, ...]] | None:
        """(length, letters) of the option name(s) that `text` starts with (a level range names several)."""
        text_start = len(text) - len(text.lstrip())
        # Names are short: the first 120 characters hold any name that starts the text.
        starting = [
            mention for mention in self.mentions(text[: text_start + 120]) if mention[0] == text_start
        ]
        if not starting:
            return None
        end = max(mention[1] for mention in starting)
        return end, tuple(dict.fromkeys(letter for _, _, letter in starting))


@functools.cache  # a few dozen names (labels and synonyms), asked for again by every response
def _name_pattern(name: str) -> re.Pattern | None:
    """A pattern for `name` over folded text; None for names too short or too plain to be matched safely."""
    folded = fold(name).strip()
    if CJK.search(folded):
        return re.compile(re.escape(folded)) if len(folded) >= 2 else None
    words = re.findall(r"[a-z0-9]+", folded)
    letters = sum(len(word) for word in words if not word.isdigit())
    if letters < 3:
        return None
    body = r"[\s\-]+".join(re.escape(word) for word in words)
    return re.compile(rf"(?<![a-z0-9]){body}(?![a-z0-9])")


def _drop_overlaps(mentions: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Mentions without repeats: of overlapping mentions of one letter, the first (and longest) is kept."""
    kept: list[tuple[int, int, str]] = []
    for mention in mentions:
        if any(other[2] == mention[2] and other[0] < mention[1] and mention[0] < other[1] for other in kept):
            continue
        kept.append(mention)
    return kept
