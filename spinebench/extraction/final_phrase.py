"""Stage 1: the final phrase the prompts demand (`My final option: [X]`), or its translation."""

from __future__ import annotations

import re

from spinebench.extraction.lists import scan_list
from spinebench.extraction.names import OptionNames
from spinebench.extraction.result import Candidate, list_candidate

_FINAL_PHRASE = re.compile(
    r"(?:\bmy\s+final\s+options?|\bmis?\s+opci(?:o|ó)n(?:es)?\s+finale?s?|\bmeine?n?\s+endg(?:ü|u)ltigen?\s+option(?:en)?"
    r"|\bmon\s+option\s+finale|\bmes\s+options\s+finales|\bminhas?\s+op(?:ç|c)(?:ão|ões|ao|oes)\s+fina(?:l|is)"
    r"|\b(?:la\s+mia|le\s+mie)\s+opzion[ei]\s+final[ei]|мой\s+окончательный\s+вариант|мои\s+окончательные\s+варианты"
    r"|我的最终(?:选项|选择|答案)|最終的な選択肢|최종\s*선택)"
    r"\s*(?:is|are|would\s+be|es|son|ist|sind|est|sont|é|è)?\s*[:=\-–—]?\s*",
    re.IGNORECASE,
)


def final_phrase_candidate(text: str, names: OptionNames) -> Candidate | None:
    """The last final phrase and what follows it on its line; None when the phrase is absent.

    A phrase followed by no list at all (an instruction restated in prose) is no candidate; one followed by
    an invalid list ("[X]", "[None]") is a candidate without letters.
    """
    for match in reversed(list(_FINAL_PHRASE.finditer(text))):
        line = text[match.end() :].split("\n", 1)[0]
        parsed = scan_list(line, names)
        if parsed is not None:
            return list_candidate(match.start(), parsed)
        if re.match(r"\s*\[", line):
            return Candidate(match.start(), None, False)
    return None
