"""Question pool validation and diagnosis / localization question generation (DESIGN 1.4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from spinebench import vocab
from spinebench.io import read_table, write_table
from spinebench.questions import (
    OPTION_COLUMNS,
    POOL_SIZE,
    QUESTION_COLUMNS,
    QUESTIONS_SCHEMA,
    load_pool,
    make_diagnosis_questions,
    make_localization_questions,
)
from spinebench.seeding import item_choice, item_digest, item_fraction, item_int, item_permutation, item_rng

POOL_PATH = Path(__file__).resolve().parents[1] / "resources" / "question_pool.yaml"


def synthetic_catalog(size: int = 120, seed: int = 0) -> pd.DataFrame:
    """Catalog rows with every label represented and random lumbar level sets (a third without levels)."""
    rng = np.random.default_rng(seed)
    diseases = [vocab.LABELS[i % len(vocab.LABELS)] for i in range(size)]
    levels = [
        sorted(
            rng.choice(vocab.LEVELS, size=rng.integers(1, 4), replace=False).tolist(), key=vocab.LEVELS.index
        )
        if i % 3
        else []
        for i in range(size)
    ]
    return pd.DataFrame(
        {
            "image_id": [f"rsna-{i:04d}" for i in range(size)],
            "source": "rsna",
            "modality": "MRI",
            "region": "lumbar",
            "disease": diseases,
            "levels": levels,
        }
    )


def synthetic_distractors(catalog: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A distractor table in the contract's shape: random wrong diseases, one more for Healthy images."""
    rng = np.random.default_rng(seed)
    rows = []
    for image_id, disease in zip(catalog["image_id"], catalog["disease"], strict=True):
        wrong = [d for d in vocab.DISEASES if d != disease]
        count = 4 if disease == vocab.HEALTHY else 3
        rows.append((image_id, disease, rng.choice(wrong, size=count, replace=False).tolist(), [0.5] * count))
    return pd.DataFrame(rows, columns=["image_id", "disease", "distractors", "similarities"])


def write_pool(tmp_path: Path, document) -> Path:
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def valid_document() -> dict:
    return {
        "version": 1,
        "diagnosis": [f"Diagnosis question {i}?" for i in range(POOL_SIZE)],
        "localization": [f"Localization question {i}?" for i in range(POOL_SIZE)],
    }


def test_shipped_pool_is_valid_and_has_the_papers_questions():
    pool = load_pool(POOL_PATH)
    assert set(pool) == set(vocab.TASKS)
    assert all(len(texts) == POOL_SIZE for texts in pool.values())
    assert "What kind of spinal condition is affecting this patient?" in pool["diagnosis"]
    assert "Which spinal disorder is this patient suffering from?" in pool["diagnosis"]
    assert "What is the site of the disease in the spine?" in pool["localization"]
    assert "What level of spine is the lesion located?" in pool["localization"]
    assert "version" in yaml.safe_load(POOL_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda doc: doc["diagnosis"].pop(), "has 6 question texts, expected exactly 7"),
        (lambda doc: doc["localization"].append("One more?"), "has 8 question texts"),
        (lambda doc: doc["diagnosis"].__setitem__(3, doc["diagnosis"][0]), "repeats question text"),
        (lambda doc: doc["diagnosis"].__setitem__(2, "   "), "entry 2 is not a non-empty string"),
        (lambda doc: doc.pop("version"), "non-empty `version`"),
        (lambda doc: doc.pop("localization"), "`localization` must be a list"),
        (lambda doc: doc.__setitem__("triage", ["x"]), "unknown key.*triage"),
    ],
)
def test_pool_validation_errors_name_the_file(tmp_path, mutate, message):
    document = valid_document()
    mutate(document)
    path = write_pool(tmp_path, document)
    with pytest.raises(ValueError, match=message) as error:
        load_pool(path)
    assert str(path) in str(error.value)


def test_pool_that_is_not_a_mapping_is_rejected(tmp_path):
    path = write_pool(tmp_path, ["just", "a", "list"])
    with pytest.raises(ValueError, match="must be a mapping"):
        load_pool(path)


def test_diagnosis_options_hold_truth_and_healthy_once():
    catalog = synthetic_catalog()
    distractors = synthetic_distractors(catalog)
    pool = load_pool(POOL_PATH)
    questions = make_diagnosis_questions(catalog, distractors, pool, seed=5)

    assert list(questions.columns) == list(QUESTION_COLUMNS)
    assert len(questions) == len(catalog)
    wrong_of = dict(zip(distractors["image_id"], distractors["distractors"], strict=True))
    for row in questions.itertuples():
        options = [getattr(row, name) for name in OPTION_COLUMNS]
        assert row.question_id == f"dx-{row.image_id}"
        assert len(set(options)) == 5
        assert options.count(row.disease) == 1 and options.count(vocab.HEALTHY) == 1
        assert options[vocab.LETTERS.index(row.answer)] == row.disease
        assert set(options) - {row.disease, vocab.HEALTHY} == set(wrong_of[row.image_id])
        assert row.question == pool["diagnosis"][row.paraphrase]
    healthy = questions[questions["disease"] == vocab.HEALTHY]
    assert len(healthy) and all(
        sum(getattr(row, name) in vocab.DISEASES for name in OPTION_COLUMNS) == 4
        for row in healthy.itertuples()
    )


def test_shuffles_differ_across_items_but_are_reproducible(tmp_path):
    catalog = synthetic_catalog()
    distractors = synthetic_distractors(catalog)
    pool = load_pool(POOL_PATH)
    first = make_diagnosis_questions(catalog, distractors, pool, seed=5)
    again = make_diagnosis_questions(catalog.iloc[::-1], distractors, pool, seed=5)
    other_seed = make_diagnosis_questions(catalog, distractors, pool, seed=6)
    pd.testing.assert_frame_equal(first, again)
    assert first["answer"].nunique() == 5 and first["paraphrase"].nunique() == POOL_SIZE
    assert (first["answer"] != other_seed["answer"]).any()

    locs = make_localization_questions(catalog, pool, seed=5)
    orders = {tuple(getattr(row, name) for name in OPTION_COLUMNS) for row in locs.itertuples()}
    assert len(orders) > 10

    for name, frame in (("a", first), ("b", again)):
        write_table(frame, tmp_path / f"{name}.parquet", schema=QUESTIONS_SCHEMA)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    pd.testing.assert_frame_equal(read_table(tmp_path / "a.parquet"), first, check_dtype=False)


def test_a_question_does_not_change_when_other_images_are_removed():
    catalog = synthetic_catalog()
    distractors = synthetic_distractors(catalog)
    pool = load_pool(POOL_PATH)
    full = make_diagnosis_questions(catalog, distractors, pool, seed=9).set_index("question_id")
    part = make_diagnosis_questions(catalog.iloc[::4], distractors, pool, seed=9).set_index("question_id")
    pd.testing.assert_frame_equal(part, full.loc[part.index])


def test_localization_questions_cover_images_with_levels():
    catalog = synthetic_catalog()
    pool = load_pool(POOL_PATH)
    questions = make_localization_questions(catalog, pool, seed=3)

    with_levels = catalog[catalog["levels"].map(len) > 0]
    assert questions["image_id"].tolist() == with_levels["image_id"].tolist()
    levels_of = dict(zip(catalog["image_id"], catalog["levels"], strict=True))
    for row in questions.itertuples():
        options = [getattr(row, name) for name in OPTION_COLUMNS]
        assert sorted(options) == sorted(vocab.LEVELS)
        letters = row.answer.split(",")
        assert letters == sorted(letters)
        assert sorted(options[vocab.LETTERS.index(letter)] for letter in letters) == sorted(
            levels_of[row.image_id]
        )
        assert row.question_id == f"loc-{row.image_id}"
        assert row.question == pool["localization"][row.paraphrase]


def test_bad_inputs_are_named():
    catalog = synthetic_catalog(24)
    distractors = synthetic_distractors(catalog)
    pool = load_pool(POOL_PATH)
    with pytest.raises(ValueError, match="without distractors: rsna-0023"):
        make_diagnosis_questions(catalog, distractors.iloc[:-1], pool, seed=0)

    short = distractors.copy()
    short.at[1, "distractors"] = short.at[1, "distractors"][:2]
    with pytest.raises(ValueError, match="image rsna-0001: options"):
        make_diagnosis_questions(catalog, short, pool, seed=0)

    with_truth = distractors.copy()
    with_truth.at[2, "distractors"] = [catalog.at[2, "disease"], *with_truth.at[2, "distractors"][1:]]
    with pytest.raises(ValueError, match="image rsna-0002: distractors"):
        make_diagnosis_questions(catalog, with_truth, pool, seed=0)

    bad_levels = catalog.copy()
    bad_levels.at[4, "levels"] = ["L4/L5", "L6/S1"]
    with pytest.raises(ValueError, match="image rsna-0004: levels"):
        make_localization_questions(bad_levels, pool, seed=0)


def test_seeded_helpers_are_pinned_and_well_formed():
    # Pinned values: a change to the hashing scheme would silently change every released question.
    assert item_int(20251014, "dx-rsna-1", "options") == 13048937019582080921
    assert item_permutation(20251014, 5, "dx-rsna-1", "options") == [4, 0, 2, 3, 1]
    assert item_choice(20251014, 7, "dx-rsna-1", "paraphrase") == 5
    assert item_digest(0, "a,b") != item_digest(0, "a", "b")
    assert item_digest(0, 1) != item_digest(0, "1")
    fractions = [item_fraction(3, "x", i) for i in range(200)]
    assert all(0.0 <= f < 1.0 for f in fractions) and 0.35 < np.mean(fractions) < 0.65
    assert sorted(item_permutation(3, 9, "y")) == list(range(9))
    assert item_rng(3, "z").integers(1000) == item_rng(3, "z").integers(1000)
    with pytest.raises(TypeError, match="int or str"):
        item_int(3, 1.5)
    with pytest.raises(ValueError, match="cannot choose among 0"):
        item_choice(3, 0, "x")
