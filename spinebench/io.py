"""Deterministic table I/O.

Benchmark tables must be byte-identical for the same inputs and params, so Parquet files are written
without pandas/pyarrow schema metadata (which embeds library versions and index layout), with fixed
compression and row-group size.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_SIZE = 4096


def to_arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """Convert a DataFrame to an Arrow table with no index and no schema metadata.

    A frame with no rows becomes the schema's empty table: pandas gives an empty column built from Python
    lists the dtype float64, which Arrow cannot convert to a list type, and with no values the schema alone
    says everything (a stage whose input kept nothing still writes its table with the contract's columns).
    """
    if schema is not None and len(frame) == 0:
        missing = [name for name in schema.names if name not in frame.columns]
        if missing:
            raise KeyError(f"the table lacks column(s) {', '.join(missing)} of its schema")
        return schema.empty_table()
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    return table.replace_schema_metadata(None)


def write_table(
    table: pd.DataFrame | pa.Table, path: str | os.PathLike, schema: pa.Schema | None = None
) -> None:
    """Write a table to Parquet deterministically and atomically (temp file + rename).

    A crash mid-write never leaves a truncated file at `path`.
    """
    if isinstance(table, pd.DataFrame):
        table = to_arrow(table, schema)
    else:
        table = table.replace_schema_metadata(None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=ROW_GROUP_SIZE,
            write_statistics=False,
            store_schema=False,
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file (optionally only some columns) into a DataFrame."""
    return pq.read_table(path, columns=columns).to_pandas()


def write_json(obj, path: str | os.PathLike) -> None:
    """Write JSON with sorted keys and a trailing newline, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def rejected_frame(rows: list[dict] | None = None) -> pd.DataFrame:
    """A rejected-items table: what was rejected (`item`), where it came from (`file`) and why (`reason`).

    Every stage that drops an input writes one of these, so nothing is lost silently.
    """
    columns = ["source", "item", "file", "reason"]
    return pd.DataFrame(rows or [], columns=columns).astype("string")


def configure_job_logging(log_path: str | os.PathLike) -> None:
    """Send the `logging` records of a Snakemake job to its `log:` file (one format for every rule)."""
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
