"""Answer extraction: from a model's free-text response to the option letters it committed to.

Extraction runs in stages and the first stage that decides wins:

1. `final_phrase`: the phrase the prompts demand (`My final option: [X]` / `My final options: [X, Y]`),
   tolerant of markdown, missing brackets, case and spacing. The last occurrence decides.
2. `fallback`: other ways of stating a conclusion ("Answer: C", "the answer is B", "I would choose
   option C", "Final options: A, C", "C is correct", a last line that is only "(C)" or "A and C" ...).
   The last conclusion in the text that comes with option letters decides; discussion such as "option A
   is unlikely" is never a conclusion, and a marker followed by a rejection ("therefore option A can be
   excluded") is skipped.
3. `option_text`: the conclusion of the response (from its last concluding sentence) names the text of
   exactly one option (diagnosis) or a set of lumbar levels (localization), negated mentions excluded.
4. `none`: nothing usable (also refusals, empty and truncated responses).

A stage that finds option letters but an invalid answer (a letter outside the options, two letters for a
single-answer question) decides `none`: the model committed to something that is not an answer, and an
earlier, different statement in its reasoning must not be substituted for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from spinebench.vocab import LETTERS, LEVELS

METHODS: tuple[str, ...] = ("final_phrase", "fallback", "option_text", "none")


class Extraction(NamedTuple):
    """What was extracted: sorted unique letters (None when nothing valid) and the stage that decided."""

    letters: tuple[str, ...] | None
    method: str


NONE = Extraction(None, "none")

# Markdown and escaping that models wrap answers in (`**[C]**`, `\[C\]`, `### Answer`, `` `C` ``).
_MARKUP = re.compile(r"[*_`#\\]")

_FINAL_PHRASE = re.compile(r"\bmy\s+final\s+options?\s*(?:is|are|would\s+be)?\s*[:=\-–—]?\s*", re.IGNORECASE)

# Phrases that conclude: each is followed directly by the answer fragment. Matched case-insensitively.
_CONCLUSION_MARKERS = re.compile(
    r"""
    (?:
        # "Answer: C", "the answer is B", "final answer - A and C", "answers are A, C"
        \b(?:final\s+)?answers?(?!\s+(?:options?|choices?))
            \s*(?:is|are|would\s+be|will\s+be|should\s+be|must\s+be)?
            \s*(?:clearly|likely|probably|definitely)?\s*[:=\-–—]?\s*(?:options?|choices?)?
      | # "the correct answer is", "most likely option: C", "best choices are A and C"
        \b(?:correct|best|right|most\s+(?:likely|accurate|appropriate|probable|consistent))
            \s+(?:answers?|options?|choices?|diagnosis|selections?)
            \s*(?:is|are|would\s+be|:)?\s*(?:options?|choices?)?
      | # "I would choose option C", "I select A and C", "I'll go with B"
        \bi(?:\s+would|\s+will|'ll|'d)?\s+(?:choose|select|pick|go\s+with|opt\s+for)\s*(?:options?|choices?)?
      | # "My choice: C", "Final options - A, C", "Selected options: A, C"
        \b(?:my\s+(?:final\s+)?|final\s+)(?:choices?|selections?|picks?)\s*(?:is|are|:|-)\s*(?:options?)?
      | \bfinal\s+options?\s*(?:is|are)?\s*[:=\-–—]?\s*
      | \bselected\s+options?\s*(?:is|are)?\s*[:=\-–—]?\s*
      | # "Therefore, option C", "In conclusion, options A and C": the word "option" is required here,
        # as "therefore A ..." is as often the start of a rejection as of a conclusion.
        \b(?:therefore|thus|hence|so|consequently|in\s+conclusion|in\s+summary|overall|to\s+conclude)
            \s*,?\s*(?:the\s+answer\s+is\s+)?(?:options?|choices?)\s+
      | # LaTeX answers: \boxed{C} (backslash and braces survive as "boxed{")
        \bboxed\s*\{\s*
      | # XML-style answers: <answer>C</answer>
        <answer>\s*
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)

# Conclusions stated letter first: "C is correct", "Option C is the best answer", "A and C are correct".
_LETTER_FIRST_CONCLUSION = re.compile(
    r"""
    \b(?:options?\s+)?(?P<letters>\(?[A-E]\)?(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+)\(?[A-E]\)?)*)
    \s+(?:is|are|would\s+be|seems\s+to\s+be)\s+(?:the\s+)?
    (?:correct|best|right|most\s+(?:likely|accurate|appropriate|consistent))\b
    (?!\s+(?:than|to\s+be\s+confused))
    """,
    re.VERBOSE,
)

# After the letters: words that turn a would-be conclusion into a rejection ("option A can be excluded").
_REJECTION_AFTER = re.compile(
    r"^[\s,]*(?:is|are|was|were|can|could|would|should|seems?|appears?|looks?|remains?)?\s*(?:be\s+)?"
    r"(?:not\b|unlikely|less\s+likely|incorrect|wrong|excluded|ruled\s+out|eliminated|inconsistent)",
    re.IGNORECASE,
)

# Separators between items of a letter list: "A, C", "A and C", "A, C, and E", "A; C", "A & C", "A or C".
_LIST_SEPARATOR = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|;\s*|&\s*|\s+and\s+|\s+or\s+)", re.IGNORECASE)

# Letters bracketed one by one, "[A], [C]" or "[A] and [C]": joined into one list "[A, C]".
_BRACKET_JOIN = re.compile(r"\]\s*(?:,|;|&|\band\b)?\s*\[", re.IGNORECASE)

# One item of a letter list: an optionally bracketed single letter, then whatever follows.
_ITEM = re.compile(
    r"^\s*(?:(?i:options?|choices?)\s+)?"
    r"(?:(?P<open>[(\[])\s*)?(?P<letter>[A-Za-z])(?:\s*(?P<close>[)\]]))?(?P<rest>.*)$",
    re.DOTALL,
)

# What may separate a letter from its option text in "C: Spondylolisthesis", "C. ...", "C) ...", "C - ...".
_TEXT_DELIMITER = re.compile(r"^\s*[:.)\-–—]\s*")

# Lumbar levels as models write them: L4/L5, L4-L5, L4-5, L4–L5, L5/S1, L5-S1.
_LEVEL_MENTION = re.compile(r"\bL\s?([1-5])\s*(?:/|-|–|—|\s)\s*(?:L\s?)?([1-5]|S\s?1)\b", re.IGNORECASE)

# Where a conclusion starts, for option-text matching.
_CONCLUSION_START = re.compile(
    r"\b(?:therefore|thus|hence|consequently|in\s+conclusion|in\s+summary|to\s+conclude|overall|"
    r"final|answer|most\s+likely|most\s+consistent|diagnosis\s*(?:is|:)|i\s+conclude|conclusion|"
    r"affected\s+levels?|levels?\s+(?:affected|involved))(?!\w)",
    re.IGNORECASE,
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

# Clause boundaries for negation scoping; negating words start a new clause so they only cover what follows.
_CLAUSE_BOUNDARY = re.compile(
    r"[,;:.!?\n]|(?=\b(?:but|rather\s+than|instead\s+of|as\s+opposed\s+to|not|no|without|unlike)\b)",
    re.IGNORECASE,
)
_NEGATED_CLAUSE = re.compile(
    r"\b(?:not|no|without|unlikely|less\s+likely|rule[sd]?\s+out|excluded?|rather\s+than|instead\s+of|"
    r"as\s+opposed\s+to|unlike)\b",
    re.IGNORECASE,
)
# For levels, calling a level normal is also a negation ("L1/L2 through L3/L4 are preserved").
_NORMAL_LEVEL_CLAUSE = re.compile(
    r"\b(?:normal|preserved|unremarkable|spared|intact|maintained|healthy)\b",
    re.IGNORECASE,
)

# A model that declines to answer: its mentions of options are not answers.
_REFUSAL = re.compile(
    r"\b(?:i\s*(?:cannot|can't|can\s+not|am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+able\s+to|won't|will\s+not)"
    r"\s+(?:provide|give|offer|make|determine|assist|help|diagnose|answer|select|choose|interpret)"
    r"|as\s+an\s+ai\b|not\s+(?:able|qualified)\s+to\s+(?:provide|make|give)\s+(?:a\s+)?(?:medical\s+)?diagnos)",
    re.IGNORECASE,
)


def normalize_response(text: str) -> str:
    """Drop markdown/escape characters and unify odd whitespace, so that patterns see plain text."""
    text = text.replace("\u00a0", " ").replace("\uff1a", ":").replace("\r\n", "\n")
    return _MARKUP.sub("", text)


def _is_letter_token(open_: str, letter: str, close: str, rest: str) -> bool:
    """Whether an item's leading character is an option letter rather than the start of a word.

    Upper case letters stand alone when followed by a non-alphanumeric character ("C because", "C:").
    Lower case ones need brackets or punctuation/end after them, so that "a narrowing" is not option A.
    The pronoun "I" is never a letter unless bracketed.
    """
    if rest[:1].isalnum():
        return False
    bracketed = bool(open_ or close)
    if letter in "Ii" and not bracketed:
        return False
    if letter.isupper() or bracketed:
        return True
    return rest.strip() == "" or rest.lstrip()[:1] in ":.)-–—,;!?]"


def _comparable(text: str) -> str:
    """Option texts compared case-insensitively, ignoring punctuation and spacing."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def parse_letter_list(fragment: str, options: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """Upper-case letters listed at the start of `fragment`, in order; None when it lists none.

    "[A, C]", "A and C", "(b)", "C: Spondylolisthesis", "A. L1/L2, C. L3/L4" and "C because ..." all list
    letters. The list ends at the first item that is not a letter, or after a letter followed by text that
    is not that option's text (the rest of a sentence). An unclosed bracket at the end of a line is a
    truncated list and lists nothing. Letters outside A-E are returned too: callers decide validity.
    """
    return _scan_letter_list(fragment, options)[0]


def _scan_letter_list(fragment: str, options: Mapping[str, str] | None) -> tuple[tuple[str, ...] | None, str]:
    """`parse_letter_list`, plus the text that follows the last listed letter (for rejection checks)."""
    fragment = _BRACKET_JOIN.sub(", ", fragment.strip())
    suffix = ""
    if fragment.startswith("["):
        closing = fragment.find("]")
        if closing < 0:
            return None, ""
        fragment, suffix = fragment[1:closing], fragment[closing + 1 :]
    letters: list[str] = []
    after = ""
    for item, item_end in _split_items(fragment):
        parsed = _letter_item(item)
        if parsed is None:
            break
        letter, rest = parsed
        letters.append(letter)
        after = rest + fragment[item_end:] + suffix
        if rest.strip() and not _is_option_text(rest.strip(), letter, options):
            break
    return (tuple(letters) or None), after


def _letter_item(item: str) -> tuple[str, str] | None:
    """(upper-case letter, text after it) when `item` starts with an option letter, else None."""
    match = _ITEM.match(item)
    if not match:
        return None
    open_, close = match["open"] or "", match["close"] or ""
    if not _is_letter_token(open_, match["letter"], close, match["rest"]):
        return None
    return match["letter"].upper(), match["rest"]


def _split_items(fragment: str) -> list[tuple[str, int]]:
    """Items of a letter list, each with the offset in `fragment` where it ends."""
    items = []
    start = 0
    for separator in _LIST_SEPARATOR.finditer(fragment):
        items.append((fragment[start : separator.start()], separator.start()))
        start = separator.end()
    items.append((fragment[start:], len(fragment)))
    return items


def _is_option_text(rest: str, letter: str, options: Mapping[str, str] | None) -> bool:
    """Whether `rest` is only punctuation or a delimiter followed by the text of option `letter`."""
    if re.fullmatch(r"[\s.,;:!?)\]]*", rest):
        return True
    delimited = _TEXT_DELIMITER.sub("", rest)
    if not options or letter not in options or delimited == rest:
        return False
    return _comparable(delimited) == _comparable(options[letter])


def validate_letters(
    letters: tuple[str, ...], task: str, options: Mapping[str, str]
) -> tuple[str, ...] | None:
    """The task's answer from extracted letters: None when a letter is not an option or the count is wrong.

    Diagnosis answers are exactly one letter; localization answers are one or more letters, sorted, unique.
    """
    allowed = set(options) if options else set(LETTERS)
    unique = tuple(sorted(set(letters)))
    if not unique or any(letter not in allowed for letter in unique):
        return None
    if task == "diagnosis" and len(unique) != 1:
        return None
    return unique


def _final_phrase_letters(text: str, options: Mapping[str, str]) -> tuple[str, ...] | None:
    """Letters after the last `My final option(s):` phrase; None when absent or not followed by letters."""
    matches = list(_FINAL_PHRASE.finditer(text))
    if not matches:
        return None
    line = text[matches[-1].end() :].split("\n", 1)[0]
    return parse_letter_list(line, options)


def _fallback_letters(text: str, options: Mapping[str, str]) -> tuple[str, ...] | None:
    """Letters of the last conclusion in the response (a bare last line, else the last conclusion marker)."""
    lines = [line.strip() for line in text.strip().split("\n") if line.strip()]
    if lines:
        bare = _bare_line_letters(lines[-1], options)
        if bare:
            return bare
    candidates = _marker_candidates(text, options) + _letter_first_candidates(text, options)
    return max(candidates)[1] if candidates else None


def _marker_candidates(text: str, options: Mapping[str, str]) -> list[tuple[int, tuple[str, ...]]]:
    """(position, letters) for every conclusion marker followed by letters that are not then rejected."""
    candidates = []
    for marker in _CONCLUSION_MARKERS.finditer(text):
        fragment = text[marker.end() :].split("\n", 1)[0]
        letters, after = _scan_letter_list(fragment, options)
        if letters and not _REJECTION_AFTER.match(after.lstrip(")] ")):
            candidates.append((marker.start(), letters))
    return candidates


def _letter_first_candidates(text: str, options: Mapping[str, str]) -> list[tuple[int, tuple[str, ...]]]:
    """(position, letters) for every letter-first conclusion ("Option C is the correct answer")."""
    candidates = []
    for match in _LETTER_FIRST_CONCLUSION.finditer(text):
        letters = parse_letter_list(match["letters"], options)
        if letters:
            candidates.append((match.start(), letters))
    return candidates


def _bare_line_letters(line: str, options: Mapping[str, str]) -> tuple[str, ...] | None:
    """Letters when a whole line is only a letter list: "C", "(C)", "C.", "[A, C]", "Option C", "A and C".

    Each letter may carry its own option text ("C. Spondylolisthesis"); any other text disqualifies the line,
    so that a last line such as "A lateral view would help." is not option A.
    """
    body = re.sub(r"^(?:options?|answers?|choices?)\s*[:\-]?\s*", "", line.strip(), flags=re.IGNORECASE)
    body = body.rstrip(" .!")
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    letters: list[str] = []
    for item in _LIST_SEPARATOR.split(body):
        parsed = _letter_item(item)
        if parsed is None or not _is_option_text(parsed[1].strip(), parsed[0], options):
            return None
        letters.append(parsed[0])
    return tuple(letters) or None


def conclusion_region(text: str) -> str:
    """The response's conclusion: from the sentence holding the last concluding word, else the last sentence.

    An unfinished last sentence (no closing punctuation, no concluding word) is a truncated output's
    half-thought ("At L4/L5 the disc height is") and is dropped, so that it is never read as the answer.
    """
    sentences = [sentence.strip() for sentence in _SENTENCE_END.split(text.strip()) if sentence.strip()]
    if sentences and not _is_finished(sentences[-1]) and not _CONCLUSION_START.search(sentences[-1]):
        sentences.pop()
    if not sentences:
        return ""
    for index in range(len(sentences) - 1, -1, -1):
        if _CONCLUSION_START.search(sentences[index]):
            return " ".join(sentences[index:])
    return sentences[-1]


def _is_finished(sentence: str) -> bool:
    """Whether a sentence ends the way finished prose does."""
    return sentence.rstrip()[-1:] in tuple(".!?)]\"'")


def _affirmed_clauses(region: str, task: str) -> list[str]:
    """Clauses of `region` that do not negate what they mention ("not stenosis", "L1/L2 is normal")."""
    clauses = [clause for clause in _CLAUSE_BOUNDARY.split(region) if clause and clause.strip()]
    affirmed = [clause for clause in clauses if not _NEGATED_CLAUSE.search(clause)]
    if task == "localization":
        affirmed = [clause for clause in affirmed if not _NORMAL_LEVEL_CLAUSE.search(clause)]
    return affirmed


def canonical_level(first: str, second: str) -> str | None:
    """The vocab.LEVELS spelling ("L4/L5") of a level mention's two halves; None unless adjacent levels."""
    upper = int(first)
    lower = second.upper().replace(" ", "")
    if lower == "S1":
        return "L5/S1" if upper == 5 else None
    return f"L{upper}/L{lower}" if int(lower) == upper + 1 else None


def mentioned_levels(text: str) -> set[str]:
    """Canonical lumbar levels (vocab.LEVELS strings) mentioned in `text`."""
    levels = {canonical_level(match[1], match[2]) for match in _LEVEL_MENTION.finditer(text)}
    return {level for level in levels if level in LEVELS}


def _option_text_letters(text: str, task: str, options: Mapping[str, str]) -> tuple[str, ...] | None:
    """Letters of the options whose texts the conclusion names (negated mentions excluded)."""
    clauses = _affirmed_clauses(conclusion_region(text), task)
    if task == "localization":
        named = set().union(*(mentioned_levels(clause) for clause in clauses)) if clauses else set()
        by_level = {level: letter for letter, option in options.items() for level in mentioned_levels(option)}
        if not named or not named <= set(by_level):
            return None
        return tuple(sorted(by_level[level] for level in named))
    named_letters = {
        letter
        for letter, option in options.items()
        if option and any(_names_option(clause, option) for clause in clauses)
    }
    return tuple(named_letters) if len(named_letters) == 1 else None


def _names_option(clause: str, option: str) -> bool:
    """Whether `clause` names `option` as whole words (case, spacing and punctuation ignored)."""
    return re.search(rf"(?:^| ){re.escape(_comparable(option))}(?: |$)", _comparable(clause)) is not None


def extract_answer(response: str | None, task: str, options: Mapping[str, str]) -> Extraction:
    """The answer a response commits to, and the stage that found it (see the module docstring).

    `options` maps letters A-E to option texts. Diagnosis gives exactly one letter; localization a sorted
    tuple of unique letters; `Extraction(None, "none")` when nothing valid is found.
    """
    if task not in ("diagnosis", "localization"):
        raise ValueError(f"unknown task {task!r}")
    if response is None or not response.strip():
        return NONE
    text = normalize_response(response)
    for method, finder in (("final_phrase", _final_phrase_letters), ("fallback", _fallback_letters)):
        letters = finder(text, options)
        if letters is not None:
            valid = validate_letters(letters, task, options)
            return Extraction(valid, method) if valid else NONE
    if _REFUSAL.search(text):
        return NONE
    letters = _option_text_letters(text, task, options)
    if letters:
        valid = validate_letters(letters, task, options)
        if valid:
            return Extraction(valid, "option_text")
    return NONE


def judge_prompt(response: str | None, task: str, options: Mapping[str, str]) -> str:
    """Prompt asking a judge model which option(s) `response` commits to, answered in the final-phrase form.

    The judge reads the response only; it is told not to answer the question itself, so that a judge
    cannot turn a non-answer into a correct one.
    """
    listed = "\n".join(f"{letter}: {options[letter]}" for letter in sorted(options))
    if task == "diagnosis":
        rule = "The question has exactly one correct option; the response may commit to one letter."
        form = "My final option: [X]"
    else:
        rule = "The question may have several correct options; the response may commit to several letters."
        form = "My final options: [X, Y, ...]"
    return (
        "You are grading how a model answered a multiple-choice question. Do not answer the question "
        "yourself and do not judge whether the answer is right: report only which option letter(s) the "
        f"response finally commits to.\n{rule}\n\nOptions:\n{listed}\n\n"
        f"Response:\n<<<\n{response or ''}\n>>>\n\n"
        f"Reply with exactly one line of the form `{form}`, using the option letters above. If the response "
        "refuses, is cut off before concluding, or commits to no option, reply `My final option: [NONE]`."
    )


def parse_judge_reply(text: str | None, task: str) -> tuple[str, ...] | None:
    """Letters from a judge reply to `judge_prompt`; None for NONE, an invalid or an unreadable reply."""
    if not text:
        return None
    normalized = normalize_response(text)
    letters = _final_phrase_letters(normalized, None) or _fallback_letters(normalized, None)
    if letters is None:
        return None
    return validate_letters(letters, task, {})
