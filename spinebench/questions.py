"""Question generation (DESIGN 1.4): one diagnosis question per image, one localization question per image
with lumbar levels.

Each question's text is one of the pool's paraphrases and its option order is a shuffle; both are drawn from
the item's own seeded generator, keyed by (seed, question_id, purpose), so a question never changes when
other images are added or removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from spinebench import vocab
from spinebench.catalog import format_ids
from spinebench.seeding import item_choice, item_permutation

# Paraphrases per task in the question pool (the paper's pool size).
POOL_SIZE = 7

OPTION_COLUMNS: tuple[str, ...] = tuple(f"option_{letter.lower()}" for letter in vocab.LETTERS)

QUESTION_COLUMNS: tuple[str, ...] = (
    "question_id",
    "image_id",
    "source",
    "modality",
    "region",
    "disease",
    "question",
    *OPTION_COLUMNS,
    "answer",
    "paraphrase",
)

# Diagnosis and localization tables share one layout (options hold diseases or levels respectively).
QUESTIONS_SCHEMA = pa.schema(
    [(name, pa.int64() if name == "paraphrase" else pa.string()) for name in QUESTION_COLUMNS]
)

# Catalog columns copied into every question.
CARRIED_COLUMNS: tuple[str, ...] = ("image_id", "source", "modality", "region", "disease")


def load_pool(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read and validate the question pool: a `version` and exactly POOL_SIZE unique texts per task."""
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
    return validate_pool(data, str(path))


def validate_pool(data: object, origin: str) -> dict[str, list[str]]:
    """Check a parsed pool document; `origin` (the file) is named in every error."""
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{origin}: the question pool must be a mapping with `version` and one list per task"
        )
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int | str) or str(version).strip() == "":
        raise ValueError(f"{origin}: the question pool needs a non-empty `version` (int or string)")
    unknown = sorted(set(map(str, data)) - {"version", *vocab.TASKS})
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) in the question pool: {', '.join(unknown)}")
    pool = {}
    for task in vocab.TASKS:
        texts = data.get(task)
        if not isinstance(texts, list):
            raise ValueError(f"{origin}: `{task}` must be a list of {POOL_SIZE} question texts")
        if len(texts) != POOL_SIZE:
            raise ValueError(
                f"{origin}: `{task}` has {len(texts)} question texts, expected exactly {POOL_SIZE}"
            )
        for position, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{origin}: `{task}` entry {position} is not a non-empty string: {text!r}")
        stripped = [text.strip() for text in texts]
        repeated = sorted({text for text in stripped if stripped.count(text) > 1})
        if repeated:
            raise ValueError(f"{origin}: `{task}` repeats question text(s): {'; '.join(repeated)}")
        pool[task] = stripped
    return pool


def levels_of(value: object) -> list[str]:
    """A catalog `levels` cell (list, array or null) as a plain list of strings."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(level) for level in value]


def shuffle_options(options: Sequence[str], seed: int, question_id: str) -> list[str]:
    """The options in the question's own seeded order."""
    order = item_permutation(seed, len(options), question_id, "options")
    return [options[i] for i in order]


def choose_paraphrase(texts: Sequence[str], seed: int, question_id: str) -> int:
    """Index of the question's paraphrase in the pool."""
    return item_choice(seed, len(texts), question_id, "paraphrase")


def diagnosis_options(image_id: str, disease: str, distractors: Iterable[str]) -> list[str]:
    """Unshuffled diagnosis options: truth, distractors, and Healthy unless the truth already is Healthy.

    Raises naming the image unless that makes exactly one option per letter, all distinct.
    """
    distractors = list(distractors)
    options = [disease, *distractors] + ([] if disease == vocab.HEALTHY else [vocab.HEALTHY])
    if vocab.HEALTHY in distractors or disease in distractors:
        raise ValueError(f"image {image_id}: distractors {distractors} include the truth or Healthy")
    if len(set(options)) != len(options) or len(options) != len(vocab.LETTERS):
        needed = len(vocab.LETTERS) - 1 - (disease != vocab.HEALTHY)
        raise ValueError(
            f"image {image_id}: options {options} are not {len(vocab.LETTERS)} distinct labels "
            f"(a {disease!r} image needs {needed} distinct distractors)"
        )
    unknown = [option for option in options if option not in vocab.LABELS]
    if unknown:
        raise ValueError(f"image {image_id}: option(s) outside vocab.LABELS: {unknown}")
    return options


def question_row(
    item: Mapping, question_id: str, question: str, paraphrase: int, options: Sequence[str], answer: str
) -> dict:
    """One questions-table row in contract column order."""
    row = {"question_id": question_id, **{name: item[name] for name in CARRIED_COLUMNS}}
    row["question"] = question
    row.update(zip(OPTION_COLUMNS, options, strict=True))
    row["answer"] = answer
    row["paraphrase"] = paraphrase
    return row


def questions_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as a questions table sorted by question_id (empty tables keep the columns)."""
    frame = pd.DataFrame(rows, columns=list(QUESTION_COLUMNS))
    frame["paraphrase"] = frame["paraphrase"].astype("int64")
    return frame.sort_values("question_id", kind="stable").reset_index(drop=True)


def check_catalog_columns(catalog: pd.DataFrame, extra: Sequence[str] = ()) -> None:
    """Raise if the catalog lacks a column the questions need."""
    missing = [name for name in (*CARRIED_COLUMNS, *extra) if name not in catalog.columns]
    if missing:
        raise ValueError(f"catalog lacks column(s) {', '.join(missing)}")


def distractors_by_image(catalog: pd.DataFrame, distractors: pd.DataFrame) -> dict[str, list[str]]:
    """Each catalog image's distractor list; the distractor table must cover and agree with the catalog."""
    repeated = sorted(set(distractors.loc[distractors["image_id"].duplicated(), "image_id"]))
    if repeated:
        raise ValueError(f"distractor table repeats image(s): {format_ids(repeated)}")
    disease_of = dict(zip(distractors["image_id"], distractors["disease"], strict=True))
    choices_of = dict(zip(distractors["image_id"], distractors["distractors"], strict=True))
    missing = sorted(set(catalog["image_id"]) - set(disease_of))
    if missing:
        raise ValueError(f"catalog image(s) without distractors: {format_ids(missing)}")
    lookup = {}
    for image_id, disease in zip(catalog["image_id"], catalog["disease"], strict=True):
        if disease_of[image_id] != disease:
            raise ValueError(
                f"image {image_id}: the distractor table says {disease_of[image_id]!r}, "
                f"the catalog says {disease!r}"
            )
        lookup[image_id] = [str(name) for name in choices_of[image_id]]
    return lookup


def check_question(row: Mapping, task: str) -> None:
    """Raise naming the question unless its options are distinct non-empty texts and its answer fits them.

    The answer must be sorted distinct letters; for diagnosis exactly one, whose option is the disease.
    """
    options = [row[name] for name in OPTION_COLUMNS]
    if any(not isinstance(option, str) or not option for option in options) or len(set(options)) != len(
        options
    ):
        raise ValueError(f"question {row['question_id']}: options {options} are not distinct non-empty texts")
    letters = str(row["answer"]).split(",")
    if any(letter not in vocab.LETTERS for letter in letters) or letters != sorted(set(letters)):
        raise ValueError(
            f"question {row['question_id']}: answer {row['answer']!r} is not sorted distinct letters"
        )
    if task == "diagnosis" and (
        len(letters) != 1 or options[vocab.LETTERS.index(letters[0])] != row["disease"]
    ):
        raise ValueError(f"question {row['question_id']}: answer {row['answer']!r} is not {row['disease']!r}")


def make_diagnosis_questions(
    catalog: pd.DataFrame, distractors: pd.DataFrame, pool: Mapping[str, Sequence[str]], seed: int
) -> pd.DataFrame:
    """One diagnosis question per catalog image: truth + distractors + Healthy in a seeded order."""
    check_catalog_columns(catalog)
    texts = pool["diagnosis"]
    lookup = distractors_by_image(catalog, distractors)
    rows = []
    for item in catalog.to_dict("records"):
        question_id = f"dx-{item['image_id']}"
        options = shuffle_options(
            diagnosis_options(item["image_id"], item["disease"], lookup[item["image_id"]]), seed, question_id
        )
        answer = vocab.LETTERS[options.index(item["disease"])]
        paraphrase = choose_paraphrase(texts, seed, question_id)
        row = question_row(item, question_id, texts[paraphrase], paraphrase, options, answer)
        check_question(row, "diagnosis")
        rows.append(row)
    return questions_frame(rows)


def localization_answer(image_id: str, levels: Sequence[str], options: Sequence[str]) -> str:
    """Sorted letters of the options that are the image's levels, joined by ','; raises on a bad level."""
    unknown = [level for level in levels if level not in vocab.LEVELS]
    if unknown or len(set(levels)) != len(levels):
        raise ValueError(f"image {image_id}: levels {list(levels)} are not distinct values of vocab.LEVELS")
    return ",".join(sorted(vocab.LETTERS[options.index(level)] for level in levels))


def make_localization_questions(
    catalog: pd.DataFrame, pool: Mapping[str, Sequence[str]], seed: int
) -> pd.DataFrame:
    """One localization question per catalog image with levels: the 5 levels in a seeded order."""
    check_catalog_columns(catalog, ("levels",))
    texts = pool["localization"]
    rows = []
    for item in catalog.to_dict("records"):
        levels = levels_of(item["levels"])
        if not levels:
            continue
        question_id = f"loc-{item['image_id']}"
        options = shuffle_options(vocab.LEVELS, seed, question_id)
        answer = localization_answer(item["image_id"], levels, options)
        paraphrase = choose_paraphrase(texts, seed, question_id)
        row = question_row(item, question_id, texts[paraphrase], paraphrase, options, answer)
        check_question(row, "localization")
        rows.append(row)
    return questions_frame(rows)
