"""SpineBench-Sub selection (DESIGN 1.5): quality filter, class balance, variety scoring, determinism."""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from spinebench import vocab
from spinebench.io import write_table
from spinebench.questions import OPTION_COLUMNS
from spinebench.seeding import item_int
from spinebench.subset import SUBSET_SCHEMA, class_targets, select_subset

SETTINGS = {
    "diagnosis_size": 40,
    "localization_size": 20,
    "min_variance": 0.002,
    "min_laplacian_variance": 0.0001,
    "min_contrast": 0.05,
}


def synthetic_benchmark(class_sizes: dict[str, int], seed: int = 0, bad_fraction: float = 0.2):
    """Catalog, diagnosis and localization tables; about `bad_fraction` of images fail one quality metric."""
    rng = np.random.default_rng(seed)
    diseases = [disease for disease, size in class_sizes.items() for _ in range(size)]
    image_ids = [f"img-{i:05d}" for i in range(len(diseases))]
    metrics = {"variance": 0.01, "laplacian_variance": 0.001, "contrast": 0.3}
    catalog = pd.DataFrame({"image_id": image_ids, "disease": diseases, **metrics})
    for i in np.flatnonzero(rng.random(len(catalog)) < bad_fraction):
        catalog.loc[i, rng.choice(list(metrics))] = 0.0
    diagnosis, localization = [], []
    for image_id, disease in zip(image_ids, diseases, strict=True):
        wrong = rng.choice([d for d in vocab.DISEASES if d != disease], size=4, replace=False).tolist()
        options = [disease, *wrong[:3], vocab.HEALTHY] if disease != vocab.HEALTHY else [disease, *wrong]
        order = rng.permutation(5)
        options = [options[k] for k in order]
        diagnosis.append(
            {"question_id": f"dx-{image_id}", "image_id": image_id, "disease": disease}
            | dict(zip(OPTION_COLUMNS, options, strict=True))
            | {"answer": vocab.LETTERS[options.index(disease)]}
        )
        if rng.random() < 0.7:
            levels = rng.choice(vocab.LEVELS, size=rng.integers(1, 3), replace=False)
            level_options = rng.permutation(vocab.LEVELS).tolist()
            answer = ",".join(sorted(vocab.LETTERS[level_options.index(level)] for level in levels))
            localization.append(
                {"question_id": f"loc-{image_id}", "image_id": image_id, "disease": disease}
                | dict(zip(OPTION_COLUMNS, level_options, strict=True))
                | {"answer": answer}
            )
    return catalog, pd.DataFrame(diagnosis), pd.DataFrame(localization)


def passes(catalog: pd.DataFrame) -> set[str]:
    ok = (
        (catalog["variance"] >= SETTINGS["min_variance"])
        & (catalog["laplacian_variance"] >= SETTINGS["min_laplacian_variance"])
        & (catalog["contrast"] >= SETTINGS["min_contrast"])
    )
    return set(catalog.loc[ok, "image_id"])


def reference_selection(candidates: list[dict], size: int, seed: int, score) -> list[str]:
    """DESIGN 1.5 as plain Python: recompute every score each step, exact fractions, no vectorisation."""
    by_class = {}
    for candidate in candidates:
        by_class.setdefault(candidate["disease"], []).append(candidate)
    available = [len(by_class.get(label, [])) for label in vocab.LABELS]
    targets = dict(zip(vocab.LABELS, class_targets(available, size), strict=True))
    filled = dict.fromkeys(vocab.LABELS, 0)
    history, picked = [], []
    while len(picked) < sum(targets.values()):
        open_labels = [label for label in vocab.LABELS if filled[label] < targets[label]]
        label = min(open_labels, key=lambda k: (Fraction(filled[k], targets[k]), vocab.LABELS.index(k)))
        pool = [c for c in by_class[label] if c["question_id"] not in picked]
        best = min(pool, key=lambda c: (-score(c, history), item_int(seed, c["question_id"], "subset")))
        picked.append(best["question_id"])
        history.append(best)
        filled[label] += 1
    return picked


def diagnosis_score(candidate, history):
    shown = [d for past in history for d in past["wrong"]]
    return sum(Fraction(1, 1 + shown.count(d)) for d in candidate["wrong"])


def localization_score(candidate, history):
    sets = [frozenset(past["levels"]) for past in history]
    levels = [level for past in history for level in past["levels"]]
    level_term = sum(Fraction(1, 1 + levels.count(level)) for level in candidate["levels"])
    return Fraction(1, 1 + sets.count(frozenset(candidate["levels"]))) + level_term / len(candidate["levels"])


UNEQUAL = {
    "Disc space narrowing": 30,
    "Foraminal stenosis": 25,
    "Osteophytes": 3,
    "Spondylolisthesis": 12,
    "Cervical kyphosis": 1,
    vocab.HEALTHY: 20,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_matches_plain_reference(seed):
    catalog, diagnosis, localization = synthetic_benchmark(UNEQUAL, seed=seed)
    subset = select_subset(catalog, diagnosis, localization, SETTINGS, seed=seed)
    eligible = passes(catalog)

    dx = diagnosis[diagnosis["image_id"].isin(eligible)]
    dx_candidates = [
        {
            "question_id": row["question_id"],
            "disease": row["disease"],
            "wrong": [
                row[name] for name in OPTION_COLUMNS if row[name] not in (row["disease"], vocab.HEALTHY)
            ],
        }
        for row in dx.to_dict("records")
    ]
    expected_dx = reference_selection(dx_candidates, SETTINGS["diagnosis_size"], seed, diagnosis_score)
    assert subset.loc[subset["task"] == "diagnosis", "question_id"].tolist() == expected_dx

    loc = localization[localization["image_id"].isin(eligible)]
    loc_candidates = [
        {
            "question_id": r.question_id,
            "disease": r.disease,
            "levels": [getattr(r, OPTION_COLUMNS[vocab.LETTERS.index(x)]) for x in r.answer.split(",")],
        }
        for r in loc.itertuples()
    ]
    expected_loc = reference_selection(
        loc_candidates, SETTINGS["localization_size"], seed, localization_score
    )
    assert subset.loc[subset["task"] == "localization", "question_id"].tolist() == expected_loc


def test_classes_are_balanced_where_availability_allows():
    catalog, diagnosis, localization = synthetic_benchmark(UNEQUAL, seed=4, bad_fraction=0.0)
    subset = select_subset(catalog, diagnosis, localization, SETTINGS, seed=4)
    chosen = diagnosis.set_index("question_id").loc[subset.loc[subset["task"] == "diagnosis", "question_id"]]
    counts = chosen["disease"].value_counts().to_dict()
    assert len(chosen) == SETTINGS["diagnosis_size"]
    # Small classes give everything they have; the others share the rest within one question of each other.
    assert counts["Osteophytes"] == 3 and counts["Cervical kyphosis"] == 1
    large = [
        counts[d] for d in ("Disc space narrowing", "Foraminal stenosis", "Spondylolisthesis", vocab.HEALTHY)
    ]
    assert max(large) - min(large) <= 1 and sum(large) == 36


def test_class_targets_water_fill():
    assert class_targets([5, 1, 10, 0], 10) == [5, 1, 4, 0]
    assert class_targets([4, 4, 4], 10) == [4, 3, 3]
    assert class_targets([2, 9, 9], 11) == [2, 5, 4]
    assert class_targets([2, 3], 50) == [2, 3]
    assert class_targets([0, 0], 5) == [0, 0]


def test_quality_thresholds_are_respected():
    catalog, diagnosis, localization = synthetic_benchmark(UNEQUAL, seed=5, bad_fraction=0.5)
    subset = select_subset(catalog, diagnosis, localization, SETTINGS, seed=5)
    eligible = passes(catalog)
    questions = pd.concat([diagnosis, localization]).set_index("question_id")
    assert set(questions.loc[subset["question_id"], "image_id"]) <= eligible
    assert len(eligible) < len(catalog)


def test_variety_prefers_unseen_distractors_and_level_sets():
    catalog = pd.DataFrame(
        {
            "image_id": list("abc"),
            "disease": "Osteophytes",
            "variance": 1.0,
            "laplacian_variance": 1.0,
            "contrast": 1.0,
        }
    )
    diagnosis = pd.DataFrame(
        [
            {"question_id": f"dx-{i}", "image_id": i, "disease": "Osteophytes", "answer": "A"}
            | dict(zip(OPTION_COLUMNS, ["Osteophytes", *wrong, vocab.HEALTHY], strict=True))
            for i, wrong in zip(
                "abc", [vocab.DISEASES[:3], vocab.DISEASES[:3], vocab.DISEASES[4:7]], strict=True
            )
        ]
    )
    localization = pd.DataFrame(
        [
            {"question_id": f"loc-{i}", "image_id": i, "disease": "Osteophytes", "answer": answer}
            | dict(zip(OPTION_COLUMNS, vocab.LEVELS, strict=True))
            for i, answer in zip("abc", ["D", "D", "A,B"], strict=True)
        ]
    )
    settings = SETTINGS | {"diagnosis_size": 2, "localization_size": 2}
    for seed in range(6):
        subset = select_subset(catalog, diagnosis, localization, settings, seed=seed)
        dx = set(subset.loc[subset["task"] == "diagnosis", "question_id"])
        loc = set(subset.loc[subset["task"] == "localization", "question_id"])
        assert "dx-c" in dx and len(dx) == 2, seed  # never both a and b: their distractors are identical
        assert "loc-c" in loc and len(loc) == 2, seed


def test_selection_is_byte_deterministic(tmp_path):
    catalog, diagnosis, localization = synthetic_benchmark(UNEQUAL, seed=6)
    first = select_subset(catalog, diagnosis, localization, SETTINGS, seed=6)
    shuffled = select_subset(
        catalog.sample(frac=1.0, random_state=1),
        diagnosis.sample(frac=1.0, random_state=2),
        localization.sample(frac=1.0, random_state=3),
        SETTINGS,
        seed=6,
    )
    write_table(first, tmp_path / "a.parquet", schema=SUBSET_SCHEMA)
    write_table(shuffled, tmp_path / "b.parquet", schema=SUBSET_SCHEMA)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    for task in vocab.TASKS:
        assert first.loc[first["task"] == task, "rank"].tolist() == list(range((first["task"] == task).sum()))
    other = select_subset(catalog, diagnosis, localization, SETTINGS, seed=7)
    assert other["question_id"].tolist() != first["question_id"].tolist()


def test_oversized_request_selects_all_eligible_and_warns(caplog):
    catalog, diagnosis, localization = synthetic_benchmark(UNEQUAL, seed=8)
    settings = SETTINGS | {"diagnosis_size": 10_000, "localization_size": 10_000}
    with caplog.at_level(logging.WARNING, logger="spinebench.subset"):
        subset = select_subset(catalog, diagnosis, localization, settings, seed=8)
    eligible = passes(catalog)
    assert set(subset.loc[subset["task"] == "diagnosis", "question_id"]) == set(
        diagnosis.loc[diagnosis["image_id"].isin(eligible), "question_id"]
    )
    assert set(subset.loc[subset["task"] == "localization", "question_id"]) == set(
        localization.loc[localization["image_id"].isin(eligible), "question_id"]
    )
    assert len(subset.attrs["warnings"]) == 2
    assert "diagnosis: 10000 questions requested" in caplog.text
    # Shown on the console too (spinebench.io.CONSOLE), not only in logs/subset.log.
    assert all(getattr(record, "console", False) for record in caplog.records)


def test_question_with_unknown_image_is_named():
    catalog, diagnosis, localization = synthetic_benchmark(UNEQUAL, seed=9)
    with pytest.raises(ValueError, match="dx-img-00000"):
        select_subset(catalog.iloc[1:], diagnosis, localization, SETTINGS, seed=9)


def test_zero_size_selects_nothing_for_that_task():
    catalog, diagnosis, localization = synthetic_benchmark(UNEQUAL, seed=10)
    subset = select_subset(catalog, diagnosis, localization, SETTINGS | {"localization_size": 0}, seed=10)
    assert subset["task"].tolist() == ["diagnosis"] * SETTINGS["diagnosis_size"]
