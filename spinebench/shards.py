"""Shard assignment: a source's images in image_id order, cut into a fixed number of contiguous chunks.

The number of shards per source is a param, so the DAG shape is known before any data is read; adding a
source touches no other source's shards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: the workflow imports this module at every start
    import pandas as pd


def shard_name(index: int) -> str:
    """File stem of shard `index` (zero-padded so that lexical order is shard order)."""
    return f"{index:03d}"


def shard_names(count: int) -> list[str]:
    """File stems of all `count` shards of one source."""
    return [shard_name(i) for i in range(count)]


def shard_bounds(n_rows: int, index: int, count: int) -> tuple[int, int]:
    """Row range [start, stop) of shard `index` of `count` over `n_rows` sorted rows."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return (n_rows * index) // count, (n_rows * (index + 1)) // count


def select_shard(table: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    """Rows of shard `index`: the table sorted by image_id, cut into `count` contiguous chunks."""
    ordered = table.sort_values("image_id", kind="mergesort").reset_index(drop=True)
    start, stop = shard_bounds(len(ordered), index, count)
    return ordered.iloc[start:stop].reset_index(drop=True)
