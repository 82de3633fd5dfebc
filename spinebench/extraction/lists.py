"""Answer lists: the letters, option texts or levels listed at the start of a fragment ("[A, C]", "B or D").

A list also tells whether it hedges ("B or D") or conflicts with its own option text ("[B] Osteophytes"
when Osteophytes is D); validity for a task is `result.validate_letters`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from spinebench.extraction.names import CJK, OptionNames

# Separators of a committed list: "A, C", "A and C", "A; C", "A & C", "C y E", "B und D", "B、D", "B和D".
AND = re.compile(
    r"\s*(?:,\s*(?:and\s+|und\s+|et\s+|y\s+|e\s+)?|;\s*|&\s*|\+\s*|\s+(?:and|und|et|y|e|и)\s+|\s*(?:和|与|及|と)\s*)",
    re.IGNORECASE,
)
# Separators of a hedge: "B or D" names two candidates and commits to neither.
OR = re.compile(r"\s*,?\s*(?:\s(?:or|oder|ou|o|ó|или)\s|\s*或\s*)\s*", re.IGNORECASE)
_OPTION_WORD = re.compile(
    r"(?:options?|choices?|opci[oó]n(?:es)?|opç(?:ão|ões)|opzion[ei]|选项|варианты?)\s*(?=[\[(A-Za-z])",
    re.IGNORECASE,
)
# Words that may follow an unbracketed answer letter in prose ("the answer is C because ...").
_LETTER_FOLLOWERS = re.compile(
    r"\s+(?:because|since|as|given|due|which|with|for|based|in|on|here|from|per|according|is|are|"
    r"weil|da|car|porque|parce|perch[eé])\b",
    re.IGNORECASE,
)
_LETTER_TOKEN = re.compile(r"\s*(\(\s*)?([A-Za-z])(\s*\))?")
_BRACKET_JOIN = re.compile(r"\]\s*(?:,|;|&|\band\b)?\s*\[", re.IGNORECASE)
_ITEM_DELIMITER = re.compile(r"\s*(?:[:.)\-–—]\s*|\(\s*)")


class LetterList(NamedTuple):
    """A parsed answer list: its letters in order, where it ends, and what makes it no answer."""

    letters: tuple[str, ...]
    end: int
    hedged: bool  # "B or D"
    conflict: bool  # "[B] Osteophytes" when Osteophytes is option D
    by_text: bool  # every item named an option by its text or level, none by letter


def parse_letter_list(fragment: str, options: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """Upper-case letters listed at the start of `fragment`, in order; None when it lists none.

    "[A, C]", "A and C", "(b)", "C: Spondylolisthesis", "A. L1/L2, C. L3/L4" and "C because ..." all list
    letters; "A lateral view" and "a narrowing" do not. An unclosed bracket at the end of a line is a
    truncated list and lists nothing. Letters outside A-E are returned too: callers decide validity.
    """
    parsed = scan_list(fragment, OptionNames.of(options))
    return parsed.letters if parsed and parsed.letters else None


def scan_list(fragment: str, names: OptionNames) -> LetterList | None:
    """The answer list at the start of `fragment` (letters, option texts or levels); None if there is none."""
    stripped = fragment.lstrip()
    offset = len(fragment) - len(stripped)
    if stripped.startswith("["):
        # Letters bracketed one by one, "[A], [C]", are one list (lengths change: the end is approximate).
        joined = _BRACKET_JOIN.sub(", ", stripped)
        closing = joined.find("]")
        if closing < 0 or "\n" in joined[:closing]:
            return None  # "[B, D" at the end of a truncated response
        inner = _scan_items(joined[1:closing], names)
        if inner is None:
            return None
        end = offset + closing + 1 + (len(stripped) - len(joined))
        conflict = inner.conflict or _conflicts_after(joined[closing + 1 :], inner, names)
        return inner._replace(end=end, conflict=conflict)
    result = _scan_items(stripped, names)
    return None if result is None else result._replace(end=offset + result.end)


def _conflicts_after(suffix: str, parsed: LetterList, names: OptionNames) -> bool:
    """Whether the text right after a bracketed single letter names another option ("[B] Osteophytes")."""
    if len(parsed.letters) != 1 or parsed.by_text:
        return False
    attached = attached_text(suffix, parsed.letters[0], names)
    return attached is not None and attached[1]


def _scan_items(text: str, names: OptionNames) -> LetterList | None:
    """Items separated by list (and hedge) separators, each a letter or an option name."""
    letters: list[str] = []
    position, hedged, conflict, by_text = 0, False, False, True
    while True:
        item = _scan_item(text[position:], names)
        if item is None:
            break
        item_letters, length, item_conflict, item_by_text = item
        letters.extend(item_letters)
        conflict |= item_conflict
        by_text &= item_by_text
        position += length
        separator = AND.match(text, position) or OR.match(text, position)
        if separator is None or _scan_item(text[separator.end() :], names) is None:
            break
        hedged |= separator.re is OR
        position = separator.end()
    if not letters:
        return None
    return LetterList(tuple(letters), position, hedged, conflict, by_text)


def _scan_item(text: str, names: OptionNames) -> tuple[tuple[str, ...], int, bool, bool] | None:
    """(letters, length, conflict, by_text) of the item at the start of `text`, or None."""
    prefix = _OPTION_WORD.match(text)
    start = prefix.end() if prefix else 0
    letter = _letter_at(text[start:], names)
    if letter is not None:
        value, length, conflict = letter
        return (value,), start + length, conflict, False
    named = names.name_at(text[start:])
    if named is None:
        return None
    length, letters = named
    return letters, start + length, False, True


def _letter_at(text: str, names: OptionNames) -> tuple[str, int, bool] | None:
    """(letter, length, conflict) when `text` starts with an option letter, with its own text if attached.

    Brackets make any single letter an option letter. Without them, an upper-case letter must be followed
    by punctuation, the end, a list separator, its option's text or a word that continues an answer
    ("C because ..."), so that "A lateral view", "A coluna" or "E seria" are not options; lower-case
    letters need punctuation or the end after them, and "I" is never a letter.
    """
    match = _LETTER_TOKEN.match(text)
    following = text[match.end() : match.end() + 1] if match else ""
    if not match or (following.isascii() and following.isalnum()):
        return None  # no letter, or the first letter of a word
    bracketed = bool(match[1] or match[3])
    letter, rest = match[2], text[match.end() :]
    if not bracketed and not _free_letter_ok(letter, rest, names):
        return None
    length = match.end()
    own = attached_text(rest, letter.upper(), names)
    if own is not None:
        extra, conflict = own
        return letter.upper(), length + extra, conflict
    return letter.upper(), length, False


def _free_letter_ok(letter: str, rest: str, names: OptionNames) -> bool:
    """Whether an unbracketed letter followed by `rest` is an option letter (see `_letter_at`)."""
    if letter in "Ii":
        return False
    stripped = rest.lstrip()
    if not stripped or stripped[0] in ".,;:!?)]-–—(\"'" or CJK.match(stripped):
        return True
    if letter.islower():
        return False
    return bool(
        AND.match(rest) or OR.match(rest) or _LETTER_FOLLOWERS.match(rest) or names.name_at(rest) is not None
    )


def attached_text(rest: str, letter: str, names: OptionNames) -> tuple[int, bool] | None:
    """(length, conflict) of an option text attached to a letter ("C: Spondylolisthesis", "E (Healthy)").

    The text counts when it is the letter's own option; when it is another option's, the letter conflicts
    with it. None when no option text follows.
    """
    delimiter = _ITEM_DELIMITER.match(rest)
    start = delimiter.end() if delimiter else len(rest) - len(rest.lstrip())
    named = names.name_at(rest[start:])
    if named is None:
        return None
    length, letters = named
    end = start + length
    closing = re.match(r"\s*\)", rest[end:])
    if closing and delimiter and "(" in delimiter[0]:
        end += closing.end()
    return end, letter not in letters


def joined(first: LetterList, second: LetterList) -> LetterList:
    """Two lists read as one (an answer written one item per line): `first`'s letters, then `second`'s."""
    return LetterList(
        first.letters + second.letters,
        second.end,
        first.hedged or second.hedged,
        first.conflict or second.conflict,
        first.by_text and second.by_text,
    )
