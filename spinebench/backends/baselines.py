"""Baselines that need no external model: seeded random, always-Healthy and nearest-neighbour.

Each writes a short response ending with the paper's final phrase, so that its answers go through the same
extraction path as a real model's. Bad inputs (an option list without "Healthy", a query image without an
embedding) are errors naming the item, not silently wrong answers.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spinebench.backends.base import (
    Backend,
    BackendContext,
    BackendError,
    Item,
    ItemResult,
    ResultSink,
    check_settings,
    final_phrase,
    number_setting,
)
from spinebench.seeding import item_int
from spinebench.vocab import HEALTHY, LETTERS, LEVELS


def _letter_of(item: Item, text: str) -> str:
    """The letter whose option is `text`; an error naming the item when no option is."""
    for letter, option in item.options.items():
        if option == text:
            return letter
    raise BackendError(f"question {item.question_id}: no option is {text!r} (options: {dict(item.options)})")


class _InstantBackend(Backend):
    """A backend answering each item locally and instantly: `answer(item)` gives the response text."""

    needs_images = False

    def answer(self, item: Item) -> str:
        raise NotImplementedError

    def run(self, items: Iterable[Item], on_result: ResultSink) -> None:
        for item in items:
            started = time.perf_counter()
            response = self.answer(item)
            on_result(ItemResult(item.question_id, response, None, time.perf_counter() - started, 1))


def random_letters(task: str, seed: int, model_name: str, question_id: str) -> tuple[str, ...]:
    """Uniform random answer: one letter (diagnosis) or one of the 31 non-empty letter sets (localization).

    Drawn from blake2b(seed, model, question id) (spinebench.seeding), so an answer does not depend on which
    other questions are evaluated or in what order.
    """
    draw = item_int(seed, "random-baseline", model_name, question_id)
    if task == "diagnosis":
        return (LETTERS[draw % len(LETTERS)],)
    # 1..31 read as a bit mask over A..E; the modulo bias of a 64-bit draw is negligible.
    mask = 1 + draw % (2 ** len(LETTERS) - 1)
    return tuple(letter for bit, letter in enumerate(LETTERS) if mask >> bit & 1)


class RandomBackend(_InstantBackend):
    """Seeded uniform choice, keyed on (seed, model name, question id)."""

    backend_name = "random"

    def __init__(self, model_name: str, settings: Mapping, context: BackendContext) -> None:
        super().__init__(model_name)
        check_settings(model_name, settings, allowed=())
        self.seed = context.seed

    def fingerprint_data(self) -> dict:
        return {"seed": self.seed, "model_name": self.model_name}

    def answer(self, item: Item) -> str:
        letters = random_letters(item.task, self.seed, self.model_name, item.question_id)
        return f"Random baseline: options chosen uniformly at random.\n{final_phrase(item.task, letters)}"


class AlwaysHealthyBackend(_InstantBackend):
    """Answers "Healthy" (diagnosis) and every level (localization)."""

    backend_name = "always_healthy"

    def __init__(self, model_name: str, settings: Mapping, context: BackendContext) -> None:
        super().__init__(model_name)
        check_settings(model_name, settings, allowed=())

    def fingerprint_data(self) -> dict:
        return {}

    def answer(self, item: Item) -> str:
        if item.task == "diagnosis":
            letters = (_letter_of(item, HEALTHY),)
            return (
                f"Always-Healthy baseline: the image is read as normal.\n{final_phrase(item.task, letters)}"
            )
        return f"Always-all-levels baseline: every level is chosen.\n{final_phrase(item.task, LETTERS)}"


@dataclass(frozen=True)
class NeighbourIndex:
    """Library images with their labels and unit embeddings, plus every embedded image for the queries.

    `library_ids` is sorted, so ties in similarity break by image_id and answers are deterministic.
    """

    library_ids: np.ndarray  # (n,) str
    library_diseases: np.ndarray  # (n,) str
    library_levels: tuple[tuple[str, ...], ...]  # (n,) level tuples, may be empty
    library_vectors: np.ndarray  # (n, d) float32, unit rows
    query_rows: Mapping[str, int]  # image_id -> row of query_vectors
    query_vectors: np.ndarray  # (m, d) float32, unit rows

    def ranking(self, image_id: str, candidates: np.ndarray | None = None) -> np.ndarray:
        """Library positions ordered by cosine similarity to `image_id` (most similar first), the image itself
        left out. `candidates` restricts the ranking to those positions."""
        row = self.query_rows.get(image_id)
        if row is None:
            raise BackendError(f"image {image_id} has no embedding")
        positions = np.arange(len(self.library_ids)) if candidates is None else candidates
        positions = positions[self.library_ids[positions] != image_id]  # never the query itself
        similarities = self.library_vectors[positions] @ self.query_vectors[row]
        # lexsort: last key first; positions follow sorted image_id order, so ties keep id order.
        return positions[np.lexsort((positions, -similarities))]


def _unit_rows(matrix: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Rows scaled to unit length; a zero or non-finite row is an error naming its image."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        raise BackendError(f"embedding of image {ids[int(np.argmax(bad))]} is zero or not finite")
    return matrix / norms[:, None]


def _as_levels(value) -> tuple[str, ...]:
    if value is None:
        return ()
    levels = tuple(str(level) for level in value)
    unknown = [level for level in levels if level not in LEVELS]
    if unknown:
        raise BackendError(f"unknown level(s) {unknown}")
    return levels


def build_neighbour_index(
    catalog, library, image_ids: Sequence[str], embeddings: np.ndarray
) -> NeighbourIndex:
    """Join the library (disease, image_id) to the catalog's levels and to the embedding matrix."""
    if library is None or catalog is None:
        raise BackendError("the nearest-neighbour baseline needs the catalog and the library")
    if len(library) == 0:
        raise BackendError("the library is empty: the nearest-neighbour baseline has no neighbours")
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(image_ids):
        raise BackendError(
            f"embedding matrix of shape {embeddings.shape} does not match {len(image_ids)} image ids"
        )
    rows = {image_id: row for row, image_id in enumerate(image_ids)}
    levels_by_image = dict(zip(catalog["image_id"], catalog["levels"], strict=True))
    ordered = library.sort_values("image_id", kind="mergesort")
    library_ids = ordered["image_id"].astype(str).to_numpy()
    missing = [image_id for image_id in library_ids if image_id not in rows]
    if missing:
        raise BackendError(
            f"library image {missing[0]} has no embedding ({len(missing)} library images lack one)"
        )
    not_in_catalog = [image_id for image_id in library_ids if image_id not in levels_by_image]
    if not_in_catalog:
        raise BackendError(f"library image {not_in_catalog[0]} is not in the catalog")
    levels = []
    for image_id in library_ids:
        try:
            levels.append(_as_levels(levels_by_image[image_id]))
        except BackendError as error:
            raise BackendError(f"library image {image_id}: {error}") from error
    all_vectors = _unit_rows(embeddings, image_ids)
    return NeighbourIndex(
        library_ids=library_ids,
        library_diseases=ordered["disease"].astype(str).to_numpy(),
        library_levels=tuple(levels),
        library_vectors=all_vectors[[rows[image_id] for image_id in library_ids]],
        query_rows=rows,
        query_vectors=all_vectors,
    )


def vote_disease(diseases: Sequence[str]) -> str:
    """Majority disease among neighbours (most similar first); a tie goes to the disease seen first."""
    counts = Counter(diseases)
    return max(counts, key=lambda disease: (counts[disease], -diseases.index(disease)))


def vote_levels(neighbour_levels: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """Levels named by at least half of the neighbours; when none is, the single most common level
    (ties: the level seen first, most similar neighbour first)."""
    counts = Counter(level for levels in neighbour_levels for level in set(levels))
    chosen = tuple(level for level in LEVELS if 2 * counts[level] >= len(neighbour_levels) and counts[level])
    if chosen:
        return chosen
    seen = [level for levels in neighbour_levels for level in levels]
    return (max(counts, key=lambda level: (counts[level], -seen.index(level))),)


class NearestNeighbourBackend(_InstantBackend):
    """k-NN majority vote over the library images' embeddings (cosine), never using the query image."""

    backend_name = "nearest_neighbour"

    def __init__(self, model_name: str, settings: Mapping, context: BackendContext) -> None:
        super().__init__(model_name)
        check_settings(model_name, settings, allowed=("k",))
        self.k = number_setting(model_name, settings, "k", 5, integer=True, minimum=1)
        if context.embeddings is None:
            raise BackendError(
                f"model {model_name!r}: the nearest-neighbour baseline needs the image embeddings"
            )
        image_ids, matrix = context.embeddings()
        self.index = build_neighbour_index(context.catalog, context.library, list(image_ids), matrix)
        self._with_levels = np.array(
            [i for i, levels in enumerate(self.index.library_levels) if levels], dtype=int
        )
        self._data_hash = self._hash_index()

    def _hash_index(self) -> str:
        """Digest of everything the answers depend on: library, labels, levels and all vectors."""
        digest = hashlib.blake2b(digest_size=16)
        index = self.index
        for image_id, disease, levels in zip(
            index.library_ids, index.library_diseases, index.library_levels, strict=True
        ):
            digest.update(f"{image_id}\x1f{disease}\x1f{','.join(levels)}\x1e".encode())
        for image_id, row in sorted(index.query_rows.items()):
            digest.update(image_id.encode() + b"\x1e")
            digest.update(index.query_vectors[row].tobytes())
        return digest.hexdigest()

    def fingerprint_data(self) -> dict:
        return {"k": self.k, "index": self._data_hash}

    def answer(self, item: Item) -> str:
        try:
            if item.task == "diagnosis":
                return self._diagnose(item)
            return self._localize(item)
        except BackendError as error:
            raise BackendError(f"question {item.question_id}: {error}") from error

    def _diagnose(self, item: Item) -> str:
        ranking = self.index.ranking(item.image_id)
        neighbours = list(self.index.library_diseases[ranking[: self.k]])
        voted = vote_disease(neighbours)
        option_texts = set(item.options.values())
        if voted in option_texts:
            chosen, how = voted, f"{neighbours.count(voted)} of the {len(neighbours)} nearest library images"
        else:
            # The vote is not an option: the most similar library image whose disease is one.
            chosen = next((d for d in self.index.library_diseases[ranking] if d in option_texts), None)
            if chosen is None:
                raise BackendError("no library image carries any of the options' diseases")
            how = f"the voted {voted!r} is not an option; the most similar library image among the options"
        letter = _letter_of(item, chosen)
        return f"Nearest-neighbour baseline: {how} show {chosen}.\n{final_phrase(item.task, (letter,))}"

    def _localize(self, item: Item) -> str:
        if len(self._with_levels) == 0:
            raise BackendError("no library image carries levels")
        ranking = self.index.ranking(item.image_id, candidates=self._with_levels)
        neighbour_levels = [self.index.library_levels[position] for position in ranking[: self.k]]
        levels = vote_levels(neighbour_levels)
        letters = tuple(_letter_of(item, level) for level in levels)
        return (
            f"Nearest-neighbour baseline: levels {', '.join(levels)} voted by the {len(neighbour_levels)} "
            f"nearest library images with levels.\n{final_phrase(item.task, letters)}"
        )
