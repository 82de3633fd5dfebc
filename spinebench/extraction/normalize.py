"""Preparing a response for the stages: Unicode forms, think blocks, answer boxes, special tokens, markup."""

from __future__ import annotations

import json
import re
import unicodedata

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
# continuation.cut_continuation recognises; the model's own turn header and every other special token just go.
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
    """The response as the stages read it (see the package docstring); "" for an unfinished think block."""
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
