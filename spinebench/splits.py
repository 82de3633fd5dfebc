"""The benchmark's two splits: every question (`full`) or SpineBench-Sub's (`subset`).

Used wherever questions are chosen for a split: the predict jobs and the exports for other harnesses.
"""

from __future__ import annotations

import pandas as pd

from spinebench.vocab import TASKS

# `full`: every question of a task; `subset`: the questions SpineBench-Sub selected (subset.parquet).
SPLITS: tuple[str, ...] = ("full", "subset")


class SplitError(ValueError):
    """A question table, subset or split name that cannot give the questions of a split."""


def select_questions(
    questions: pd.DataFrame, subset: pd.DataFrame | None, task: str, split: str
) -> pd.DataFrame:
    """The questions of `task` in `split`, in question_id order: all (`full`) or SpineBench-Sub's
    (`subset`)."""
    if task not in TASKS:
        raise SplitError(f"unknown task {task!r}")
    if questions["question_id"].duplicated().any():
        duplicate = questions.loc[questions["question_id"].duplicated(), "question_id"].iloc[0]
        raise SplitError(f"question {duplicate} appears more than once in the {task} questions")
    if split == "full":
        chosen = questions
    elif split == "subset":
        if subset is None:
            raise SplitError("split 'subset' needs the subset table")
        wanted = set(subset.loc[subset["task"] == task, "question_id"])
        unknown = sorted(wanted - set(questions["question_id"]))
        if unknown:
            raise SplitError(f"subset question {unknown[0]} is not among the {task} questions")
        chosen = questions[questions["question_id"].isin(wanted)]
    else:
        raise SplitError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return chosen.sort_values("question_id", kind="mergesort").reset_index(drop=True)
