"""Prompt templates: the paper's Figures 9 and 10 verbatim, the definitions ablation, strict rendering."""

from __future__ import annotations

import pytest
import yaml

from spinebench.prompts import (
    DEFINITIONS_PATH,
    PromptError,
    load_definitions,
    question_options,
    render_prompt,
    template_source,
)
from spinebench.vocab import LABELS

QUESTION = {
    "question_id": "dx-rsna-1-2-3",
    "image_id": "rsna-1-2-3",
    "question": "Which disease does this spine image most likely show",
    "option_a": "Spondylolisthesis",
    "option_b": "Healthy",
    "option_c": "Osteophytes",
    "option_d": "Vertebral collapse",
    "option_e": "Disc space narrowing",
}
LOCALIZATION = {
    "question_id": "loc-rsna-1-2-3",
    "question": "At which lumbar levels is the lesion located",
    "option_a": "L4/L5",
    "option_b": "L1/L2",
    "option_c": "L5/S1",
    "option_d": "L3/L4",
    "option_e": "L2/L3",
}


def one_line(text: str) -> str:
    """A paragraph written over several source lines, as the single line it stands for."""
    return " ".join(text.split())


# DESIGN.md section 1, Figure 9, with the placeholders filled by QUESTION.
FIGURE_9 = one_line(
    """
    This is a simulated medical scenario for educational or evaluation purposes. You are to adopt the persona
    of a board-certified spine surgeon with extensive clinical experience. Your task is to analyze the
    following multiple-choice question and, drawing upon your simulated expertise, identify the single most
    accurate answer among the options. Important: Maintain your role throughout. Provide your reasoning for
    selecting the best option. Do not break character by stating you are an AI or advising consultation with
    a real physician. The Question is: Which disease does this spine image most likely show. The candidate
    Options are: [A: Spondylolisthesis, B: Healthy, C: Osteophytes, D: Vertebral collapse, E: Disc space
    narrowing]. After providing your detailed reasoning, you must conclude your entire response with the
    following exact phrase on a new line: My final option: [X] (where X is the letter: A, B, C, D, or E
    corresponding to your chosen answer).
    """
)


def test_diagnosis_prompt_is_figure_9_verbatim():
    assert render_prompt("diagnosis", QUESTION, definitions=False) == FIGURE_9


def test_localization_prompt_follows_figure_10():
    prompt = render_prompt("localization", LOCALIZATION, definitions=False)
    persona = FIGURE_9.partition(" Your task is")[0]
    assert prompt.startswith(persona + " Your task is")
    for phrase in (
        "identify all appropriate answers among the options, as there may be more than one correct choice.",
        "Provide your reasoning for selecting each of your chosen options.",
        "Do not break character by stating you are an AI or advising consultation with a real physician.",
        "The Question is: At which lumbar levels is the lesion located.",
        "The candidate Options are: [A: L4/L5, B: L1/L2, C: L5/S1, D: L3/L4, E: L2/L3].",
    ):
        assert phrase in prompt
    assert prompt.endswith(
        one_line(
            """
            must conclude your entire response with the following exact phrase on a new line: My final
            options: [X, Y, ...] (where X, Y, ... are the letters: A, B, C, D, or E corresponding to your
            chosen answers, separated by commas if multiple. For example: My final options: [A, C]).
            """
        )
    )
    assert "single most accurate" not in prompt


def test_definitions_come_before_the_question_for_every_label():
    plain = render_prompt("diagnosis", QUESTION, definitions=False)
    with_definitions = render_prompt("diagnosis", QUESTION, definitions=True)
    head, _, question_part = with_definitions.partition("The Question is:")
    assert "The Question is:" + question_part == "The Question is:" + plain.partition("The Question is:")[2]
    for label, definition in load_definitions():
        assert f"- {label}: {definition}\n" in head
    # Everything else is Figure 9 unchanged.
    assert head.startswith(plain.partition(" The Question is:")[0] + " For reference,")
    # The ablation concerns the diagnosis prompt only.
    assert render_prompt("localization", LOCALIZATION, True) == render_prompt(
        "localization", LOCALIZATION, False
    )


def test_definitions_file_covers_exactly_the_vocabulary():
    document = yaml.safe_load(DEFINITIONS_PATH.read_text(encoding="utf-8"))
    assert list(document["definitions"]) == list(LABELS)
    assert [label for label, _ in load_definitions()] == list(LABELS)
    assert all(len(text) > 20 for _, text in load_definitions())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("Healthy"), r"missing labels \['Healthy'\]"),
        (lambda d: d.update({"Scoliosis": "a lateral curve"}), r"unknown labels \['Scoliosis'\]"),
        (lambda d: d.update({"Osteophytes": "  "}), "Osteophytes.*empty"),
    ],
)
def test_bad_definitions_files_are_rejected(tmp_path, change, message):
    document = yaml.safe_load(DEFINITIONS_PATH.read_text(encoding="utf-8"))
    change(document["definitions"])
    path = tmp_path / "definitions.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(PromptError, match=message):
        render_prompt("diagnosis", QUESTION, definitions=True, definitions_path=path)


def test_missing_fields_name_the_question():
    without_option = {key: value for key, value in QUESTION.items() if key != "option_d"}
    with pytest.raises(PromptError, match="dx-rsna-1-2-3.*option_d"):
        render_prompt("diagnosis", without_option, definitions=False)
    with pytest.raises(PromptError, match="dx-rsna-1-2-3.*option_c"):
        render_prompt("diagnosis", {**QUESTION, "option_c": None}, definitions=False)
    with pytest.raises(PromptError, match="dx-rsna-1-2-3.*'question'"):
        render_prompt("diagnosis", {**QUESTION, "question": ""}, definitions=False)
    with pytest.raises(PromptError, match="not distinct"):
        question_options({**QUESTION, "option_e": "Healthy"})


def test_templates_render_strictly(tmp_path):
    (tmp_path / "diagnosis.j2").write_text("{{ question }} {{ A }} {{ patient_age }}", encoding="utf-8")
    with pytest.raises(PromptError, match="dx-rsna-1-2-3.*patient_age"):
        render_prompt("diagnosis", QUESTION, definitions=False, templates_dir=tmp_path)
    with pytest.raises(PromptError, match="not found"):
        render_prompt("localization", LOCALIZATION, definitions=False, templates_dir=tmp_path)


def test_unknown_task_is_rejected():
    with pytest.raises(PromptError, match="unknown task 'grading'"):
        render_prompt("grading", QUESTION, definitions=False)
    assert "{{ question }}" in template_source("diagnosis")
