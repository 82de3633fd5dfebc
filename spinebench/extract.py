"""Answer extraction: from a model's free-text response to the option letters it committed to.

The contract is precision first: a letter (or a set of letters) comes back only when the response commits
to it; otherwise nothing, and the optional judge model gets a look (docs/extraction.md). A wrong letter is
a silent error (the answer is scored as if the model had said it), a missing one is only a second look.

The response is first *prepared*: Unicode forms unified (full-width letters, CJK punctuation), a reasoning
model's `<think>` block dropped, answer boxes (`\\boxed{}`, `<|begin_of_box|>`, `<answer>`, a JSON
`"answer"`) turned into an `Answer:` line, chat-template tokens removed (a new user turn becomes `Human:`),
markdown dropped. A model that goes on generating new questions or dialogue turns after answering is cut
at the first such turn.

Stages then run in order and the first that decides wins; each answer records its stage:

1. `final_phrase`: the phrase the prompts demand (`My final option: [X]` / `My final options: [X, Y]`, or
   its translation), tolerant of markdown, missing brackets, case and spacing. The last occurrence decides.
2. `fallback`: other explicit statements of letters: conclusion markers in several languages ("The correct
   answer is: B", "Answer:\\nC", "答案：D"), letter-first conclusions ("Option C is correct"), option
   references in a concluding position ("most consistent with (D) Osteophytes", "spinal canal stenosis
   (E)"), and lines that hold nothing but an answer ("(B) Disc space narrowing", "B, D", a bare letter
   before an explanation). The last statement in the response decides.
3. `option_text`: a concluding phrase names one option's text ("the most likely diagnosis is
   spondylolisthesis", "the affected levels are L4-L5 and L5-S1"), or a line is only an option's text.
4. `low_confidence`: no concluding phrase, but the response names exactly one option (diagnosis) or a set of
   levels (localization) without negating it. The answer is kept and marked, and goes to the judge when
   one is configured.
5. `none`: nothing usable (also refusals, hedges between options, empty and truncated responses).

A stage that finds a statement it cannot turn into a valid answer (a letter outside the options, two
letters for a diagnosis question, "B or D", a letter whose attached text names another option) decides
`none`: the model committed to something that is not an answer, and an earlier, different statement must
not be substituted for it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from spinebench.vocab import LETTERS, LEVELS

METHODS: tuple[str, ...] = ("final_phrase", "fallback", "option_text", "low_confidence", "none")

# Extraction paths whose answers a configured judge reads again (finalize.judge_answers).
JUDGED_METHODS: tuple[str, ...] = ("low_confidence", "none")


class Extraction(NamedTuple):
    """What was extracted: sorted unique letters (None when nothing valid) and the stage that decided."""

    letters: tuple[str, ...] | None
    method: str


NONE = Extraction(None, "none")


# --- preparing the text -------------------------------------------------------------------------------------

# Punctuation that NFKC leaves alone but that plays the role of ASCII punctuation in answers (CJK brackets
# and commas, typographic apostrophes).
_PUNCTUATION = str.maketrans(
    {
        "【": "[",
        "】": "]",
        "「": '"',
        "」": '"',
        "、": ",",
        "。": ".",
        "〔": "(",
        "〕": ")",
        "’": "'",
        "‘": "'",
    }
)

# Markdown and escaping that models wrap answers in (`**[C]**`, `\[C\]`, `### Answer`, `` `C` ``).
_MARKUP = re.compile(r"[*_`#\\$]")

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)

# Boxes that hold a final answer: GLM's box tokens, <answer> tags, LaTeX \boxed{...}.
_BOX_TOKENS = re.compile(r"<\|begin_of_box\|>(.*?)<\|end_of_box\|>", re.DOTALL)
_ANSWER_TAGS = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_LATEX_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
# A JSON answer field: {"answer": "B"} or {"answer": ["C", "E"]}.
_JSON_ANSWER = re.compile(r"""["']answers?["']\s*:\s*(\[[^\]]*\]|"[^"]*"|'[^']*')""", re.IGNORECASE)

# Chat-template tokens. A user turn after the answer is generated continuation, so it becomes a line that
# `_cut_continuation` recognises; the model's own turn header and every other special token just go.
_USER_TURN_TOKENS = re.compile(
    r"<\|im_start\|>\s*user|<start_of_turn>\s*user|<\|start_header_id\|>\s*user\s*<\|end_header_id\|>"
    r"|<\|user\|>|\[INST\]",
    re.IGNORECASE,
)
_OTHER_TOKENS = re.compile(
    r"<\|im_start\|>\s*assistant|<start_of_turn>\s*model|<\|start_header_id\|>\s*assistant\s*<\|end_header_id\|>"
    r"|\[/INST\]|<\|[A-Za-z_]{1,30}\|>|</?s>|<pad>|<unk>|<eos>|<bos>|</?end_of_turn>|<start_of_turn>|<image>",
    re.IGNORECASE,
)

# A Cyrillic capital that looks like an option letter and stands alone at the end of a line ("Ответ: А").
_CYRILLIC_LOOKALIKE = re.compile(r"(?<![^\W\d_])([АВСЕ])(?=[\s.)\]]*$)", re.MULTILINE)
_LATIN_FOR_CYRILLIC = {"А": "A", "В": "B", "С": "C", "Е": "E"}


def normalize_response(text: str) -> str:
    """The response as the stages read it (see the module docstring); "" for an unfinished think block."""
    text = unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)
    text = text.replace("\r\n", "\n").replace("\u00a0", " ")
    text = _after_thinking(text)
    text = _unwrap_boxes(text)
    text = _USER_TURN_TOKENS.sub("\nHuman: ", text)
    text = _OTHER_TOKENS.sub("\n", text)
    text = _MARKUP.sub("", text)
    return _CYRILLIC_LOOKALIKE.sub(lambda match: _LATIN_FOR_CYRILLIC[match[1]], text)


def _after_thinking(text: str) -> str:
    """The text after a reasoning model's last `</think>`; "" when a `<think>` block never closes.

    Drafts inside the block ("My final option: [B]? No ...") are not the answer, and an unclosed block is
    a response cut off before it concluded.
    """
    closings = list(_THINK_CLOSE.finditer(text))
    if closings:
        return text[closings[-1].end() :]
    return "" if _THINK_OPEN.search(text) else text


def _unwrap_boxes(text: str) -> str:
    """Every answer box as its own `Answer: ...` line, which the conclusion markers then read."""
    text = _BOX_TOKENS.sub(lambda match: f"\nAnswer: {match[1].strip()}\n", text)
    text = _ANSWER_TAGS.sub(lambda match: f"\nAnswer: {match[1].strip()}\n", text)
    text = _JSON_ANSWER.sub(lambda match: f"\nAnswer: {_json_answer_text(match[1])}\n", text)
    return _unwrap_latex_boxes(text)


def _json_answer_text(value: str) -> str:
    """`"B"` -> `B`, `["C", "E"]` -> `C, E`; what is not valid JSON is left without its quotes."""
    try:
        parsed = json.loads(value.replace("'", '"'))
    except json.JSONDecodeError:
        return value.strip("\"'[]")
    return ", ".join(map(str, parsed)) if isinstance(parsed, list) else str(parsed)


def _unwrap_latex_boxes(text: str) -> str:
    """`\\boxed{\\text{(A)}}` -> `Answer: (A)` (braces balanced by hand: boxes nest \\text{...})."""
    while match := _LATEX_BOX.search(text):
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        inner = text[match.end() : end - 1] if depth == 0 else text[match.end() :]
        while _LATEX_TEXT.search(inner):
            inner = _LATEX_TEXT.sub(r"\1", inner)
        text = f"{text[: match.start()]}\nAnswer: {inner.strip()}\n{text[end:]}"
    return text


# A line that starts a generated continuation: a new question, or a new dialogue turn.
_CONTINUATION = re.compile(
    r"^[ \t>\-]*(?:human|user|assistant|next\s+question|the\s+question\s+is|question(?:\s*\d+)?|q\d+"
    r"|pregunta|frage|问题|問題)\s*(?::|\.|$)",
    re.IGNORECASE | re.MULTILINE,
)


def _cut_continuation(text: str, names: OptionNames, task: str) -> str:
    """The text before the first generated continuation that follows an explicit answer.

    A continuation before any answer (a response that restates the question first) is kept: cutting there
    would lose the answer that follows it.
    """
    for match in _CONTINUATION.finditer(text):
        prefix = text[: match.start()]
        if prefix.strip() and _has_explicit_answer(prefix, names, task):
            return prefix
    return text


# --- option names -------------------------------------------------------------------------------------------

# Other names of the benchmark's labels (spinebench/vocab.py): English variants and translations that models
# answering in another language use. Only ever matched as whole words, and only for options whose text is
# the label itself.
OPTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "Disc space narrowing": (
        "disk space narrowing",
        "intervertebral disc space narrowing",
        "narrowing of the disc space",
        "椎间隙狭窄",
        "椎间隙变窄",
        "estrechamiento del espacio discal",
        "pinzamiento discal",
        "pincement discal",
        "verschmalerung des bandscheibenraums",
        "riduzione dello spazio discale",
        "estreitamento do espaco discal",
    ),
    "Foraminal stenosis": (
        "neural foraminal stenosis",
        "neuroforaminal stenosis",
        "椎间孔狭窄",
        "estenosis foraminal",
        "stenose foraminale",
        "foraminalstenose",
        "neuroforamenstenose",
        "stenosi foraminale",
        "estenose foraminal",
    ),
    "Subarticular stenosis": (
        "lateral recess stenosis",
        "subarticular recess stenosis",
        "侧隐窝狭窄",
        "estenosis subarticular",
        "stenose subarticulaire",
        "recessusstenose",
        "stenosi subarticolare",
        "estenose subarticular",
    ),
    "Osteophytes": (
        "osteophyte",
        "osteophytosis",
        "骨赘",
        "骨质增生",
        "osteofitos",
        "osteophyten",
        "osteofiti",
    ),
    "Spinal canal stenosis": (
        "central canal stenosis",
        "central spinal stenosis",
        "椎管狭窄",
        "estenosis del canal espinal",
        "estenosis del canal raquideo",
        "stenose du canal rachidien",
        "spinalkanalstenose",
        "stenosi del canale spinale",
        "estenose do canal vertebral",
    ),
    "Spondylolisthesis": (
        "anterolisthesis",
        "腰椎滑脱",
        "椎体滑脱",
        "espondilolistesis",
        "spondylolisthese",
        "spondilolistesi",
        "espondilolistese",
    ),
    "Straight cervical vertebrae": (
        "straightening of the cervical spine",
        "straightened cervical spine",
        "straight cervical spine",
        "颈椎变直",
        "颈椎生理曲度变直",
        "rectificacion cervical",
        "rectitude cervicale",
        "steilstellung der halswirbelsaule",
    ),
    "Vertebral collapse": (
        "vertebral body collapse",
        "vertebral compression fracture",
        "椎体压缩",
        "colapso vertebral",
        "tassement vertebral",
        "wirbelkorperkollaps",
        "collasso vertebrale",
    ),
    "Cervical kyphosis": ("颈椎后凸", "cifosis cervical", "cyphose cervicale", "zervikale kyphose"),
    "Cervical lordosis": ("颈椎前凸", "lordosis cervical", "lordose cervicale", "zervikale lordose"),
    "Sigmoid cervical vertebrae": ("s-shaped cervical spine", "sigmoid cervical spine", "颈椎s形"),
    "Healthy": (),
}

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
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_LEVEL_MENTION = re.compile(
    r"(?<![A-Za-z0-9])L\s?([1-5])\s*(?:/|-|–|—|\s)\s*(?:L\s?)?([1-5]|S\s?1)(?![0-9])", re.IGNORECASE
)
# "from L1/L2 to L5/S1", "L1/L2 through L3/L4": every level between the two.
_LEVEL_RANGE = re.compile(
    r"(?P<first>L\s?[1-5]\s*[/\-–]\s*(?:L\s?)?(?:[1-5]|S\s?1))\s*(?:to|through|thru|until|till|bis|hasta|a|à"
    r"|fino\s+a|至|到|~)\s*(?P<last>L\s?[1-5]\s*[/\-–]\s*(?:L\s?)?(?:[1-5]|S\s?1))",
    re.IGNORECASE,
)


def fold(text: str) -> str:
    """Lower case without accents, one character for one (so that positions stay valid in the original)."""
    folded = []
    for char in text:
        lower = char.lower()
        char = lower if len(lower) == 1 else char
        decomposed = unicodedata.normalize("NFKD", char)
        folded.append(decomposed[0] if decomposed[:1].isascii() and decomposed[:1].isalpha() else char)
    return "".join(folded)


def canonical_level(first: str, second: str) -> str | None:
    """The vocab.LEVELS spelling ("L4/L5") of a level mention's two halves; None unless adjacent levels."""
    upper = int(first)
    lower = second.upper().replace(" ", "")
    if lower == "S1":
        return "L5/S1" if upper == 5 else None
    return f"L{upper}/L{lower}" if int(lower) == upper + 1 else None


def _level_spans(text: str) -> list[tuple[int, int, str]]:
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
            for start, end, level in _level_spans(text)
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


def _name_pattern(name: str) -> re.Pattern | None:
    """A pattern for `name` over folded text; None for names too short or too plain to be matched safely."""
    folded = fold(name).strip()
    if _CJK.search(folded):
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


# --- letter lists -------------------------------------------------------------------------------------------

# Separators of a committed list: "A, C", "A and C", "A; C", "A & C", "C y E", "B und D", "B、D", "B和D".
_AND = re.compile(
    r"\s*(?:,\s*(?:and\s+|und\s+|et\s+|y\s+|e\s+)?|;\s*|&\s*|\+\s*|\s+(?:and|und|et|y|e|и)\s+|\s*(?:和|与|及|と)\s*)",
    re.IGNORECASE,
)
# Separators of a hedge: "B or D" names two candidates and commits to neither.
_OR = re.compile(r"\s*,?\s*(?:\s(?:or|oder|ou|o|ó|или)\s|\s*或\s*)\s*", re.IGNORECASE)
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
    attached = _attached_text(suffix, parsed.letters[0], names)
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
        separator = _AND.match(text, position) or _OR.match(text, position)
        if separator is None or _scan_item(text[separator.end() :], names) is None:
            break
        hedged |= separator.re is _OR
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
    own = _attached_text(rest, letter.upper(), names)
    if own is not None:
        extra, conflict = own
        return letter.upper(), length + extra, conflict
    return letter.upper(), length, False


def _free_letter_ok(letter: str, rest: str, names: OptionNames) -> bool:
    """Whether an unbracketed letter followed by `rest` is an option letter (see `_letter_at`)."""
    if letter in "Ii":
        return False
    stripped = rest.lstrip()
    if not stripped or stripped[0] in ".,;:!?)]-–—(\"'" or _CJK.match(stripped):
        return True
    if letter.islower():
        return False
    return bool(
        _AND.match(rest)
        or _OR.match(rest)
        or _LETTER_FOLLOWERS.match(rest)
        or names.name_at(rest) is not None
    )


def _attached_text(rest: str, letter: str, names: OptionNames) -> tuple[int, bool] | None:
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


class Candidate(NamedTuple):
    """A statement of an answer at `position`: its letters, or None for a statement that is no answer."""

    position: int
    letters: tuple[str, ...] | None
    by_text: bool


def _candidate(position: int, parsed: LetterList) -> Candidate:
    """A candidate from a parsed list: no letters when the list hedges or conflicts with its own texts."""
    letters = None if parsed.hedged or parsed.conflict else parsed.letters
    return Candidate(position, letters, parsed.by_text)


# --- stage 1: the final phrase ------------------------------------------------------------------------------

_FINAL_PHRASE = re.compile(
    r"(?:\bmy\s+final\s+options?|\bmis?\s+opci(?:o|ó)n(?:es)?\s+finale?s?|\bmeine?n?\s+endg(?:ü|u)ltigen?\s+option(?:en)?"
    r"|\bmon\s+option\s+finale|\bmes\s+options\s+finales|\bminhas?\s+op(?:ç|c)(?:ão|ões|ao|oes)\s+fina(?:l|is)"
    r"|\b(?:la\s+mia|le\s+mie)\s+opzion[ei]\s+final[ei]|мой\s+окончательный\s+вариант|мои\s+окончательные\s+варианты"
    r"|我的最终(?:选项|选择|答案)|最終的な選択肢|최종\s*선택)"
    r"\s*(?:is|are|would\s+be|es|son|ist|sind|est|sont|é|è)?\s*[:=\-–—]?\s*",
    re.IGNORECASE,
)


def _final_phrase_candidate(text: str, names: OptionNames) -> Candidate | None:
    """The last final phrase and what follows it on its line; None when the phrase is absent.

    A phrase followed by no list at all (an instruction restated in prose) is no candidate; one followed by
    an invalid list ("[X]", "[None]") is a candidate without letters.
    """
    for match in reversed(list(_FINAL_PHRASE.finditer(text))):
        line = text[match.end() :].split("\n", 1)[0]
        parsed = scan_list(line, names)
        if parsed is not None:
            return _candidate(match.start(), parsed)
        if re.match(r"\s*\[", line):
            return Candidate(match.start(), None, False)
    return None


# --- stage 2: explicit statements of letters ----------------------------------------------------------------

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


def _explicit_candidates(text: str, names: OptionNames, task: str) -> list[Candidate]:
    """Every explicit statement of letters in `text` (stage 2), in text order."""
    candidates = (
        _marker_candidates(text, names)
        + _letter_first_candidates(text, names)
        + _reference_candidates(text, names, task)
        + _bare_line_candidates(text, names, task)
    )
    return sorted(candidates, key=lambda candidate: candidate.position)


def _has_explicit_answer(text: str, names: OptionNames, task: str) -> bool:
    """Whether `text` states an answer in so many words (stage 1 or 2)."""
    return _final_phrase_candidate(text, names) is not None or bool(_explicit_candidates(text, names, task))


def _marker_candidates(text: str, names: OptionNames) -> list[Candidate]:
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
                candidates.append(_candidate(marker.start(), parsed))
            continue
        parsed = _lines_list(following, names)
        if parsed:
            candidates.append(_candidate(marker.start(), parsed))
    return candidates


def _lines_list(text: str, names: OptionNames) -> LetterList | None:
    """The answer list that starts the first non-empty line of `text` ("Answer:\nC because ..."); when
    that line holds only a list, the answer-only lines right after it join it (one item per line)."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    combined = _whole_line_list(lines[0], names)
    if combined is None:
        parsed = scan_list(lines[0], names)
        rejected = parsed is not None and _REJECTION_AFTER.match(lines[0][parsed.end :].lstrip(")] "))
        return None if rejected else parsed
    for line in lines[1:]:
        parsed = _whole_line_list(line, names)
        if parsed is None:
            break
        combined = _joined(combined, parsed)
    return combined


def _joined(first: LetterList, second: LetterList) -> LetterList:
    return LetterList(
        first.letters + second.letters,
        second.end,
        first.hedged or second.hedged,
        first.conflict or second.conflict,
        first.by_text and second.by_text,
    )


def _letter_first_candidates(text: str, names: OptionNames) -> list[Candidate]:
    """Candidates for letter-first conclusions and for listed options judged the best one."""
    candidates = []
    for match in _LETTER_FIRST_CONCLUSION.finditer(text):
        parsed = scan_list(match["letters"], names)
        if parsed:
            candidates.append(_candidate(match.start(), parsed))
    offset = 0
    for line in text.split("\n"):
        body = re.sub(r"^[\s\-•>]+", "", line)
        parsed = scan_list(body, names)
        if parsed and not parsed.by_text and _OPTION_JUDGED_BEST.match(body[parsed.end :].lstrip(" :-–")):
            candidates.append(_candidate(offset, parsed))
        offset += len(line) + 1
    return candidates


# --- option references in a concluding position -------------------------------------------------------------

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
# Sentence ends: closing punctuation before a space (not after a lone option letter, "C. Spondylolisthesis"),
# and line breaks, except a break inside a hard-wrapped sentence (a lower-case word or comma before it and a
# lower-case word after it).
_SENTENCE_END = re.compile(r"(?<![\s(\[][A-E])(?<!^[A-E])[.!?;]+(?=\s|$)|\n", re.MULTILINE)


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, in order (see `_SENTENCE_END`)."""
    spans, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        if end[0] == "\n" and _wrapped_line(text, end.start()):
            continue
        if text[start : end.end()].strip():
            spans.append((start, end.end()))
        start = end.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _wrapped_line(text: str, newline: int) -> bool:
    """Whether the line break at `newline` continues a sentence on the next line."""
    before = text[:newline].rstrip(" \t")
    after = text[newline + 1 :].lstrip(" \t")
    if re.search(r"\b(?:at|of|in|on|to|the|an?|and|or|with|from|by|is|are|was|were)$", before, re.IGNORECASE):
        return bool(after) and not after.startswith(("-", "*", "•"))
    return bool(re.search(r"[a-z0-9,]$", before) and re.match(r"[a-z]", after))


def _reference_candidates(text: str, names: OptionNames, task: str) -> list[Candidate]:
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
            clause_start, _ = _clause_bounds(sentence, start, end)
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
        if groups and _AND.fullmatch(sentence[groups[-1][1] : start]):
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
        own = _attached_text(sentence[match.end() :], letter, names)
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
        joined = _AND.fullmatch(gap) or not gap.strip() or (not run and _is_location(gap))
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


# --- lines that hold only an answer -------------------------------------------------------------------------

_LINE_LABEL = re.compile(
    r"^[\s\-•>]*(?:(?:options?|answers?|choices?|selected|final)\s*[:\-]\s*|(?:options?|choices?)\s+(?=\(?[A-E]\b))",
    re.IGNORECASE,
)


def _whole_line_list(line: str, names: OptionNames) -> LetterList | None:
    """The answer list when a whole line is only that ("C", "(C)", "[A, C]", "B. L4/L5", "L4/L5 and L5/S1",
    "Osteophytes."); None when anything else is on the line."""
    body = _LINE_LABEL.sub("", line.strip()).strip()
    body = re.sub(r"[\s.!]+$", "", body)
    if not body:
        return None
    parsed = scan_list(body, names)
    if parsed is None or body[parsed.end :].strip(" .,;:!)]"):
        return None
    return parsed


def _bare_line_candidates(text: str, names: OptionNames, task: str) -> list[Candidate]:
    """Candidates for answer-only lines: the last block of them, and the first line when it is one.

    Bare lines elsewhere are usually headings of a discussion of each option, so only these two positions
    count, and the first line only when no other line names a different option the same way. A response
    that is only upper-case letters ("BD") lists them.
    """
    lines = text.split("\n")
    starts = [sum(len(line) + 1 for line in lines[:index]) for index in range(len(lines))]
    # A line that a hard-wrapped sentence runs into or out of is part of that sentence, not a line of its own.
    wrapped = [index > 0 and _wrapped_line(text, starts[index] - 1) for index in range(len(lines))] + [False]
    parsed = [
        None if wrapped[index] or wrapped[index + 1] else _whole_line_list(line, names)
        for index, line in enumerate(lines)
    ]
    filled = [index for index, line in enumerate(lines) if line.strip()]
    if not filled:
        return []
    candidates = []
    block: LetterList | None = None
    block_start = None
    for index in reversed(filled):
        if parsed[index] is None:
            break
        block = parsed[index] if block is None else _joined(parsed[index], block)
        block_start = index
    if block is not None and not _restates_options(block, names):
        candidates.append(_candidate(starts[block_start], block))
    first = filled[0]
    others = {letter for index in filled[1:] if parsed[index] for letter in parsed[index].letters}
    if parsed[first] is not None and block_start != first and not others - set(parsed[first].letters):
        candidates.append(_candidate(starts[first], parsed[first]))
    concatenated = re.fullmatch(r"\s*([A-E]{2,5})\s*", text)
    if concatenated and task == "localization" and len(set(concatenated[1])) == len(concatenated[1]):
        candidates.append(Candidate(0, tuple(concatenated[1]), False))
    return candidates


def _restates_options(parsed: LetterList, names: OptionNames) -> bool:
    """Whether a list of lines is the option list read back (every option, in letter order)."""
    return len(names.options) > 1 and list(parsed.letters) == sorted(names.options)


# --- stages 3 and 4: option texts ---------------------------------------------------------------------------

# Phrases after which a named option is the conclusion ("the most likely diagnosis is", "consistent with").
_TEXT_CUE_BEFORE = re.compile(
    r"""(?:
        \b(?:diagnosis|diagnoses|impression|conclusion|answer|findings?|abnormality|pathology|lesions?|disease)
            \s*(?:here\s+)?(?:is|are|:|=|would\s+be)
      | \bmost\s+(?:likely|consistent|probable)(?:\s+(?:diagnosis|finding|option|answer))?
            \s*(?:is|:|would\s+be)?
      | \b(?:consistent|compatible|in\s+keeping)\s+with
      | \b(?:suggestive|indicative|diagnostic|characteristic)\s+of
      | \b(?:indicates?|suggests?|represents?|confirms?|denotes?)
      | \bbest\s+(?:explained|described|characteri[sz]ed)\s+(?:by|as)
      | \b(?:this|which|it|that)\s+(?:is|represents)
      | \bpoints?\s+to(?:wards)?
      | \bi\s+(?:diagnose|conclude)
      | \b(?:located|found|situated)\s+(?:at|in)
      | \b(?:levels?|segments?|discs?)\s+(?:affected|involved)\s+(?:is|are|:)
      | \b(?:affected|involved|abnormal|diseased|pathologic(?:al)?)\s+(?:levels?|segments?|discs?)
            \s*(?:is|are|:|include)
      | \b(?:is|are)\s+(?:at|in)\b
      | \binvolves?
      | \bdiagn(?:o|ó)stico\s*(?:es|:)|\bcompatible\s+con|\bse\s+trata\s+de|\bniveles\s+afectados\s+son
      | \bil\s+s'agit\s+d(?:'un|'une|e)|\bdiagnostic\s*(?:est|:)|\bcompatible\s+avec
      | \bniveaux\s+atteints\s+sont
      | \bdiagnose\s*(?:ist|:|lautet)|\bvereinbar\s+mit|\bhandelt\s+sich\s+um|\bbetroffen\s+sind
      | 诊断\s*(?:为|是|:)|考虑(?:为)?|符合|提示|受累节段为|病变位于
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Words allowed between a cue and the named option ("consistent with a grade I spondylolisthesis").
_FILLER = re.compile(
    r"^(?:\s*(?:an?|the|of|mild|moderate|severe|marked|significant|advanced|early|multilevel|multi-level|"
    r"degenerative|grade\s+[iv1-4]+|likely|probable|definite|clear|obvious|bilateral|left|right|lumbar|"
    r"levels?|segments?|at|in|un|une|una|uno|el|la|le|los|las|eine?n?|die|der|das|de|d'|l')\b)*\s*$",
    re.IGNORECASE,
)
# After a named option: "X is the (most likely) diagnosis", "L4/L5 and L5/S1 are affected".
_TEXT_CUE_AFTER = re.compile(
    r"^\s*(?:is|are|would\s+be|seems\s+to\s+be)\s+(?:the\s+)?(?:most\s+likely\s+|correct\s+|best\s+|final\s+|"
    r"likely\s+|right\s+)?(?:diagnosis|answer|option|choice|finding|affected|involved)\b",
    re.IGNORECASE,
)
# Sentence openings that make the whole sentence a conclusion.
_CONCLUDING_SENTENCE = re.compile(
    r"^\s*(?:in\s+conclusion|in\s+summary|overall|therefore|thus|hence|so|to\s+conclude|taken\s+together|"
    r"consequently|en\s+conclusi(?:o|ó)n|por\s+lo\s+tanto|en\s+resumen|donc|par\s+cons(?:é|e)quent|"
    r"zusammenfassend|daher|somit|insgesamt|portanto|em\s+conclus(?:ã|a)o|quindi|in\s+conclusione|"
    r"综上所述|因此|总之|таким\s+образом)\b",
    re.IGNORECASE,
)
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
# Clause boundaries for negation scope: punctuation and contrast words ("..., but", "while ...").
_CLAUSE_BOUNDARY = re.compile(r"[,;:]|\b(?:but|while|whereas|although|however)\b", re.IGNORECASE)
_NORMAL_WORDS = re.compile(
    r"\b(?:normal|preserved|unremarkable|spared|intact|maintained|healthy)\b", re.IGNORECASE
)

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


class Run(NamedTuple):
    """Option mentions joined by list separators ("L4/L5 and L5/S1"), with what the response says of them."""

    start: int
    end: int
    letters: tuple[str, ...]
    strong: bool  # a concluding phrase introduces the run, or it fills a line on its own
    sentence: tuple[int, int]


def _affirmed_runs(text: str, names: OptionNames, task: str) -> list[Run]:
    """Every run of option mentions that its clause does not negate, in text order.

    A negation before the run in its clause ("no spondylolisthesis", "loss of the normal cervical lordosis")
    or right after it ("osteophytes are absent", "was also considered", "L1/L2 is normal") excludes the run.
    Questions and an unfinished last sentence are not read.
    """
    spans = sentences(text)
    found = []
    for index, (sentence_start, sentence_end) in enumerate(spans):
        body = text[sentence_start:sentence_end]
        mentions = names.mentions(body)
        last = index == len(spans) - 1
        if body.rstrip().endswith("?") or (last and _truncated(body, len(spans), mentions)):
            continue
        concluding = bool(_CONCLUDING_SENTENCE.match(body))
        alone = _whole_line_list(body, names)
        for start, end, letters in _runs(body, mentions):
            clause_start, clause_end = _clause_bounds(body, start, end)
            after = body[end:]
            if _NEGATION_BEFORE.search(body[clause_start:start]) or _NEGATION_AFTER.match(after):
                continue
            if _is_normal(body[end:clause_end], task):
                continue
            strong = (
                concluding
                or _cued(body[:start], body[end:clause_end])
                or (alone is not None and alone.by_text)
            )
            found.append(
                Run(
                    sentence_start + start,
                    sentence_start + end,
                    letters,
                    strong,
                    (sentence_start, sentence_end),
                )
            )
    return found


def _runs(body: str, mentions: list[tuple[int, int, str]]) -> list[tuple[int, int, tuple[str, ...]]]:
    """Mentions grouped into runs: consecutive mentions with only a list separator between them."""
    runs: list[tuple[int, int, tuple[str, ...]]] = []
    for start, end, letter in mentions:
        gap = body[runs[-1][1] : start] if runs else ""
        if runs and (start < runs[-1][1] or not gap.strip() or _AND.fullmatch(gap) or _OR.fullmatch(gap)):
            first = runs[-1]
            runs[-1] = (first[0], max(first[1], end), first[2] + (letter,))
        else:
            runs.append((start, end, (letter,)))
    return runs


def _truncated(sentence: str, count: int, mentions: list[tuple[int, int, str]]) -> bool:
    """Whether the last sentence is an unfinished half-thought ("At L4/L5 the disc") to be left unread.

    A sentence that ends with an option's name ("Diagnosis: Spondylolisthesis") or a short unpunctuated
    answer that is the whole response ("L4/L5 and L5/S1") is finished.
    """
    stripped = sentence.rstrip()
    if stripped[-1:] in tuple(".!?)]\"'") or any(end >= len(stripped) for _, end, _ in mentions):
        return False
    return count > 1 or len(stripped.split()) > 8


def _clause_bounds(sentence: str, start: int, end: int) -> tuple[int, int]:
    """The clause around `sentence[start:end]`: between punctuation and contrast words."""
    clause_start, clause_end = 0, len(sentence)
    for boundary in _CLAUSE_BOUNDARY.finditer(sentence):
        if boundary.end() <= start:
            clause_start = boundary.end()
        elif boundary.start() >= end and clause_end == len(sentence):
            clause_end = boundary.start()
    return clause_start, clause_end


def _is_normal(after: str, task: str) -> bool:
    """For levels, calling a level normal is a negation ("L1/L2 through L3/L4 are normal")."""
    return task == "localization" and bool(_NORMAL_WORDS.search(after))


def _cued(before: str, after: str) -> bool:
    """Whether a concluding phrase introduces the run (only filler words between) or follows it."""
    cues = list(_TEXT_CUE_BEFORE.finditer(before))
    if cues and _FILLER.match(before[cues[-1].end() :]):
        return True
    return bool(_TEXT_CUE_AFTER.match(after))


def _option_text_answer(text: str, names: OptionNames, task: str) -> Extraction | None:
    """Stages 3 and 4: the options a concluding phrase names (the last such sentence), else the options the
    response names without negating them; None when it names none."""
    runs = _affirmed_runs(text, names, task)
    strong = [run for run in runs if run.strong]
    if strong:
        sentence = strong[-1].sentence
        if _hedges_between_options(text[sentence[0] : sentence[1]], names):
            return NONE
        return _from_runs([run for run in strong if run.sentence == sentence], task, names, "option_text")
    if not runs or _REFUSAL.search(text):
        return None
    if _hedges_between_options(text, names):
        return NONE
    return _from_runs(runs, task, names, "low_confidence")


def _from_runs(runs: list[Run], task: str, names: OptionNames, method: str) -> Extraction:
    """The answer the runs name: one option for a diagnosis, any set of levels for localization.

    Two diagnoses named at once, or the five levels read back as one list, are no answer.
    """
    letters = tuple(sorted({letter for run in runs for letter in run.letters}))
    if task == "diagnosis" and len(letters) != 1:
        return NONE
    if task == "localization" and any(
        set(run.letters) == set(names.options) and len(run.letters) > 2 and not run.strong for run in runs
    ):
        return NONE
    valid = validate_letters(letters, task, names.options)
    return Extraction(valid, method) if valid else NONE


def _hedges_between_options(text: str, names: OptionNames) -> bool:
    """Whether `text` hedges between options: "X or Y", "either L4/L5 or L5/S1", "as X or as an early Y"."""
    mentions = names.mentions(text)
    for first, second in zip(mentions, mentions[1:], strict=False):
        if first[2] != second[2] and _OR_BETWEEN.fullmatch(text[first[1] : second[0]]):
            return True
    return bool(_EITHER.search(text)) and len({mention[2] for mention in mentions}) > 1


# --- the whole extraction -----------------------------------------------------------------------------------


def extract_answer(response: str | None, task: str, options: Mapping[str, str]) -> Extraction:
    """The answer a response commits to, and the stage that found it (see the module docstring).

    `options` maps letters A-E to option texts. Diagnosis gives exactly one letter; localization a sorted
    tuple of unique letters; `Extraction(None, "none")` when nothing valid is found.
    """
    if task not in ("diagnosis", "localization"):
        raise ValueError(f"unknown task {task!r}")
    if response is None or not response.strip():
        return NONE
    names = OptionNames.of(options)
    text = _cut_continuation(normalize_response(response), names, task)
    if not text.strip():
        return NONE
    final = _final_phrase_candidate(text, names)
    if final is not None:
        return _decide(final, task, names, "final_phrase")
    explicit = _explicit_candidates(text, names, task)
    if explicit:
        last = explicit[-1]
        return _decide(last, task, names, "option_text" if last.by_text else "fallback")
    return _option_text_answer(text, names, task) or NONE


def _decide(candidate: Candidate, task: str, names: OptionNames, method: str) -> Extraction:
    """The answer of the deciding candidate, or none when it is no valid answer."""
    if candidate.letters is None:
        return NONE
    valid = validate_letters(candidate.letters, task, names.options)
    return Extraction(valid, method) if valid else NONE


# --- the judge ----------------------------------------------------------------------------------------------


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
    result = extract_answer(text, task, {})
    return result.letters if result.method in ("final_phrase", "fallback") else None


def judge_says_none(text: str | None) -> bool:
    """Whether a judge reply states that the response commits to no option (`[NONE]`)."""
    return bool(text) and re.search(r"\[\s*none\s*\]", text, re.IGNORECASE) is not None
