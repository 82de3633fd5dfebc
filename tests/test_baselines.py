"""Baselines: seeded random, always-Healthy and nearest-neighbour (which must never use the query image)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from spinebench.backends import BackendContext, BackendError, Item, make_backend
from spinebench.backends.baselines import random_letters, vote_disease, vote_levels
from spinebench.vocab import LETTERS, LEVELS

FINAL = re.compile(r"\nMy final options?: \[([A-E](?:, [A-E])*)\]$")
DX_OPTIONS = {
    "A": "Osteophytes",
    "B": "Healthy",
    "C": "Spondylolisthesis",
    "D": "Vertebral collapse",
    "E": "Cervical kyphosis",
}
LOC_OPTIONS = {"A": "L3/L4", "B": "L1/L2", "C": "L5/S1", "D": "L2/L3", "E": "L4/L5"}


def answer_all(backend, batch: list[Item]) -> dict[str, tuple[str, ...]]:
    """question_id -> letters of the final phrase, checking every response ends with it."""
    results = []
    backend.run(batch, results.append)
    letters = {}
    for result in results:
        assert result.ok and result.attempts == 1, result
        match = FINAL.search(result.response)
        assert match, result.response
        letters[result.question_id] = tuple(match.group(1).split(", "))
    return letters


def dx_item(question_id: str, image_id: str = "img", options=DX_OPTIONS) -> Item:
    return Item(question_id, image_id, "diagnosis", "prompt", options, None)


def loc_item(question_id: str, image_id: str = "img") -> Item:
    return Item(question_id, image_id, "localization", "prompt", LOC_OPTIONS, None)


# --- random ----------------------------------------------------------------------------------------


def test_random_is_reproducible_valid_and_uniform():
    backend = make_backend("random", {"backend": "random"}, BackendContext("random", seed=7))
    batch = [dx_item(f"dx-{i}") for i in range(2000)] + [loc_item(f"loc-{i}") for i in range(2000)]
    first, second = answer_all(backend, batch), answer_all(backend, list(reversed(batch)))
    assert first == second  # order of evaluation does not matter
    diagnosis = Counter(first[f"dx-{i}"] for i in range(2000))
    assert set(diagnosis) == {(letter,) for letter in LETTERS}
    assert all(300 <= count <= 500 for count in diagnosis.values()), diagnosis  # 400 expected each
    subsets = Counter(first[f"loc-{i}"] for i in range(2000))
    assert len(subsets) == 31 and all(subset for subset in subsets)  # every non-empty set, never empty
    assert all(30 <= count <= 110 for count in subsets.values()), subsets  # about 64.5 each


def test_random_depends_on_seed_and_model_name():
    base = [random_letters("diagnosis", 7, "random", f"dx-{i}") for i in range(200)]
    assert base == [random_letters("diagnosis", 7, "random", f"dx-{i}") for i in range(200)]
    assert base != [random_letters("diagnosis", 8, "random", f"dx-{i}") for i in range(200)]
    assert base != [random_letters("diagnosis", 7, "random-2", f"dx-{i}") for i in range(200)]
    fingerprint = make_backend(
        "random", {"backend": "random"}, BackendContext("random", seed=7)
    ).fingerprint_data()
    assert (
        fingerprint
        != make_backend("random", {"backend": "random"}, BackendContext("random", 8)).fingerprint_data()
    )


def test_random_rejects_unknown_settings():
    with pytest.raises(BackendError, match="unknown setting.*k"):
        make_backend("random", {"backend": "random", "k": 3}, BackendContext("random"))


# --- always healthy --------------------------------------------------------------------------------


def test_always_healthy_answers_healthy_and_every_level():
    backend = make_backend("healthy", {"backend": "always_healthy"}, BackendContext("healthy"))
    shuffled = dict(
        zip(LETTERS, ["Osteophytes", "Spondylolisthesis", "Vertebral collapse", "Healthy", "X"], strict=True)
    )
    answers = answer_all(backend, [dx_item("dx-1"), dx_item("dx-2", options=shuffled), loc_item("loc-1")])
    assert answers == {"dx-1": ("B",), "dx-2": ("D",), "loc-1": LETTERS}


def test_always_healthy_without_a_healthy_option_names_the_question():
    backend = make_backend("healthy", {"backend": "always_healthy"}, BackendContext("healthy"))
    options = {**DX_OPTIONS, "B": "Foraminal stenosis"}
    with pytest.raises(BackendError, match="dx-9.*Healthy"):
        answer_all(backend, [dx_item("dx-9", options=options)])


# --- nearest neighbour -----------------------------------------------------------------------------


def nn_backend(library_rows, vectors, levels=None, k=3):
    """A nearest-neighbour backend over library rows (image_id, disease) and image_id -> 2D vectors."""
    library = pd.DataFrame(library_rows, columns=["image_id", "disease"])
    catalog_ids = sorted(vectors)
    disease_of = dict(library_rows)
    catalog = pd.DataFrame(
        {
            "image_id": catalog_ids,
            "disease": [disease_of.get(i, "Healthy") for i in catalog_ids],
            "levels": [list((levels or {}).get(i, [])) for i in catalog_ids],
        }
    )
    ids = list(vectors)
    matrix = np.array([vectors[i] for i in ids], dtype=np.float32)
    context = BackendContext("nn", catalog=catalog, library=library, embeddings=lambda: (ids, matrix))
    return make_backend("nn", {"backend": "nearest_neighbour", "k": k}, context)


def test_nearest_neighbour_never_uses_the_query_itself():
    # The query "q" is itself a library image (Osteophytes) and its own vector is the most similar one:
    # its 3 true neighbours a, b, c vote Spondylolisthesis 2-1; counting q would give Osteophytes 2-1.
    vectors = {"q": [1.0, 0.0], "a": [0.9, 0.1], "b": [0.8, 0.2], "c": [0.7, 0.3], "z": [-1.0, 0.0]}
    library = [
        ("q", "Osteophytes"),
        ("a", "Spondylolisthesis"),
        ("b", "Osteophytes"),
        ("c", "Spondylolisthesis"),
    ]
    backend = nn_backend(library, vectors, k=3)
    assert answer_all(backend, [dx_item("dx-q", "q")]) == {"dx-q": ("C",)}
    # k=1: with the query it would be Osteophytes; without it, its nearest other image "a".
    assert answer_all(nn_backend(library, vectors, k=1), [dx_item("dx-q", "q")]) == {"dx-q": ("C",)}


def test_nearest_neighbour_falls_back_to_the_most_similar_option_disease():
    # The vote (Foraminal stenosis) is not among the options: the most similar library image whose
    # disease is an option decides (Vertebral collapse, letter D), not the vote's runner-up.
    vectors = {"q": [1.0, 0.0], "a": [0.95, 0.05], "b": [0.9, 0.1], "c": [0.5, 0.5], "d": [0.4, 0.6]}
    library = [
        ("a", "Foraminal stenosis"),
        ("b", "Foraminal stenosis"),
        ("c", "Vertebral collapse"),
        ("d", "Osteophytes"),
    ]
    backend = nn_backend(library, vectors, k=4)
    assert answer_all(backend, [dx_item("dx-q", "q")]) == {"dx-q": ("D",)}


def test_nearest_neighbour_localization_votes_levels_of_neighbours_with_levels():
    vectors = {
        "q": [1.0, 0.0],
        "n0": [0.99, 0.01],  # nearest, but carries no levels: not a localization neighbour
        "l1": [0.9, 0.1],
        "l2": [0.8, 0.2],
        "l3": [0.7, 0.3],
        "far": [-1.0, 0.0],
    }
    levels = {
        "q": ["L1/L2", "L5/S1"],
        "l1": ["L4/L5", "L5/S1"],
        "l2": ["L4/L5"],
        "l3": ["L3/L4", "L4/L5"],
        "far": ["L1/L2"],
    }
    library = [(i, "Spinal canal stenosis") for i in ("q", "n0", "l1", "l2", "l3", "far")]
    backend = nn_backend(library, vectors, levels=levels, k=3)
    # l1, l2, l3: L4/L5 named by 3 of 3; L5/S1 and L3/L4 by 1 of 3 (< half). Counting the query itself
    # (q, l1, l2) would add L5/S1 (2 of 3).
    assert answer_all(backend, [loc_item("loc-q", "q")]) == {"loc-q": ("E",)}


def test_vote_levels_threshold_and_fallback():
    assert vote_levels([("L4/L5",), ("L4/L5", "L5/S1"), ("L5/S1",), ("L1/L2",)]) == ("L4/L5", "L5/S1")
    # No level reaches half: the single most common one, ties to the most similar neighbour's.
    assert vote_levels([("L2/L3",), ("L1/L2",), ("L3/L4",), ("L1/L2",), ("L5/S1",)]) == ("L1/L2",)
    assert vote_levels([("L2/L3",), ("L1/L2",), ("L3/L4",)]) == ("L2/L3",)
    assert set(vote_levels([tuple(LEVELS)])) == set(LEVELS)


def test_vote_disease_ties_go_to_the_nearest():
    assert vote_disease(["Osteophytes", "Healthy", "Healthy", "Osteophytes"]) == "Osteophytes"
    assert vote_disease(["Healthy", "Osteophytes", "Osteophytes"]) == "Osteophytes"


def test_nearest_neighbour_ties_break_by_image_id():
    vectors = {"q": [1.0, 0.0], "b": [0.5, 0.5], "a": [0.5, 0.5]}
    library = [("b", "Osteophytes"), ("a", "Spondylolisthesis")]
    assert answer_all(nn_backend(library, vectors, k=1), [dx_item("dx-q", "q")]) == {"dx-q": ("C",)}


def test_nearest_neighbour_errors_name_the_item():
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    backend = nn_backend([("a", "Osteophytes"), ("b", "Healthy")], vectors, k=1)
    with pytest.raises(BackendError, match="dx-x.*image x has no embedding"):
        answer_all(backend, [dx_item("dx-x", "x")])
    with pytest.raises(BackendError, match="library image c has no embedding"):
        nn_backend([("a", "Osteophytes"), ("c", "Healthy")], vectors)
    with pytest.raises(BackendError, match="embedding of image b is zero"):
        nn_backend([("a", "Osteophytes")], {"a": [1.0, 0.0], "b": [0.0, 0.0]})
    with pytest.raises(BackendError, match="no library image carries levels"):
        answer_all(backend, [loc_item("loc-a", "a")])
