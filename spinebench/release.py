"""The release manifest: what a `dvc pull` user gets, with content hashes to check it against."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def table_entry(path: str | Path) -> dict:
    """Manifest entry of one Parquet table: hash, rows and column names."""
    metadata = pq.read_metadata(path)
    return {
        "sha256": file_sha256(path),
        "rows": metadata.num_rows,
        "columns": [metadata.schema.column(i).name for i in range(metadata.num_columns)],
    }


def build_manifest(
    table_paths: list[str], seeds: dict[str, int], encoder: str, pool_version: int | str
) -> dict:
    """Manifest of the benchmark tables, keyed by file name (no timestamps: it is deterministic).

    `pool_version` is the question paraphrase pool's `version`, so a release says which texts it used;
    `seeds` are the seeds the benchmark tables were drawn with.
    """
    return {
        "seeds": dict(sorted(seeds.items())),
        "encoder": encoder,
        "question_pool_version": pool_version,
        "tables": {Path(path).name: table_entry(path) for path in sorted(table_paths)},
    }


def verify_manifest(manifest: dict, directory: str | Path) -> list[str]:
    """Names of tables in `directory` whose hash differs from the manifest (missing ones included)."""
    mismatches = []
    for name, entry in sorted(manifest["tables"].items()):
        path = Path(directory) / name
        if not path.exists() or file_sha256(path) != entry["sha256"]:
            mismatches.append(name)
    return mismatches
