"""SpineBench-Sub selection (DESIGN 1.5).

Only questions whose image passes the quality thresholds are candidates. Candidates are grouped by disease
(Healthy is a class too) and every class gets a target share of the requested size, as equal as availability
allows. Questions are then picked one at a time: the class furthest below its target (lowest filled
fraction) goes next, and within it the candidate whose answer options add the most variety so far:
- diagnosis: the candidate whose distractor diseases have appeared least often as distractors among the
  questions already picked (score = sum over its distractors d of 1 / (1 + count[d]));
- localization: the candidate whose level set, and whose levels, have appeared least often as answers
  (score = 1 / (1 + count[level set]) + mean over its levels l of 1 / (1 + count[l])).
Remaining ties go to the lowest seeded hash of the question_id, so the order never depends on row order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
import pandas as pd
import pyarrow as pa

from spinebench import vocab
from spinebench.catalog import format_ids
from spinebench.io import CONSOLE
from spinebench.questions import OPTION_COLUMNS
from spinebench.seeding import item_int

logger = logging.getLogger(__name__)

SUBSET_SCHEMA = pa.schema([("question_id", pa.string()), ("task", pa.string()), ("rank", pa.int64())])

QUALITY_THRESHOLDS: dict[str, str] = {
    "variance": "min_variance",
    "laplacian_variance": "min_laplacian_variance",
    "contrast": "min_contrast",
}

# Scores are sums of reciprocals; rounding makes mathematically equal scores exactly equal, so that ties
# are decided by the seeded hash and not by floating-point summation order.
SCORE_DECIMALS = 12


def passing_images(catalog: pd.DataFrame, settings: Mapping) -> set[str]:
    """Image ids whose variance, Laplacian variance and contrast all reach their thresholds.

    A missing (NaN) metric fails, since the image's clarity cannot be vouched for.
    """
    missing = [column for column in QUALITY_THRESHOLDS if column not in catalog.columns]
    if missing:
        raise ValueError(f"catalog lacks quality column(s) {', '.join(missing)}")
    passes = np.ones(len(catalog), dtype=bool)
    for column, key in QUALITY_THRESHOLDS.items():
        passes &= catalog[column].to_numpy(dtype=np.float64, na_value=np.nan) >= float(settings[key])
    return set(catalog.loc[passes, "image_id"])


def class_targets(available: Sequence[int], size: int) -> list[int]:
    """Per-class targets summing to min(size, sum(available)), as equal as availability allows.

    Water-filling: a class with no more candidates than the current equal share takes all of them and the
    rest is shared again among the others; the final remainder adds one to the earliest classes (vocabulary
    order). Targets of classes that are not capped therefore differ by at most one.
    """
    targets = [0] * len(available)
    remaining = min(size, sum(available))
    open_classes = [k for k, count in enumerate(available) if count > 0]
    while open_classes:
        share = remaining // len(open_classes)
        capped = [k for k in open_classes if available[k] <= share]
        if not capped:
            break
        for k in capped:
            targets[k] = available[k]
            remaining -= available[k]
        open_classes = [k for k in open_classes if k not in capped]
    if open_classes:
        share, extra = divmod(remaining, len(open_classes))
        for position, k in enumerate(open_classes):
            targets[k] = share + (1 if position < extra else 0)
    return targets


class DiagnosisScorer:
    """Scores diagnosis candidates by how rarely their distractor diseases were shown so far."""

    def __init__(self, distractor_sets: Sequence[Sequence[str]]):
        column = {disease: k for k, disease in enumerate(vocab.DISEASES)}
        self.indicators = np.zeros((len(distractor_sets), len(vocab.DISEASES)))
        for row, diseases in enumerate(distractor_sets):
            self.indicators[row, [column[d] for d in diseases]] = 1.0
        self.shown = np.zeros(len(vocab.DISEASES))

    def scores(self, candidates: np.ndarray) -> np.ndarray:
        """Current scores of the given candidate rows."""
        return np.round(self.indicators[candidates] @ (1.0 / (1.0 + self.shown)), SCORE_DECIMALS)

    def update(self, picked: int) -> None:
        """Count the picked question's distractors as shown."""
        self.shown += self.indicators[picked]


class LocalizationScorer:
    """Scores localization candidates by how rarely their level set and their levels were answers so far."""

    def __init__(self, level_sets: Sequence[Sequence[str]]):
        column = {level: k for k, level in enumerate(vocab.LEVELS)}
        self.indicators = np.zeros((len(level_sets), len(vocab.LEVELS)))
        for row, levels in enumerate(level_sets):
            self.indicators[row, [column[level] for level in levels]] = 1.0
        # A level set as a bit mask, indexing the per-set counts.
        self.set_ids = (self.indicators @ (2.0 ** np.arange(len(vocab.LEVELS)))).astype(np.int64)
        self.sizes = self.indicators.sum(axis=1)
        self.set_shown = np.zeros(2 ** len(vocab.LEVELS))
        self.level_shown = np.zeros(len(vocab.LEVELS))

    def scores(self, candidates: np.ndarray) -> np.ndarray:
        """Current scores of the given candidate rows."""
        set_novelty = 1.0 / (1.0 + self.set_shown[self.set_ids[candidates]])
        level_novelty = (
            self.indicators[candidates] @ (1.0 / (1.0 + self.level_shown)) / self.sizes[candidates]
        )
        return np.round(set_novelty + level_novelty, SCORE_DECIMALS)

    def update(self, picked: int) -> None:
        """Count the picked question's level set and levels as shown."""
        self.set_shown[self.set_ids[picked]] += 1
        self.level_shown += self.indicators[picked]


def balanced_selection(
    classes: np.ndarray, targets: Sequence[int], tie_keys: Sequence[int], scorer
) -> list[int]:
    """Candidate rows in selection order, meeting every class target exactly.

    `classes[i]` is candidate i's class index (into `targets`); `tie_keys[i]` decides ties, lowest first.
    Each step serves the class with the lowest filled fraction (ties: lowest class index) and takes its
    best-scoring remaining candidate. Only the scorer's few counters change per pick, and the chosen
    class's scores are one vectorised product, so a step costs O(class size), not Python loops over pairs.
    """
    tie_order = np.argsort(np.asarray(tie_keys, dtype=np.uint64), kind="stable")
    # Each class's candidates in tie-break order: argmax then returns the lowest tie key among equal scores.
    members = {k: tie_order[classes[tie_order] == k] for k in range(len(targets)) if targets[k] > 0}
    remaining = {k: np.ones(len(rows), dtype=bool) for k, rows in members.items()}
    filled = dict.fromkeys(members, 0)
    picked = []
    for _ in range(sum(targets)):
        open_classes = [k for k in members if filled[k] < targets[k]]
        chosen_class = min(open_classes, key=lambda k: (Fraction(filled[k], targets[k]), k))
        candidates = members[chosen_class][remaining[chosen_class]]
        best = int(np.argmax(scorer.scores(candidates)))
        row = int(candidates[best])
        remaining[chosen_class][np.flatnonzero(remaining[chosen_class])[best]] = False
        scorer.update(row)
        filled[chosen_class] += 1
        picked.append(row)
    return picked


def diagnosis_distractors(diagnosis: pd.DataFrame) -> list[list[str]]:
    """Each diagnosis question's distractor diseases: its options other than the truth and Healthy."""
    options = diagnosis[list(OPTION_COLUMNS)].to_numpy()
    distractors = []
    for row, truth, question_id in zip(options, diagnosis["disease"], diagnosis["question_id"], strict=True):
        wrong = [option for option in row if option not in (truth, vocab.HEALTHY)]
        if any(option not in vocab.DISEASES for option in wrong):
            raise ValueError(f"question {question_id}: options {list(row)} are not all in vocab.LABELS")
        distractors.append(wrong)
    return distractors


def localization_levels(localization: pd.DataFrame) -> list[list[str]]:
    """Each localization question's answer levels, read from its answer letters and options."""
    options = localization[list(OPTION_COLUMNS)].to_numpy()
    levels = []
    for row, answer, question_id in zip(
        options, localization["answer"], localization["question_id"], strict=True
    ):
        letters = str(answer).split(",")
        if any(letter not in vocab.LETTERS for letter in letters):
            raise ValueError(f"question {question_id}: answer {answer!r} is not letters joined by ','")
        chosen = [row[vocab.LETTERS.index(letter)] for letter in letters]
        if any(level not in vocab.LEVELS for level in chosen):
            raise ValueError(f"question {question_id}: answer levels {chosen} are not in vocab.LEVELS")
        levels.append(chosen)
    return levels


def eligible_questions(questions: pd.DataFrame, eligible: set[str]) -> pd.DataFrame:
    """The questions whose image passed the quality thresholds, in question_id order."""
    kept = questions[questions["image_id"].isin(eligible)]
    return kept.sort_values("question_id", kind="stable").reset_index(drop=True)


def shortfall_warning(task: str, size: int, candidates: int, questions: int | None) -> str:
    """The warning for a request of `size` questions that only `candidates` eligible ones can fill.

    `questions` (the task's questions before the quality thresholds) tells a task without any question
    (say, no source kept an image with lumbar levels) from one whose images fail the thresholds.
    """
    if questions == 0:
        return f"{task}: {size} questions requested but the benchmark has no {task} question; selecting none"
    of_total = "" if questions is None else f" of {questions}"
    return (
        f"{task}: {size} questions requested but only {candidates}{of_total} pass the quality thresholds; "
        f"selecting all {candidates}"
    )


def select_task(
    task: str, candidates: pd.DataFrame, scorer, size: int, seed: int, questions: int | None = None
) -> tuple[list[str], list[str]]:
    """The selected question_ids of one task in selection order, plus any warnings.

    `scorer` scores the rows of `candidates` (DiagnosisScorer or LocalizationScorer built on them);
    `questions`, the task's question count before the quality thresholds, only words the warning.
    """
    label_index = {label: k for k, label in enumerate(vocab.LABELS)}
    unknown = sorted(set(candidates["disease"]) - set(label_index))
    if unknown:
        raise ValueError(
            f"{task} questions with disease(s) outside vocab.LABELS: {', '.join(map(repr, unknown))}"
        )
    classes = candidates["disease"].map(label_index).to_numpy(dtype=np.int64)
    available = np.bincount(classes, minlength=len(vocab.LABELS)).tolist()
    warnings = []
    if size > len(candidates):
        warnings.append(shortfall_warning(task, size, len(candidates), questions))
    targets = class_targets(available, size)
    tie_keys = [item_int(seed, question_id, "subset") for question_id in candidates["question_id"]]
    rows = balanced_selection(classes, targets, tie_keys, scorer)
    return candidates["question_id"].iloc[rows].tolist(), warnings


def check_images_known(catalog: pd.DataFrame, questions: pd.DataFrame, task: str) -> None:
    """Raise naming the questions whose image is not in the catalog."""
    unknown = questions.loc[~questions["image_id"].isin(catalog["image_id"]), "question_id"].tolist()
    if unknown:
        raise ValueError(f"{task} question(s) whose image is not in the catalog: {format_ids(unknown)}")


def select_subset(
    catalog: pd.DataFrame, diagnosis: pd.DataFrame, localization: pd.DataFrame, settings: Mapping, seed: int
) -> pd.DataFrame:
    """SpineBench-Sub membership: `question_id, task, rank` (rank = selection order within the task).

    A size larger than the eligible pool selects every eligible question and logs a warning; the warnings
    are also returned in the frame's `attrs["warnings"]` so a caller can report them.
    """
    eligible = passing_images(catalog, settings)
    check_images_known(catalog, diagnosis, "diagnosis")
    check_images_known(catalog, localization, "localization")
    totals = {"diagnosis": len(diagnosis), "localization": len(localization)}
    diagnosis = eligible_questions(diagnosis, eligible)
    localization = eligible_questions(localization, eligible)
    selections = {
        "diagnosis": select_task(
            "diagnosis",
            diagnosis,
            DiagnosisScorer(diagnosis_distractors(diagnosis)),
            int(settings["diagnosis_size"]),
            seed,
            totals["diagnosis"],
        ),
        "localization": select_task(
            "localization",
            localization,
            LocalizationScorer(localization_levels(localization)),
            int(settings["localization_size"]),
            seed,
            totals["localization"],
        ),
    }
    frames, warnings = [], []
    for task in vocab.TASKS:
        selected, task_warnings = selections[task]
        warnings.extend(task_warnings)
        frames.append(pd.DataFrame({"question_id": selected, "task": task, "rank": np.arange(len(selected))}))
    for warning in warnings:
        logger.warning(warning, extra=CONSOLE)  # a smaller subset than asked for changes the benchmark
    subset = pd.concat(frames, ignore_index=True)
    subset["question_id"] = subset["question_id"].astype(str)
    subset["task"] = subset["task"].astype(str)
    subset["rank"] = subset["rank"].astype("int64")
    subset.attrs["warnings"] = warnings
    return subset
