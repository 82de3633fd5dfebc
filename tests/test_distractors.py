"""Library sampling and hard-negative distractor assignment (DESIGN 1.3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spinebench import vocab
from spinebench.distractors import (
    DISTRACTORS_SCHEMA,
    SIMILARITY_DECIMALS,
    assign_distractors,
    sample_library,
)
from spinebench.io import write_table


def random_catalog(seed: int, size: int, labels=vocab.LABELS) -> pd.DataFrame:
    """A catalog of `size` images with random labels; some labels end up rare or absent."""
    rng = np.random.default_rng(seed)
    weights = rng.random(len(labels)) ** 3  # skewed, so that some diseases have 0 or 1 images
    diseases = rng.choice(list(labels), size=size, p=weights / weights.sum())
    return pd.DataFrame({"image_id": [f"img-{seed}-{i:04d}" for i in range(size)], "disease": diseases})


def tied_embeddings(seed: int, size: int, dims: int = 6, prototypes: int = 5) -> np.ndarray:
    """Embeddings drawn from a few integer prototypes, so that many similarities tie exactly."""
    rng = np.random.default_rng(seed + 1000)
    bank = rng.integers(-2, 3, size=(prototypes, dims)).astype(np.float32)
    bank[np.abs(bank).sum(axis=1) == 0, 0] = 1.0
    return bank[rng.integers(0, prototypes, size=size)]


def brute_force(catalog, library, image_ids, embeddings, count):
    """The definition of DESIGN 1.3 as plain Python: loops over every query, disease and library image."""
    vector = {image_id: [float(x) for x in row] for image_id, row in zip(image_ids, embeddings, strict=True)}

    def cosine(a, b):
        dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(math.fsum(x * x for x in a)) / math.sqrt(math.fsum(y * y for y in b))

    expected = {}
    for image_id, disease in zip(catalog["image_id"], catalog["disease"], strict=True):
        candidates = []
        for rank, other in enumerate(vocab.DISEASES):
            if other == disease:
                continue
            members = library.loc[
                (library["disease"] == other) & (library["image_id"] != image_id), "image_id"
            ]
            if len(members):
                best = max(round(cosine(vector[image_id], vector[j]), SIMILARITY_DECIMALS) for j in members)
                candidates.append((-best, rank, other))
        needed = count + 1 if disease == vocab.HEALTHY else count
        chosen = sorted(candidates)[:needed]
        expected[image_id] = ([name for _, _, name in chosen], [-value for value, _, _ in chosen])
    return expected


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_assignment_matches_brute_force_with_ties(seed):
    catalog = random_catalog(seed, 90)
    # Every disease needs library images for the query count to be reachable: add one of each.
    extra = pd.DataFrame({"image_id": [f"img-{seed}-x{k:02d}" for k in range(11)], "disease": vocab.DISEASES})
    catalog = pd.concat([catalog, extra], ignore_index=True)
    embeddings = tied_embeddings(seed, len(catalog))
    library = sample_library(catalog, per_disease=3, seed=seed)
    result = assign_distractors(catalog, library, catalog["image_id"].tolist(), embeddings, count=3)
    expected = brute_force(catalog, library, catalog["image_id"].tolist(), embeddings, 3)

    assert result["image_id"].tolist() == sorted(catalog["image_id"])
    for row in result.itertuples():
        names, values = expected[row.image_id]
        assert list(row.distractors) == names, row.image_id
        assert list(row.similarities) == pytest.approx(values, abs=1e-12), row.image_id
    # The prototype construction must actually produce ties, or this test proves nothing about tie-breaking.
    assert any(len(set(values)) < len(values) for values in result["similarities"])


def test_healthy_gets_one_more_distractor_and_never_its_own_disease():
    catalog = random_catalog(7, 200)
    embeddings = np.random.default_rng(7).standard_normal((len(catalog), 8)).astype(np.float32)
    library = sample_library(catalog, per_disease=5, seed=7)
    result = assign_distractors(catalog, library, catalog["image_id"].tolist(), embeddings, count=3)
    for row in result.itertuples():
        assert len(row.distractors) == (4 if row.disease == vocab.HEALTHY else 3)
        assert row.disease not in row.distractors and vocab.HEALTHY not in row.distractors
        assert len(set(row.distractors)) == len(row.distractors)
        assert list(row.similarities) == sorted(row.similarities, reverse=True)


def test_diseases_without_library_images_are_never_chosen():
    # Only Osteophytes, Foraminal stenosis and Vertebral collapse have images; b duplicates a exactly.
    catalog = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "disease": [vocab.HEALTHY, "Osteophytes", "Foraminal stenosis", "Vertebral collapse"],
        }
    )
    embeddings = np.eye(4, dtype=np.float32)
    embeddings[1] = embeddings[0]
    library = sample_library(catalog, per_disease=10, seed=0)
    result = assign_distractors(catalog, library, catalog["image_id"].tolist(), embeddings, count=2)
    by_image = result.set_index("image_id")
    # a: Osteophytes at cosine 1; the two others tie at 0 and follow vocabulary order.
    assert list(by_image.at["a", "distractors"]) == [
        "Osteophytes",
        "Foraminal stenosis",
        "Vertebral collapse",
    ]
    assert list(by_image.at["a", "similarities"]) == [1.0, 0.0, 0.0]
    assert list(by_image.at["b", "distractors"]) == ["Foraminal stenosis", "Vertebral collapse"]


def test_too_few_available_diseases_names_the_image():
    catalog = pd.DataFrame({"image_id": ["h1", "d1", "d2"], "disease": [vocab.HEALTHY, *vocab.DISEASES[:2]]})
    embeddings = np.eye(3, dtype=np.float32)
    library = sample_library(catalog, per_disease=10, seed=0)
    with pytest.raises(ValueError, match=r"h1 \(needs 3\)"):
        assign_distractors(catalog, library, catalog["image_id"].tolist(), embeddings, count=2)


def test_missing_embedding_names_the_image():
    catalog = random_catalog(3, 30)
    ids = catalog["image_id"].tolist()
    embeddings = np.ones((len(ids) - 1, 4), dtype=np.float32)
    library = sample_library(catalog, per_disease=5, seed=3)
    with pytest.raises(ValueError, match=ids[-1]):
        assign_distractors(catalog, library, ids[:-1], embeddings, count=3)


def test_zero_embedding_is_rejected():
    catalog = pd.DataFrame({"image_id": ["a", "b"], "disease": vocab.DISEASES[:2]})
    embeddings = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    library = sample_library(catalog, per_disease=5, seed=0)
    with pytest.raises(ValueError, match="zero or non-finite embedding.*b"):
        assign_distractors(catalog, library, ["a", "b"], embeddings, count=1)


def test_unnormalised_embeddings_give_the_same_choice():
    catalog = random_catalog(5, 120)
    embeddings = np.random.default_rng(5).standard_normal((len(catalog), 8)).astype(np.float32)
    scaled = embeddings * np.random.default_rng(6).uniform(0.5, 3.0, size=(len(catalog), 1)).astype(
        np.float32
    )
    library = sample_library(catalog, per_disease=4, seed=5)
    ids = catalog["image_id"].tolist()
    plain = assign_distractors(
        catalog, library, ids, embeddings / np.linalg.norm(embeddings, axis=1)[:, None], 3
    )
    rescaled = assign_distractors(catalog, library, ids, scaled, 3)
    assert plain["distractors"].map(list).tolist() == rescaled["distractors"].map(list).tolist()


def test_library_is_capped_seeded_and_never_healthy():
    catalog = random_catalog(11, 400)
    library = sample_library(catalog, per_disease=6, seed=11)
    assert vocab.HEALTHY not in set(library["disease"])
    counts = catalog["disease"].value_counts()
    for disease, size in library.groupby("disease").size().items():
        assert size == min(6, counts[disease])
    member_disease = catalog.set_index("image_id")["disease"]
    assert (library["disease"] == member_disease.loc[library["image_id"]].to_numpy()).all()
    other_seed = sample_library(catalog, per_disease=6, seed=12)
    assert set(other_seed["image_id"]) != set(library["image_id"])


def test_library_is_stable_under_adding_and_removing_other_images():
    catalog = random_catalog(21, 300)
    library = set(sample_library(catalog, per_disease=5, seed=21)["image_id"])

    outsiders = catalog[~catalog["image_id"].isin(library)]
    shrunk = catalog.drop(outsiders.sample(frac=0.5, random_state=0).index)
    assert set(sample_library(shrunk, per_disease=5, seed=21)["image_id"]) == library

    added = random_catalog(22, 150)
    grown = set(sample_library(pd.concat([catalog, added]), per_disease=5, seed=21)["image_id"])
    # Old members can only be displaced by new images, never by each other.
    assert grown <= library | set(added["image_id"])
    assert library - grown, "the grown catalog should displace at least one old member for this to test much"


def test_assignment_is_deterministic_bytes(tmp_path):
    catalog = random_catalog(31, 150)
    embeddings = np.random.default_rng(31).standard_normal((len(catalog), 16)).astype(np.float32)
    library = sample_library(catalog, per_disease=4, seed=31)
    for name in ("first", "second"):
        shuffled = catalog.sample(frac=1.0, random_state=len(name))  # row order must not matter
        result = assign_distractors(shuffled, library, catalog["image_id"].tolist(), embeddings, 3)
        write_table(result, tmp_path / f"{name}.parquet", schema=DISTRACTORS_SCHEMA)
    assert (tmp_path / "first.parquet").read_bytes() == (tmp_path / "second.parquet").read_bytes()


def test_unknown_disease_is_rejected():
    catalog = pd.DataFrame({"image_id": ["a"], "disease": ["Spondylolysthesis"]})
    with pytest.raises(ValueError, match="a .*Spondylolysthesis"):
        sample_library(catalog, per_disease=2, seed=0)


def test_library_must_match_the_catalog():
    catalog = random_catalog(41, 60)
    embeddings = np.random.default_rng(41).standard_normal((len(catalog), 4)).astype(np.float32)
    library = sample_library(catalog, per_disease=3, seed=41)
    relabelled = library.copy()
    relabelled.loc[0, "disease"] = next(d for d in vocab.DISEASES if d != library.loc[0, "disease"])
    moved = library.loc[0, "image_id"]
    with pytest.raises(ValueError, match=f"not a catalog image of that disease: {moved}"):
        assign_distractors(catalog, relabelled, catalog["image_id"].tolist(), embeddings, 3)
