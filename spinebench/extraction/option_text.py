"""Stages 3 and 4: the answer that the affirmed option mentions give (`option_text`, `low_confidence`)."""

from __future__ import annotations

from spinebench.extraction.hedges import hedges_between_options, refuses
from spinebench.extraction.names import OptionNames
from spinebench.extraction.result import NONE, Extraction, validate_letters
from spinebench.extraction.runs import Run, affirmed_runs


def option_text_answer(text: str, names: OptionNames, task: str) -> Extraction | None:
    """Stages 3 and 4: the options a concluding phrase names (the last such sentence), else the options the
    response names without negating them; None when it names none."""
    runs = affirmed_runs(text, names, task)
    strong = [run for run in runs if run.strong]
    if strong:
        sentence = strong[-1].sentence
        if hedges_between_options(text[sentence[0] : sentence[1]], names):
            return NONE
        return _from_runs([run for run in strong if run.sentence == sentence], task, names, "option_text")
    if not runs or refuses(text):
        return None
    if hedges_between_options(text, names):
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
