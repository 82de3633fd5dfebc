"""Answer extraction against the corpus of expected paths (tests/data/responses.yaml), unit behaviour, and
the judge round trip. tests/test_extraction_corpus.py measures agreement on the labelled corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spinebench.extract import (
    METHODS,
    Extraction,
    extract_answer,
    judge_prompt,
    judge_says_none,
    mentioned_levels,
    normalize_response,
    parse_judge_reply,
    parse_letter_list,
)
from spinebench.vocab import LETTERS

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "responses.yaml").read_text(encoding="utf-8"))
OPTION_SETS = CORPUS["option_sets"]
CASES = CORPUS["cases"]
DX_OPTIONS = OPTION_SETS["dx1"]
LOC_OPTIONS = OPTION_SETS["loc1"]


def test_corpus_is_large_and_covers_every_path():
    assert len(CASES) >= 100
    assert len({case["id"] for case in CASES}) == len(CASES)
    assert {case["task"] for case in CASES} == {"diagnosis", "localization"}
    covered = {(case["task"], case["expected"]["method"]) for case in CASES}
    assert covered == {(task, method) for task in ("diagnosis", "localization") for method in METHODS}


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_corpus_case(case):
    result = extract_answer(case["response"], case["task"], OPTION_SETS[case["options"]])
    expected_letters = case["expected"]["letters"]
    expected = Extraction(tuple(expected_letters) if expected_letters else None, case["expected"]["method"])
    assert result == expected


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_answer_shape_matches_task(case):
    letters = extract_answer(case["response"], case["task"], OPTION_SETS[case["options"]]).letters
    if letters is None:
        return
    assert set(letters) <= set(LETTERS)
    assert list(letters) == sorted(set(letters))
    if case["task"] == "diagnosis":
        assert len(letters) == 1


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task"):
        extract_answer("My final option: [A]", "segmentation", DX_OPTIONS)


def test_letters_outside_the_given_options_are_invalid():
    four_options = {letter: DX_OPTIONS[letter] for letter in "ABCD"}
    assert extract_answer("My final option: [E]", "diagnosis", four_options) == Extraction(None, "none")


def test_parse_letter_list_stops_at_prose():
    assert parse_letter_list("C. This is because A and B are wrong") == ("C",)
    assert parse_letter_list("A. L3/L4, C. L5/S1", LOC_OPTIONS) == ("A", "C")
    assert parse_letter_list("[A, C") is None
    assert parse_letter_list("a narrowing of the disc") is None
    assert parse_letter_list("A coluna lombar") is None  # an article, not option A
    assert parse_letter_list("A e C") == ("A", "C")
    assert parse_letter_list("B or D") == ("B", "D")  # listed; callers see the hedge via scan_list


def test_level_mentions_are_canonical():
    assert mentioned_levels("L4-5, L5-S1, L3/L4 and L2 - L3") == {"L2/L3", "L3/L4", "L4/L5", "L5/S1"}
    assert mentioned_levels("L2/L4 and L5/S2") == set()


@pytest.mark.parametrize("task", ["diagnosis", "localization"])
def test_judge_prompt_carries_response_and_options(task):
    options = DX_OPTIONS if task == "diagnosis" else LOC_OPTIONS
    prompt = judge_prompt("I lean towards the slip.", task, options)
    assert "I lean towards the slip." in prompt
    assert all(f"{letter}: {text}" in prompt for letter, text in options.items())
    assert ("My final options:" in prompt) == (task == "localization")


@pytest.mark.parametrize(
    ("reply", "task", "expected"),
    [
        ("My final option: [C]", "diagnosis", ("C",)),
        ("**My final option: [b]**", "diagnosis", ("B",)),
        ("My final options: [E, A]", "localization", ("A", "E")),
        ("My final option: [NONE]", "diagnosis", None),
        ("My final option: [A, C]", "diagnosis", None),
        ("My final options: [A, F]", "localization", None),
        ("C", "diagnosis", ("C",)),
        ("", "diagnosis", None),
        (None, "localization", None),
        ("I am not sure.", "diagnosis", None),
    ],
)
def test_parse_judge_reply(reply, task, expected):
    assert parse_judge_reply(reply, task) == expected


# --- preparation, continuation, option names (issue 10) ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<think>maybe [A]</think>\nMy final option: [C]", "\nMy final option: [C]"),
        ("<think>the options are A and", ""),  # cut off while thinking
        ("\\boxed{\\text{(A)}}", "\nAnswer: (A)\n"),
        ("<|begin_of_box|>B<|end_of_box|>", "\nAnswer: B\n"),
        ('{"answer": ["C", "E"]}', "{\nAnswer: C, E\n}"),
        ("My final option: 【Ｄ】", "My final option: [D]"),
        ("Ответ: А", "Ответ: A"),  # a Cyrillic look-alike standing alone
    ],
)
def test_normalize_response(raw, expected):
    assert normalize_response(raw) == expected


@pytest.mark.parametrize(
    ("response", "letters"),
    [
        ("C<|im_end|>\n<|im_start|>user\nNext one?<|im_end|>\n<|im_start|>assistant\nA", ("C",)),
        ("The answer is B.\n\nQuestion 2: Which level?\nThe answer is E.", ("B",)),
        ("Question: Which spinal condition is shown?\nAnswer: D", ("D",)),  # a restated question is kept
    ],
)
def test_generated_continuations_are_cut_after_the_answer(response, letters):
    assert extract_answer(response, "diagnosis", DX_OPTIONS).letters == letters


def test_option_texts_too_short_to_tell_apart_are_never_matched():
    digits = {letter: str(number) for number, letter in enumerate(LETTERS, start=1)}
    assert extract_answer("The image shows 5 lumbar vertebrae.", "diagnosis", digits) == Extraction(
        None, "none"
    )
    same = {letter: letter for letter in LETTERS}
    assert extract_answer("A lateral radiograph is shown.", "diagnosis", same) == Extraction(None, "none")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("My final option: [B] Osteophytes", Extraction(None, "none")),  # letter and text disagree
        ("It could be B or D.", Extraction(None, "none")),
        ("I'd choose B or D.", Extraction(None, "none")),
        ("Osteophytes are not seen. The diagnosis is spondylolisthesis.", Extraction(("C",), "option_text")),
        ("There is no slip. The image shows osteophytes.", Extraction(("D",), "low_confidence")),
        ("A coluna lombar mostra um deslizamento. Portanto, a opção C.", Extraction(("C",), "fallback")),
        ("The findings are most consistent with (D) Osteophytes.", Extraction(("D",), "fallback")),
        ("Option A (Disc space narrowing) is unlikely here.", Extraction(None, "none")),
    ],
)
def test_commitments_and_non_commitments(response, expected):
    assert extract_answer(response, "diagnosis", DX_OPTIONS) == expected


def test_level_ranges_name_every_level_in_them():
    result = extract_answer("All levels from L2/L3 to L4/L5 are involved.", "localization", LOC_OPTIONS)
    assert result == Extraction(("A", "D", "E"), "option_text")  # L2/L3, L3/L4, L4/L5 in loc1


def test_judge_says_none_only_for_an_explicit_none():
    assert judge_says_none("My final option: [NONE]")
    assert not judge_says_none("My final option: [A]")
    assert not judge_says_none(None)
