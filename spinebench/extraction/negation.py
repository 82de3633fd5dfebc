"""Stages 3 and 4, negation: a named option negated in its clause, or a level called normal."""

from __future__ import annotations

import re

# Negation of a named option, before it in its clause or right after it.
_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|absence\s+of|absent|loss\s+of|lack\s+of|rather\s+than|instead\s+of|other\s+than|"
    r"except|unlikely|exclude[sd]?|excluding|rul(?:e|es|ed|ing)\s+out|neither|nor|versus|vs|considered|"
    r"if|whether|differential|such\s+as|looking\s+at|regarding|considering|as\s+for|evaluating|assessing|"
    r"kein|keine|sin|sans|pas\s+de|sem|senza|нет)\b|未见|无|没有|排除|不是|非",
    re.IGNORECASE,
)
_NEGATION_AFTER = re.compile(
    r"^\s*\)?\s*,?\s*(?:\([^)]*\)\s*)?(?:(?:does|do|did)\s+not\b|(?:is|are|was|were|appears?|seems?)\s+(?:also\s+)?(?:not|absent|excluded|ruled\s+out|"
    r"unlikely|less\s+likely|considered|normal|preserved|unremarkable|spared|intact|maintained)"
    r"|(?:absent|excluded|ruled\s+out|unlikely|not\s+(?:seen|present|evident|identified))"
    r"|would\s+(?:require|show|appear|be\s+expected|need)|(?:could|might|may)\s+(?:also\s+)?(?:be|explain)"
    r"|appear\s+(?:normal|unremarkable)|(?:is|are)\s+(?:within\s+normal|normal))",
    re.IGNORECASE,
)
_NORMAL_WORDS = re.compile(
    r"\b(?:normal|preserved|unremarkable|spared|intact|maintained|healthy)\b", re.IGNORECASE
)


def negated(clause_before: str, after: str) -> bool:
    """Whether the clause negates a named option: a negation in the clause before it (`clause_before`), or
    right after it (`after`, the rest of the sentence)."""
    return bool(_NEGATION_BEFORE.search(clause_before) or _NEGATION_AFTER.match(after))


def is_normal(after: str, task: str) -> bool:
    """For levels, calling a level normal is a negation ("L1/L2 through L3/L4 are normal")."""
    return task == "localization" and bool(_NORMAL_WORDS.search(after))
