"""Stage 2, letter statements: conclusion markers in several languages and letter-first conclusions."""

from __future__ import annotations

import re

from spinebench.extraction.lines import whole_line_list
from spinebench.extraction.lists import LetterList, joined, scan_list
from spinebench.extraction.names import OptionNames
from spinebench.extraction.result import Candidate, list_candidate

# Phrases after which the answer follows (on the same line, or on the next lines after a colon).
_CONCLUSION_MARKERS = re.compile(
    r"""
    (?:
        # "Answer: C", "the answer is B", "final answer - A and C", "the correct answers are:"
        \b(?:final\s+|correct\s+|right\s+|best\s+)?answers?(?!\s+(?:options?|choices?|this|the|that)\b)
            \s*(?:here\s+)?(?:is|are|would\s+be|will\s+be|should\s+be|must\s+be)?
            \s*(?:clearly|likely|probably|definitely|therefore|then)?\s*[:=\-–—]?\s*(?:options?|choices?)?
      | # "the correct option is", "most likely diagnosis is:", "best choices are A and C"
        \b(?:correct|best|right|most\s+(?:likely|accurate|appropriate|probable|consistent|fitting))
            \s+(?:answers?|options?|choices?|diagnosis|selections?|fit)
            \s*(?:here\s+)?(?:is|are|would\s+be)?\s*:?\s*(?:options?|choices?)?
      | # "I would choose option C", "I select A and C", "I'll go with B", "I favour D"
        \bi(?:\s+would|\s+will|'ll|'d|\s+must)?\s+(?:choose|select|pick|go\s+with|opt\s+for|favou?r|prefer)
            \s*(?:options?|choices?)?
      | # "My choice: C", "Final options - A, C", "Selected options: A, C", "Correct option: A"
        \b(?:my\s+(?:final\s+)?|final\s+)(?:choices?|selections?|picks?)\s*(?:is|are|:|-)\s*(?:options?)?
      | \b(?:final|selected|chosen|correct)\s+options?\s*(?:is|are)?\s*[:=\-–—]
      | # "Therefore, option C", "In conclusion, options A and C": the word "option" is required here,
        # as "therefore A ..." is as often the start of a rejection as of a conclusion.
        \b(?:therefore|thus|hence|so|consequently|in\s+conclusion|in\s+summary|overall|to\s+conclude)
            \s*,?\s*(?:the\s+answer\s+is\s+)?(?:options?|choices?)\s+
      | # "Therefore, (B)." and "So B." : a bare letter that ends the sentence
        \b(?:therefore|thus|hence|so)\s*,?\s*(?=\(?[A-E]\)?\s*[.!]?\s*(?:\n|$))
      | # "it is D", "this is option C": a letter after a copula, as its whole complement
        \b(?:it|this|that)(?:\s+is|'s|\s+would\s+be|\s+must\s+be)\s+(?:options?\s+)?(?=\(?[A-E]\)?(?:[\s.,;:!)]|$))
      | \b(?:consistent|compatible|in\s+keeping)\s+with\s+(?:options?|choices?)\s+
      | # labels at the start of a line: "Diagnosis: (A) ...", "Impression: C. ...", "Levels: L2-3, L3-4"
        (?m:^[ \t\-]*(?:diagnosis|impression|conclusion|choice|selection|option|result|levels?|
            affected\s+levels?|selected\s+answer|correct\s+options?)\s*:\s*)
      | # Spanish, Portuguese, Italian, French, German, Russian
        \b(?:la\s+|a\s+)?(?:respuesta|resposta|risposta|réponse|reponse)(?:\s+(?:correcta|correta|corretta|correcte|final))?
            \s*(?:es|é|è|e'|est|:)\s*(?:(?:la|a|l')\s*(?=\(?[A-E]\b))?(?:opci(?:o|ó)n\s+|opç(?:ão|ao)\s+|opzione\s+|option\s+)?
      | \bla\s+bonne\s+réponse\s+est\s+(?:la\s+|l'option\s+)?
      | \bopci(?:o|ó)n\s+(?:correcta|m(?:a|á)s\s+probable)\s*(?:es|:)\s*(?:la\s+)?
      | \b(?:por\s+lo\s+tanto|portanto|quindi|donc)\s*,?\s*(?:la\s+|a\s+)?
            (?:opci(?:o|ó)n|opção|opzione|option)\s+
      | \b(?:die\s+)?(?:richtige\s+|korrekte\s+)?antwort\s*(?:ist|lautet|:)\s*(?:option\s+)?
      | ответ\s*[:—\-]?\s*
      | # Chinese, Japanese, Korean
        (?:正确|最终|最后)?答案\s*(?:是|为|應為|应为|应该是)?\s*:?\s*(?:选项)?
      | 因此\s*(?:选择?|答案为)\s*
      | (?:正确|最终)?选项\s*(?:为|是|:)\s*
      | (?:我)?(?:选择|选)\s*:?\s*(?:选项)?
      | (?:认为|应该|应)?是\s*(?=\(?[A-E]\)?\s*(?:选项|项|[.,;:!?)\s]|$))
      | (?:答え|正解)\s*(?:は)?\s*:?\s*
      | 정답\s*(?:은|는)?\s*:?\s*
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)

# After the letters: words that turn a would-be conclusion into a rejection ("option A can be excluded").
_REJECTION_AFTER = re.compile(
    r"^[\s,]*(?:is|are|was|were|can|could|would|should|seems?|appears?|looks?|remains?)?\s*(?:be\s+)?"
    r"(?:not\b|unlikely|less\s+likely|incorrect|wrong|excluded|ruled\s+out|eliminated|inconsistent)",
    re.IGNORECASE,
)

# Conclusions stated letter first: "C is correct", "Option C is the best answer", "A and E are the affected
# levels", "... makes C the correct answer".
_LETTER = r"\(?[A-E]\)?"
_LETTER_FIRST_CONCLUSION = re.compile(
    rf"""
    (?<![A-Za-z])(?:options?\s+)?(?P<letters>{_LETTER}(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+|\s*&\s*){_LETTER})*)
    (?:\s*\([^)\n]{{1,60}}\))?
    \s+(?:is|are|would\s+be|seems\s+to\s+be|as|ist|est|es)?\s*(?:the\s+)?
    (?:correct|best|right|true|answer|most\s+(?:likely|accurate|appropriate|consistent)|affected|involved|korrekt
      |richtig|correcte|correcta)\b
    (?!\s+(?:than|to\s+be\s+confused))
    """,
    re.VERBOSE,
)

# "D. Foraminal stenosis: this fits best": a listed option judged the best one.
_OPTION_JUDGED_BEST = re.compile(
    r"^\s*(?:this|it)\s+(?:fits\s+best|is\s+(?:the\s+)?(?:correct|best|right|most\s+likely)"
    r"(?:\s+(?:answer|option|choice|fit))?)\b",
    re.IGNORECASE,
)


def marker_candidates(text: str, names: OptionNames) -> list[Candidate]:
    """A candidate for every conclusion marker followed by an answer list that is not then rejected.

    A marker that ends its line (a colon lead-in) takes the answer from the following lines: the first
    non-empty one and, for a list written one item per line, the lines after it.
    """
    candidates = []
    for marker in _CONCLUSION_MARKERS.finditer(text):
        consumed = marker[0]
        # A marker's trailing spaces may run into the next line: the answer then starts on that line.
        rest = text[marker.start() + consumed.index("\n") :] if "\n" in consumed else text[marker.end() :]
        line, _, following = rest.partition("\n")
        if line.strip():
            parsed = scan_list(line, names)
            if parsed and not _REJECTION_AFTER.match(line[parsed.end :].lstrip(")] ")):
                candidates.append(list_candidate(marker.start(), parsed))
            continue
        parsed = _lines_list(following, names)
        if parsed:
            candidates.append(list_candidate(marker.start(), parsed))
    return candidates


def _lines_list(text: str, names: OptionNames) -> LetterList | None:
    """The answer list that starts the first non-empty line of `text` ("Answer:\nC because ..."); when
    that line holds only a list, the answer-only lines right after it join it (one item per line)."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    combined = whole_line_list(lines[0], names)
    if combined is None:
        parsed = scan_list(lines[0], names)
        rejected = parsed is not None and _REJECTION_AFTER.match(lines[0][parsed.end :].lstrip(")] "))
        return None if rejected else parsed
    for line in lines[1:]:
        parsed = whole_line_list(line, names)
        if parsed is None:
            break
        combined = joined(combined, parsed)
    return combined


def letter_first_candidates(text: str, names: OptionNames) -> list[Candidate]:
    """Candidates for letter-first conclusions and for listed options judged the best one."""
    candidates = []
    for match in _LETTER_FIRST_CONCLUSION.finditer(text):
        parsed = scan_list(match["letters"], names)
        if parsed:
            candidates.append(list_candidate(match.start(), parsed))
    offset = 0
    for line in text.split("\n"):
        body = re.sub(r"^[\s\-•>]+", "", line)
        parsed = scan_list(body, names)
        if parsed and not parsed.by_text and _OPTION_JUDGED_BEST.match(body[parsed.end :].lstrip(" :-–")):
            candidates.append(list_candidate(offset, parsed))
        offset += len(line) + 1
    return candidates
