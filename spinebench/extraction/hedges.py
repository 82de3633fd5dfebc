"""Stages 3 and 4, refusals and hedges: responses whose option mentions are no answer."""

from __future__ import annotations

import re

from spinebench.extraction.names import OptionNames

# A model that declines to answer, or says it cannot tell options apart: its mentions of options are not
# answers (explicit letters and concluding phrases still are).
_REFUSAL = re.compile(
    r"""(?:
        \bi\s*(?:cannot|can't|can\s+not|am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+able\s+to|'m\s+not\s+able\s+to|
            won't|will\s+not|must\s+not)\s+(?:provide|give|offer|make|determine|assist|help|diagnose|answer|select|
            choose|interpret|view|see|evaluate|assess|tell|commit|identify|act|be\s+(?:sure|certain))
      | \bas\s+an\s+ai\b|\bi'?m\s+an\s+ai\b|\bi\s+am\s+an\s+ai\b
      | \bnot\s+(?:able|qualified)\s+to\s+(?:provide|make|give|interpret)
      | \bcannot\s+(?:be\s+)?(?:reliably\s+|confidently\s+)?
            (?:determined|identified|assessed|localised|localized|tell)
      | \b(?:impossible|not\s+possible)\s+to\s+(?:tell|determine|decide|choose|say)
      | \bdoes\s+not\s+allow\b|\binsufficient\s+(?:information|quality|detail)
      | \bi'?m\s+sorry\b|\bi\s+apologi[sz]e\b
      | 无法|不能确定|抱歉|\bno\s+puedo\b|\blo\s+siento\b
      | \bich\s+kann\b[^.]*\bkeine?\b|\bnicht\s+m(?:ö|o)glich\b
      | \bje\s+ne\s+peux\s+pas\b|\bimpossible\s+de\b|\bn(?:ã|a)o\s+posso\b|\bnon\s+posso\b|не\s+могу
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# A hedge between options ("either L4/L5 or L5/S1", "B or D", "could be read as X or as Y").
_EITHER = re.compile(r"\beither\b|\bentweder\b|\bsoit\b", re.IGNORECASE)
_OR_BETWEEN = re.compile(
    r"\s*,?\s*(?:or|oder|ou|o|или)\s+(?:as\s+)?(?:(?:an?|the)\s+)?(?:[a-z]+\s+)?|\s*或\s*", re.IGNORECASE
)


def refuses(text: str) -> bool:
    """Whether the response declines to answer or says it cannot tell the options apart."""
    return bool(_REFUSAL.search(text))


def hedges_between_options(text: str, names: OptionNames) -> bool:
    """Whether `text` hedges between options: "X or Y", "either L4/L5 or L5/S1", "as X or as an early Y"."""
    mentions = names.mentions(text)
    for first, second in zip(mentions, mentions[1:], strict=False):
        if first[2] != second[2] and _OR_BETWEEN.fullmatch(text[first[1] : second[0]]):
            return True
    return bool(_EITHER.search(text)) and len({mention[2] for mention in mentions}) > 1
