"""Hard-negative distractors (DESIGN 1.3).

A library of at most `per_disease` images per disease is sampled with the seed. For a query image q of
disease C_q, the similarity to another disease C_k is the best cosine similarity between q's embedding and
any library image of C_k; the `count` most similar diseases C_k != C_q are q's distractors (a Healthy image,
whose truth is not a disease, gets count + 1 of them). The paper excludes q itself from the library; as an
image has exactly one label, q can only be in its own disease's library, which is never a candidate, so
that exclusion needs no code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from spinebench import vocab
from spinebench.catalog import format_ids
from spinebench.seeding import item_int

LIBRARY_SCHEMA = pa.schema([("disease", pa.string()), ("image_id", pa.string())])

DISTRACTORS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("disease", pa.string()),
        ("distractors", pa.list_(pa.string())),
        ("similarities", pa.list_(pa.float64())),
    ]
)

# Similarities are rounded before ranking so that mathematically equal values (e.g. two identical library
# images) compare equal whatever order the BLAS kernel summed them in; ties then fall to vocabulary order.
SIMILARITY_DECIMALS = 12

# Queries per matrix-product block: bounds the (block x library) similarity matrix to a few tens of MB.
QUERY_BLOCK_ROWS = 2048

# Marks a disease that cannot be chosen (no library image, or the query's own disease).
UNAVAILABLE = -np.inf


def check_labels(catalog: pd.DataFrame) -> None:
    """Raise if any catalog disease is outside the benchmark's label vocabulary."""
    unknown = catalog.loc[~catalog["disease"].isin(vocab.LABELS), ["image_id", "disease"]]
    if len(unknown):
        listing = [f"{row.image_id} ({row.disease!r})" for row in unknown.itertuples()]
        raise ValueError(f"catalog image(s) with a disease outside vocab.LABELS: {format_ids(listing)}")


def check_library(catalog: pd.DataFrame, library: pd.DataFrame) -> None:
    """Raise unless every library row is a catalog image listed under the catalog's disease for it."""
    disease_of = dict(zip(catalog["image_id"], catalog["disease"], strict=True))
    wrong = [
        f"{image_id} ({disease!r})"
        for image_id, disease in zip(library["image_id"], library["disease"], strict=True)
        if disease_of.get(image_id) != disease
    ]
    if wrong:
        raise ValueError(f"library row(s) that are not a catalog image of that disease: {format_ids(wrong)}")
    if library["image_id"].duplicated().any():
        repeated = sorted(set(library.loc[library["image_id"].duplicated(), "image_id"]))
        raise ValueError(f"library repeats image(s): {format_ids(repeated)}")


def check_library_diseases(catalog: pd.DataFrame, library: pd.DataFrame, count: int) -> None:
    """Raise naming the images that cannot get their distractors from the library's diseases.

    A disease image needs `count` other diseases with library images, a Healthy image `count + 1`. This
    happens when sources kept no images (their diseases are then missing from the library), so the message
    also lists the diseases the library has.
    """
    in_library = set(library["disease"])
    available = [disease for disease in vocab.DISEASES if disease in in_library]
    needs = {label: count + 1 if label == vocab.HEALTHY else count for label in vocab.LABELS}
    # Per label, not per image: whether an image can be served depends on its label alone.
    lacking = {label for label in set(catalog["disease"]) if len(set(available) - {label}) < needs[label]}
    short = [
        f"{image_id} (needs {needs[label]})"
        for image_id, label in zip(catalog["image_id"], catalog["disease"], strict=True)
        if label in lacking
    ]
    if short:
        raise ValueError(
            f"too few diseases with library images to pick distractors for image(s): {format_ids(short)}. "
            f"The library has images of {len(available)} disease(s): {', '.join(available) or 'none'}; "
            "a source that kept no images leaves its diseases out (see the standardize and render logs)"
        )


def library_rank_key(seed: int, image_id: str) -> int:
    """Seeded sort key of an image in its disease's library draw; depends on nothing but (seed, image_id)."""
    return item_int(seed, image_id, "library")


def sample_library(catalog: pd.DataFrame, per_disease: int, seed: int) -> pd.DataFrame:
    """At most `per_disease` images of every disease (never Healthy), ranked by a seeded per-image hash.

    Ranking by a hash of (seed, image_id) makes the draw stable: adding or removing other images never
    swaps out an image that is still among the lowest `per_disease` keys.
    Returns `disease, image_id`, in vocabulary order then image_id order.
    """
    if per_disease < 1:
        raise ValueError(f"library_per_disease must be at least 1, got {per_disease}")
    check_labels(catalog)
    chosen = []
    for disease in vocab.DISEASES:
        image_ids = catalog.loc[catalog["disease"] == disease, "image_id"].tolist()
        ranked = sorted(image_ids, key=lambda image_id: (library_rank_key(seed, image_id), image_id))
        chosen.extend((disease, image_id) for image_id in sorted(ranked[:per_disease]))
    return pd.DataFrame(chosen, columns=["disease", "image_id"])


def normalized_rows(matrix: np.ndarray, image_ids: Sequence[str]) -> np.ndarray:
    """`matrix` as float64 with every row scaled to unit length (embeddings should be already; be safe)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if len(bad):
        raise ValueError(
            f"zero or non-finite embedding(s) for image(s): {format_ids([image_ids[i] for i in bad])}"
        )
    return matrix / norms[:, None]


def embedding_positions(wanted: Sequence[str], image_ids: Sequence[str], what: str) -> np.ndarray:
    """Row of each wanted image in the embedding matrix; raises naming the images that have none."""
    index = pd.Index(list(image_ids))
    if index.has_duplicates:
        duplicates = sorted(set(index[index.duplicated()]))
        raise ValueError(f"duplicate image_id(s) among the embeddings: {format_ids(duplicates)}")
    positions = index.get_indexer(list(wanted))
    missing = [image_id for image_id, pos in zip(wanted, positions, strict=True) if pos < 0]
    if missing:
        raise ValueError(f"{what} without an embedding: {format_ids(missing)}")
    return positions


def disease_similarities(queries: np.ndarray, library: np.ndarray, segment_starts: np.ndarray) -> np.ndarray:
    """Sim(q, C_k) for a block of queries: the max cosine over each disease's library segment.

    `library` rows are grouped by disease, segment k starting at `segment_starts[k]` (all segments non-empty).
    """
    return np.maximum.reduceat(queries @ library.T, segment_starts, axis=1)


def rank_distractors(
    similarities: np.ndarray, query_labels: np.ndarray, needed: np.ndarray, image_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Column indices (into vocab.DISEASES) and similarities of each query's chosen distractors.

    `similarities` is (queries x diseases) with UNAVAILABLE for unusable diseases; `query_labels` holds each
    query's index into vocab.LABELS (the own-disease column is masked out here). A stable sort on the
    negated similarity breaks ties in vocabulary order. Returns (order, values) of width max(needed).
    """
    similarities = np.round(similarities, SIMILARITY_DECIMALS)
    rows = np.arange(len(similarities))
    is_disease = query_labels < len(vocab.DISEASES)
    similarities[rows[is_disease], query_labels[is_disease]] = UNAVAILABLE
    width = int(needed.max(initial=0))
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :width]
    values = np.take_along_axis(similarities, order, axis=1)
    # Only the first `needed[i]` picks of row i must be available; the rest of the width is unused.
    unused = np.arange(width)[None, :] >= needed[:, None]
    short = np.flatnonzero(~(np.isfinite(values) | unused).all(axis=1))
    if len(short):
        details = [f"{image_ids[i]} (needs {needed[i]})" for i in short]
        raise ValueError(
            "too few diseases with library images to pick distractors for image(s): " + format_ids(details)
        )
    return order, values


def assign_distractors(
    catalog: pd.DataFrame,
    library: pd.DataFrame,
    image_ids: Sequence[str],
    embeddings: np.ndarray,
    count: int,
) -> pd.DataFrame:
    """The `count` hardest wrong diseases of every catalog image (count + 1 for a Healthy image).

    `image_ids` names the rows of `embeddings`; every catalog image needs one. Returns
    `image_id, disease, distractors, similarities` in image_id order, distractors most similar first.
    """
    if count < 1:
        raise ValueError(f"distractor count must be at least 1, got {count}")
    check_labels(catalog)
    catalog = catalog.sort_values("image_id", kind="stable").reset_index(drop=True)
    query_ids = catalog["image_id"].tolist()
    query_rows = embedding_positions(query_ids, image_ids, "catalog image(s)")

    check_library(catalog, library)
    check_library_diseases(catalog, library, count)
    # Library rows grouped by disease (vocabulary order) so that each disease is one contiguous segment.
    disease_order = {disease: k for k, disease in enumerate(vocab.DISEASES)}
    library = library.assign(_order=library["disease"].map(disease_order))
    library = library.sort_values(["_order", "image_id"], kind="stable").reset_index(drop=True)
    library_ids = library["image_id"].tolist()
    library_rows = embedding_positions(library_ids, image_ids, "library image(s)")
    present = np.unique(library["_order"].to_numpy()) if len(library) else np.array([], dtype=np.int64)
    segment_starts = np.searchsorted(library["_order"].to_numpy(), present)

    all_rows = np.concatenate([query_rows, library_rows])
    vectors = normalized_rows(np.asarray(embeddings)[all_rows], [*query_ids, *library_ids])
    query_vectors, library_vectors = vectors[: len(query_ids)], vectors[len(query_ids) :]
    label_index = {label: k for k, label in enumerate(vocab.LABELS)}
    # An explicit dtype: an empty catalog maps to an empty float array, which cannot index.
    query_labels = catalog["disease"].map(label_index).to_numpy(dtype=np.int64)
    needed = np.where(query_labels == label_index[vocab.HEALTHY], count + 1, count)

    similarities = np.full((len(query_ids), len(vocab.DISEASES)), UNAVAILABLE)
    if len(library_ids):
        for start in range(0, len(query_ids), QUERY_BLOCK_ROWS):
            stop = min(start + QUERY_BLOCK_ROWS, len(query_ids))
            block = disease_similarities(query_vectors[start:stop], library_vectors, segment_starts)
            similarities[start:stop, present] = block
    order, values = rank_distractors(similarities, query_labels, needed, query_ids)
    return distractors_frame(query_ids, catalog["disease"].tolist(), order, values, needed)


def distractors_frame(
    image_ids: Sequence[str],
    diseases: Sequence[str],
    order: np.ndarray,
    values: np.ndarray,
    needed: np.ndarray,
) -> pd.DataFrame:
    """The distractors table from rank_distractors' picks: each image's first `needed[i]` diseases.

    The list columns are object dtype even with no rows (pandas would make an empty one float64).
    """
    picks = range(len(image_ids))
    return pd.DataFrame(
        {
            "image_id": list(image_ids),
            "disease": list(diseases),
            "distractors": pd.Series(
                [[vocab.DISEASES[k] for k in order[i, : needed[i]]] for i in picks], dtype=object
            ),
            "similarities": pd.Series(
                [[float(v) for v in values[i, : needed[i]]] for i in picks], dtype=object
            ),
        }
    )
