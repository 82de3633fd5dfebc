"""Answer extraction against the corpus of realistic responses, plus the judge round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spinebench.extract import (
    METHODS,
    Extraction,
    extract_answer,
    judge_prompt,
    mentioned_levels,
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
