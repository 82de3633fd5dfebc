"""Stage 2, option references: a letter with its option's text in a concluding position ("consistent with
(D) Osteophytes", "spinal canal stenosis (E)")."""

from __future__ import annotations

import re

from spinebench.extraction.lists import AND, attached_text
from spinebench.extraction.names import OptionNames
from spinebench.extraction.result import Candidate
from spinebench.extraction.sentences import clause_bounds, sentences

# A letter and the text of its option, either order: "(D) Osteophytes", "D: Osteophytes", "option B,
# foraminal stenosis", "spinal canal stenosis (E)", "L4-5 and L5-S1 (options B and D)", "option E".
_LETTER_THEN_TEXT = re.compile(
    r"(?<![A-Za-z0-9(])(?:(?:options?|choices?)\s+(?P<word>[A-E](?:\s*(?:,\s*(?:and\s+)?|\s+(?:and|or)\s+|\s*&\s*)[A-E])*)\b"
    r"|\((?P<paren>[A-E])\)|(?P<plain>[A-E])\s*[.):\-–—])",
)
_PAREN_LETTERS = re.compile(
    r"\(\s*(?:options?\s+|choices?\s+)?(?P<letters>[A-E](?:\s*(?:,|and|&)\s*[A-E])*)\s*\)", re.IGNORECASE
)

# Before a reference in its clause: words that make it discussion, not a conclusion.
_NOT_CONCLUDING_BEFORE = re.compile(
    r"\b(?:not|no|never|without|unlikely|rather\s+than|instead\s+of|other\s+than|except|exclude[sd]?|"
    r"rule[sd]?\s+out|less\s+likely|if|whether|neither|nor|considered?|versus|vs|differentials?|such\s+as|"
    r"options\s+are|between|including|unless|nicht|kein|pas|sin|sem|senza|non)\b|不是|未见|排除|或",
    re.IGNORECASE,
)
# A clause that opens by turning to an option for discussion: "Looking at option C (...), ...".
_DISCUSSION_LEAD = re.compile(
    r"^\s*(?:looking\s+at|regarding|considering|consider|for|as\s+for|about|evaluating|assessing|examining|"
    r"analy[sz]ing|reviewing|moving\s+on\s+to|next|now|first|second|third|then|option|options)\b",
    re.IGNORECASE,
)
# After a reference: a verb makes the reference the subject of a sentence, which only a positive predicate
# (the letter-first conclusions) turns into a conclusion.
_VERB_AFTER = re.compile(
    r"^\s*(?:is|are|was|were|would|could|can|may|might|should|does|do|did|has|have|had|seems?|appears?|"
    r"fits?|looks?|remains?|cannot|can't|isn't|wasn't|shows?|show|requires?|needs?|must|will|represents?|"
    r"presents?|typically|usually|refers?|involves?|causes?)\b",
    re.IGNORECASE,
)
_HEDGE_AFTER = re.compile(r"^\s*,?\s*(?:or|either|oder|ou|o)\b|^\s*或", re.IGNORECASE)


def reference_candidates(text: str, names: OptionNames, task: str) -> list[Candidate]:
    """Candidates for option references in a concluding position (a complement, not a subject).

    "The findings are most consistent with (D) Osteophytes." commits to D; "(A) Healthy is unlikely",
    "Option C (Vertebral collapse) would show ..." and "Looking at option C (...)" do not. Consecutive
    references joined by list separators make one multi-letter candidate; a sentence that lists three or
    more options is a restatement of the options, never an answer.
    """
    candidates = []
    for sentence_start, sentence_end in sentences(text):
        sentence = text[sentence_start:sentence_end]
        groups = _reference_groups(sentence, names)
        referenced = {letter for group in groups for letter in group[2]}
        if (task == "diagnosis" and len(referenced) >= 3) or referenced == set(names.options):
            continue  # the options read back
        for start, end, letters, conflict in groups:
            clause_start, _ = clause_bounds(sentence, start, end)
            before, after = sentence[:start], sentence[end:]
            if (
                conflict
                or _NOT_CONCLUDING_BEFORE.search(sentence[clause_start:start])
                or _HEDGE_AFTER.match(after)
            ):
                continue
            if not before.strip(" \t-•>:") or _DISCUSSION_LEAD.match(before) or _VERB_AFTER.match(after):
                continue
            candidates.append(Candidate(sentence_start + start, letters, False))
    return candidates


def _reference_groups(sentence: str, names: OptionNames) -> list[tuple[int, int, tuple[str, ...], bool]]:
    """(start, end, letters, conflict) of each run of references in `sentence` joined by list separators."""
    references = _references(sentence, names)
    groups: list[tuple[int, int, tuple[str, ...], bool]] = []
    for start, end, letters, conflict in references:
        if groups and AND.fullmatch(sentence[groups[-1][1] : start]):
            first = groups[-1]
            groups[-1] = (first[0], end, first[2] + letters, first[3] or conflict)
        else:
            groups.append((start, end, letters, conflict))
    return groups


def _references(sentence: str, names: OptionNames) -> list[tuple[int, int, tuple[str, ...], bool]]:
    """(start, end, letters, conflict) of letter-then-text and text-then-letter references, in order."""
    found = []
    for match in _LETTER_THEN_TEXT.finditer(sentence):
        if match["word"]:
            # "option E", "options B and D": a reference by letter alone; "options B or D" hedges.
            if not re.search(r"\bor\b", match["word"]):
                found.append((match.start(), match.end(), tuple(re.findall(r"[A-E]", match["word"])), False))
            continue
        letter = match["paren"] or match["plain"]
        own = attached_text(sentence[match.end() :], letter, names)
        if own is not None:
            length, conflict = own
            found.append((match.start(), match.end() + length, (letter,), conflict))
    mentions = names.mentions(sentence)
    for match in _PAREN_LETTERS.finditer(sentence):
        letters = tuple(re.findall(r"[A-E]", match["letters"]))
        preceding = [mention for mention in mentions if mention[1] <= match.start()]
        run = _mention_run(sentence, preceding, match.start())
        if run:
            named = {mention[2] for mention in run}
            found.append((run[0][0], match.end(), letters, named != set(letters)))
    return _without_nested(sorted(found))


def _mention_run(sentence: str, mentions: list[tuple[int, int, str]], end: int) -> list[tuple[int, int, str]]:
    """The mentions that lead up to `end`, joined by list separators (and nothing but a location between the
    last one and `end`: "spondylolisthesis de L4 sur L5 (C)")."""
    run: list[tuple[int, int, str]] = []
    for mention in reversed(mentions):
        gap = sentence[mention[1] : run[0][0] if run else end]
        joined = AND.fullmatch(gap) or not gap.strip() or (not run and _is_location(gap))
        if not joined:
            break
        run.insert(0, mention)
    return run


def _is_location(gap: str) -> bool:
    """Whether `gap` is a short location phrase between an option's text and its letter ("at L4-L5")."""
    return bool(re.fullmatch(r"\s*(?:at|of|in|on|de|en|bei|a|di)\s+[\w/\-– ]{1,25}\s*", gap, re.IGNORECASE))


def _without_nested(
    found: list[tuple[int, int, tuple[str, ...], bool]],
) -> list[tuple[int, int, tuple[str, ...], bool]]:
    """References not inside another (a letter-then-text reference can also appear as text-then-letter)."""
    kept: list[tuple[int, int, tuple[str, ...], bool]] = []
    for reference in found:
        if kept and reference[0] < kept[-1][1]:
            if reference[1] - reference[0] > kept[-1][1] - kept[-1][0]:
                kept[-1] = reference
            continue
        kept.append(reference)
    return kept
