"""The benchmark catalog: one row per rendered image, standardized labels joined with image metadata.

The catalog is what every later benchmark stage (distractors, questions, subset) reads, so it carries the
standardized columns plus the rendered image's shard, size and quality metrics, but never the PNG bytes:
the image shards are read with a column projection so that the PNGs are not even loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spinebench.io import CONSOLE
from spinebench.tables import IMAGES_SCHEMA

log = logging.getLogger(__name__)

# Standardized columns the benchmark stages rely on (the contract lists more; those are carried along).
REQUIRED_STANDARDIZED_COLUMNS: tuple[str, ...] = (
    "image_id",
    "source",
    "modality",
    "region",
    "disease",
    "levels",
)

# Image-shard columns copied into the catalog, in catalog order (`png` is deliberately absent).
IMAGE_METADATA_COLUMNS: tuple[str, ...] = tuple(name for name in IMAGES_SCHEMA.names if name != "png")

# The metadata of no images, with the contract's types (used when there are no shards at all).
EMPTY_IMAGE_METADATA = pa.schema(
    [IMAGES_SCHEMA.field(name) for name in IMAGE_METADATA_COLUMNS] + [("shard", pa.string())]
).empty_table()

# How many offending ids an error message lists before summarising the rest.
MAX_IDS_IN_ERROR = 10


class EmptyBenchmarkError(ValueError):
    """No source has a single rendered image: there is nothing to build a benchmark from."""


def format_ids(ids: Sequence[str]) -> str:
    """A short, readable listing of offending ids for error messages (the first few, then a count)."""
    shown = ", ".join(map(str, ids[:MAX_IDS_IN_ERROR]))
    more = len(ids) - MAX_IDS_IN_ERROR
    return f"{shown} (and {more} more)" if more > 0 else shown


def _duplicated_ids(table: pa.Table) -> list[str]:
    """Sorted image_ids that occur more than once in `table`."""
    counts = pc.value_counts(table["image_id"])
    values = counts.field("values").to_pylist()
    occurrences = counts.field("counts").to_pylist()
    return sorted(value for value, count in zip(values, occurrences, strict=True) if count > 1)


def read_standardized(paths: Sequence[str | os.PathLike]) -> pa.Table:
    """Concatenate the standardized tables, checking required columns and image_id uniqueness."""
    tables = []
    for path in paths:
        table = pq.read_table(path)
        missing = [c for c in REQUIRED_STANDARDIZED_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: standardized table lacks column(s) {', '.join(missing)}")
        tables.append(table.replace_schema_metadata(None))
    if not tables:
        raise ValueError("no standardized tables given")
    try:
        # "default" promotion only unifies null-typed columns (e.g. an all-empty levels list) with typed ones.
        combined = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(
            f"standardized tables {', '.join(map(str, paths))} have incompatible schemas: {error}"
        ) from error
    duplicates = _duplicated_ids(combined)
    if duplicates:
        raise ValueError(f"duplicate image_id(s) across standardized tables: {format_ids(duplicates)}")
    return combined


def read_image_metadata(path: str | os.PathLike) -> pa.Table:
    """The metadata columns of one image shard plus its `shard` name (the file stem); PNGs are not read."""
    schema_names = pq.read_schema(path).names
    missing = [c for c in IMAGE_METADATA_COLUMNS if c not in schema_names]
    if missing:
        raise ValueError(f"{path}: image shard lacks column(s) {', '.join(missing)}")
    table = pq.read_table(path, columns=list(IMAGE_METADATA_COLUMNS)).replace_schema_metadata(None)
    shard = pa.array([Path(path).stem] * table.num_rows, type=pa.string())
    return table.append_column("shard", shard)


def read_images(paths: Sequence[str | os.PathLike]) -> pa.Table:
    """All image shards' metadata, checking that no image_id occurs twice (within or across shards)."""
    tables = [read_image_metadata(path) for path in paths]
    if not tables:
        return EMPTY_IMAGE_METADATA
    try:
        combined = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(
            f"image shards {', '.join(map(str, paths))} have incompatible schemas: {error}"
        ) from error
    duplicates = _duplicated_ids(combined)
    if duplicates:
        raise ValueError(f"duplicate image_id(s) across image shards: {format_ids(duplicates)}")
    return combined


def join_catalog(standardized: pa.Table, images: pa.Table) -> pa.Table:
    """Standardized rows of the rendered images, with shard and image metadata appended; image_id order.

    Standardized rows without an image were rejected at render time and are left out; an image without a
    standardized row means the shards and the standardized tables are out of sync, which is an error.
    """
    images = images.take(pc.sort_indices(images, sort_keys=[("image_id", "ascending")]))
    image_ids = images["image_id"].to_pylist()
    standardized_index = pd.Index(standardized["image_id"].to_pylist())
    positions = standardized_index.get_indexer(image_ids)
    orphans = [image_id for image_id, position in zip(image_ids, positions, strict=True) if position < 0]
    if orphans:
        raise ValueError(f"image shard row(s) without a standardized row: {format_ids(orphans)}")
    catalog = standardized.take(pa.array(positions, type=pa.int64()))
    for name in ("shard", *IMAGE_METADATA_COLUMNS[1:]):
        if name in catalog.column_names:
            raise ValueError(f"standardized tables already have a column {name!r}, which the catalog adds")
        catalog = catalog.append_column(name, images[name])
    return catalog


def build_catalog_table(
    standardized_paths: Sequence[str | os.PathLike], image_shard_paths: Sequence[str | os.PathLike]
) -> pa.Table:
    """The catalog as an Arrow table, keeping the input column types exactly (what the script writes)."""
    return join_catalog(read_standardized(standardized_paths), read_images(image_shard_paths))


def build_catalog(
    standardized_paths: Sequence[str | os.PathLike], image_shard_paths: Sequence[str | os.PathLike]
) -> pd.DataFrame:
    """The catalog: standardized rows joined with image shard metadata, sorted by image_id."""
    return build_catalog_table(standardized_paths, image_shard_paths).to_pandas()


def images_per_source(standardized_paths: Sequence[str | os.PathLike], catalog: pa.Table) -> dict[str, int]:
    """Catalog images per source, every standardized table's source listed (0 when it has none).

    A table's source is its file stem (results/standardized/{source}.parquet): an empty table has no
    `source` value to read it from.
    """
    counts = dict.fromkeys((Path(path).stem for path in standardized_paths), 0)
    for source in catalog["source"].to_pylist():
        counts[source] = counts.get(source, 0) + 1
    return counts


def check_source_images(counts: Mapping[str, int]) -> None:
    """Warn about each source without a catalog image; raise EmptyBenchmarkError when no source has one.

    One empty source (say, a download whose images are missing) leaves a smaller benchmark, which is
    still one; with no image at all every later table would be empty and the report meaningless.
    """
    empty = sorted(source for source, count in counts.items() if count == 0)
    for source in empty:
        log.warning(
            "%s: no rendered image, the benchmark is built without this source "
            "(its rejected tables under results/rejected/ say why)",
            source,
            extra=CONSOLE,
        )
    if not any(counts.values()):
        raise EmptyBenchmarkError(
            f"no source has a rendered image ({', '.join(empty) or 'no sources'}): the benchmark would be "
            "empty; check the configured source paths and the rejected tables under results/rejected/"
        )
